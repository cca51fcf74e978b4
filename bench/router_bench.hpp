// router_bench: `troupe bench router`: the KV-aware router's decision path (one hash pass over
// the prompt, the index walk, the predicted-blocks walk, the policy over every worker's view)
// at several worker counts over an index of a given size, the rate at which the index applies
// KV events on one core, and the index's memory per entry.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe::bench {

struct router_bench_options {
  std::vector<int> workers = {8, 64, 256};
  int64_t indexed_blocks = 1000000;  // (worker, block) entries in the index
  int decisions = 20000;              // timed per worker count
  int prompt_tokens = 2048;           // of each request
  int64_t events = 2000000;           // for the events-per-second figure
};

[[nodiscard]] result<nlohmann::json> run_router_bench(const router_bench_options& o);

}  // namespace troupe::bench
