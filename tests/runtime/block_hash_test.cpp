// Proves block hashes are the same in every process and run (ASLR, a new process, another
// salt changes them as it should), chain over parents, and differ by content.
#include "runtime/block_hash.hpp"

#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "tests/test_data.hpp"

namespace troupe {
namespace {

std::string run(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  char buf[256];
  while (f && fgets(buf, sizeof buf, f)) out += buf;
  if (f) pclose(f);
  return out;
}

TEST(block_hash, identical_in_separate_processes_and_in_this_one) {
  const std::string exe = testing::build_dir() + "/tests/block_hash_print";
  const std::string a = run(exe), b = run("setarch -R " + exe + " 2>/dev/null || " + exe);
  ASSERT_EQ(std::count(a.begin(), a.end(), '\n'), 4);
  EXPECT_EQ(a, b);
  std::vector<token_id> tokens;
  for (int i = 0; i < 64; ++i) tokens.push_back(i * 7919 % 151000);
  std::string here;
  for (auto h : hash_full_blocks(tokens, 16, model_salt("troupe-test-model"))) {
    char line[32];
    std::snprintf(line, sizeof line, "%016llx\n", static_cast<unsigned long long>(h.value));
    here += line;
  }
  EXPECT_EQ(a, here);
}

TEST(block_hash, chains_over_the_parent_and_the_salt) {
  std::vector<token_id> t1 = {1, 2, 3, 4}, t2 = {9, 2, 3, 4};
  auto a = hash_full_blocks(t1, 2, 1), b = hash_full_blocks(t2, 2, 1), c = hash_full_blocks(t1, 2, 2);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_NE(a[0], b[0]);
  EXPECT_NE(a[1], b[1]) << "same tokens after a different prefix hash differently";
  EXPECT_NE(a[0], c[0]) << "another model's salt";
  EXPECT_EQ(hash_full_blocks(std::vector<token_id>{1, 2, 3}, 2, 1).size(), 1u) << "partial blocks have no hash";
  EXPECT_NE(hash_block(std::nullopt, std::vector<token_id>{0}, 1), hash_block(block_hash{0}, std::vector<token_id>{0}, 1));
}

}  // namespace
}  // namespace troupe
