// embed_bench: `troupe bench embed`: embeddings per second and prompt tokens per second through
// the serving engine (pooled hidden states, no sampling) at each batch size.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe::bench {

struct embed_bench_options {
  std::string model;                // "" = the project's default model (models/troupe-py-7m)
  int threads = 0;                  // 0: every core this process may use
  std::vector<int> batches = {1, 32};
  int input_tokens = 128;           // tokens per input
  int reps = 3;                     // runs per batch size; the fastest counts
};

[[nodiscard]] result<nlohmann::json> run_embed_bench(const embed_bench_options& o);

}  // namespace troupe::bench
