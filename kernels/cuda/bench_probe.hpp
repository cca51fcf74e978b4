// bench_probe: what `troupe bench engine --device cuda` measures besides the executor itself:
// the device's memory bandwidth (a device-to-device copy) and cuBLAS's own bf16 GEMM
// throughput at the forward's shapes, the yardsticks its figures are divided by.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/result.hpp"

namespace troupe::cuda {

// Bytes moved per second (read plus written) by a cudaMemcpyAsync of `bytes` between two
// device buffers, the best of `reps`, timed with events.
[[nodiscard]] result<double> copy_bandwidth(int device, size_t bytes, int reps = 10);

// Seconds for cublasGemmEx (bf16 in and out, f32 accumulation, cuBLAS's default algorithm)
// to compute y[m, n] = x[m, k] · W[n, k]ᵀ once for each shape, best of `reps`.
struct gemm_shape {
  int64_t m = 0, n = 0, k = 0;
};
[[nodiscard]] result<double> cublas_gemm_seconds(int device, std::span<const gemm_shape> shapes, int reps = 5);

}  // namespace troupe::cuda
