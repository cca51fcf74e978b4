// cuda_engine_bench: `troupe bench engine --device cuda`: the CUDA executor's prefill and
// decode throughput against the device's own limits, measured in the same run: decode at
// batch 1 against the bandwidth of a device-to-device copy, prefill against cuBLAS's bf16
// GEMMs at the same shapes. With no --model, random bf16 weights in Llama-3-8B's shape are
// generated on the device.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include "bench/engine_bench.hpp"
#include "runtime/result.hpp"

namespace troupe::bench {

[[nodiscard]] result<nlohmann::json> run_cuda_engine_bench(const engine_bench_options& o);

}  // namespace troupe::bench
