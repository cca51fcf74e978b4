// Prints the chained block hashes of a fixed token sequence, so that a test can compare the
// hashes that separate processes compute.
#include <cstdio>
#include <vector>

#include "runtime/block_hash.hpp"

int main() {
  std::vector<troupe::token_id> tokens;
  for (int i = 0; i < 64; ++i) tokens.push_back(i * 7919 % 151000);
  for (auto h : troupe::hash_full_blocks(tokens, 16, troupe::model_salt("troupe-test-model")))
    std::printf("%016llx\n", static_cast<unsigned long long>(h.value));
  return 0;
}
