#include "runtime/block_hash.hpp"

#include <vector>

#include <xxhash.h>

namespace troupe {

uint64_t model_salt(std::string_view identity) {
  return XXH3_64bits(identity.data(), identity.size());
}

block_hash hash_block(std::optional<block_hash> parent, std::span<const token_id> tokens,
                      uint64_t salt) {
  // Serialise explicitly (little-endian) rather than hashing memory as it lies: 8 bytes of
  // parent hash, a byte saying whether there is a parent, 4 bytes per token.
  thread_local std::vector<uint8_t> buf;
  buf.resize(9 + 4 * tokens.size());
  const uint64_t p = parent ? parent->value : 0;
  for (int i = 0; i < 8; ++i) buf[static_cast<size_t>(i)] = static_cast<uint8_t>(p >> (8 * i));
  buf[8] = parent ? 1 : 0;
  size_t n = 9;
  for (token_id t : tokens) {
    const auto u = static_cast<uint32_t>(t);
    for (int i = 0; i < 4; ++i) buf[n++] = static_cast<uint8_t>(u >> (8 * i));
  }
  return block_hash{XXH3_64bits_withSeed(buf.data(), n, salt)};
}

std::vector<block_hash> hash_full_blocks(std::span<const token_id> tokens, int32_t block_size,
                                         uint64_t salt) {
  std::vector<block_hash> out;
  const size_t bs = static_cast<size_t>(block_size);
  out.reserve(tokens.size() / bs);
  std::optional<block_hash> parent;
  for (size_t i = 0; i + bs <= tokens.size(); i += bs) {
    parent = hash_block(parent, tokens.subspan(i, bs), salt);
    out.push_back(*parent);
  }
  return out;
}

}  // namespace troupe
