// routing_policy: how the router picks a worker for a request. Plain C++ behind a narrow
// interface, so that policies (least loaded now, KV-aware later) are tested without actors.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace troupe {

struct worker_view {
  std::string name;
  int64_t in_flight_tokens = 0;  // prompt + max_tokens of what it was given and has not finished
  int32_t in_flight_requests = 0;
  int32_t kv_blocks_total = 0;
};

struct route_request_view {
  std::span<const int32_t> prompt;
  int32_t max_tokens = 0;
};

class routing_policy {
 public:
  virtual ~routing_policy() = default;
  // An index into workers (never empty).
  virtual size_t choose(const route_request_view& request, std::span<const worker_view> workers) = 0;
  virtual std::string name() const = 0;
};

// Fewest in-flight tokens; ties go to fewer requests, then round robin.
std::unique_ptr<routing_policy> make_least_loaded_policy();

}  // namespace troupe
