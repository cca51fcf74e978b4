// kv_snapshot: a router's KV index as bytes on disk: per worker, who it is (name and the
// instance that numbered its events), the model's hash group, the id of the next event its
// view needs, and the block hashes it held. A restarted router loads it and asks each worker
// only for the events after that id.
//
// Format (little-endian): "TRPKVSN1", a u32 version, a u64 xxh3 of the payload, then the
// payload: the writer's router name, a u32 worker count, and per worker its strings
// (u32 length + bytes), u64 instance, u64 salt, i32 block size, u64 next event, u64 hash
// count and the hashes. decode() refuses anything else (another magic or version, a bad
// checksum, a truncated or oversized field) with the reason; it never trusts a length.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

struct kv_snapshot {
  struct worker {
    std::string name;
    std::string model;
    uint64_t instance = 0;  // a worker that restarted under the same name has another
    uint64_t salt = 0;
    int32_t block_size = 0;
    uint64_t next_event = 0;
    std::vector<uint64_t> hashes;
  };
  std::string router;  // which router wrote it
  std::vector<worker> workers;
};

std::string encode(const kv_snapshot& s);
[[nodiscard]] result<kv_snapshot> decode_kv_snapshot(std::string_view bytes);

}  // namespace troupe
