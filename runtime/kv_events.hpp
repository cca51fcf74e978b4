// kv_event: a change to the set of cached KV blocks of one engine, numbered by an event id
// that increases by one per event. Replaying an engine's events in order reproduces its set
// of cached block hashes exactly; routers build their prefix index from them.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace troupe {

struct kv_event {
  enum class kind : uint8_t { block_stored, block_removed, all_blocks_cleared };
  uint64_t event_id = 0;
  kind type = kind::block_stored;
  // block_stored: a chain of newly cached blocks, parent first; block_removed: the blocks
  // no longer cached; all_blocks_cleared: empty.
  std::vector<uint64_t> block_hashes;
  std::optional<uint64_t> parent_hash;  // block_stored: the block before the first, if any
  int32_t block_size = 0;
};

}  // namespace troupe
