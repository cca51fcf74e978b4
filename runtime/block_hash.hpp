// block_hash: the chained hash that names a full KV block in every process: xxh3-64 of the
// parent block's hash and the block's token ids (little-endian), seeded by a model salt.
// Routers compute it from request tokens and match it against workers' KV events, so it
// must not depend on the process, the run, or the machine's byte order.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace troupe {

using token_id = int32_t;

// A chained block hash: it names a block *and everything before it*.
struct block_hash {
  uint64_t value = 0;
  auto operator<=>(const block_hash&) const = default;
};

// The salt for a model: xxh3-64 of a stable identity string (the served model's name and
// architecture), so that two models never share cache entries.
uint64_t model_salt(std::string_view model_identity);

block_hash hash_block(std::optional<block_hash> parent, std::span<const token_id> tokens,
                      uint64_t salt);

// Hashes of the full blocks of tokens, in order (a trailing partial block has none).
std::vector<block_hash> hash_full_blocks(std::span<const token_id> tokens, int32_t block_size,
                                         uint64_t salt);

}  // namespace troupe

template <>
struct std::hash<troupe::block_hash> {
  size_t operator()(const troupe::block_hash& h) const noexcept { return h.value; }
};
