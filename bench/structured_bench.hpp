// structured_bench: `troupe bench structured`: decoding throughput with and without an output
// constraint (a JSON Schema) at the same batch sizes, and what the token masks cost per step.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe::bench {

struct structured_bench_options {
  std::string model;                // "" = the project's default model (models/troupe-py-7m)
  int threads = 0;                  // 0: every core this process may use
  std::vector<int> batches = {1, 32};
  int max_tokens = 128;             // generated per sequence (the schema never lets it end sooner)
  int reps = 2;                     // runs per (batch, mode); the best counts
};

[[nodiscard]] result<nlohmann::json> run_structured_bench(const structured_bench_options& o);

}  // namespace troupe::bench
