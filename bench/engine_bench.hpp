// engine_bench: `troupe bench engine`: the forward pass's throughput against the machine's
// own limits (memory bandwidth, the GEMM library), and the serving engine under workloads.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe::bench {

struct engine_bench_options {
  std::string model;            // "" = random weights in TinyLlama-1.1B's shape
  std::string dtype = "bf16";   // of the random weights
  int threads = 0;              // 0: every core this process may use
  int prompt_tokens = 512;
  std::vector<int> batches = {1, 8, 32};
  int decode_steps = 16;
  int context = 128;            // tokens already cached per sequence while decoding
  std::vector<std::string> compare_dtypes;  // extra random-weight types: prefill, batch-1 decode
  bool compare_threads = false; // also prefill and batch-1 decode on one thread
  std::string precision;        // "", "fast" or "f32" (kernels/cpu/matmul.hpp)
  std::string workload;         // "" (forward figures), "shared-prefix" or "mixed"
  std::string device = "cpu";   // cpu, cuda or cuda:N (bench/cuda_engine_bench.hpp)
};

[[nodiscard]] result<nlohmann::json> run_engine_bench(const engine_bench_options& o);

}  // namespace troupe::bench
