#include "kernels/cuda/bench_probe.hpp"

#include <cublas_v2.h>

#include <algorithm>

#include <fmt/format.h>

#include "kernels/cuda/cuda_util.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/fill_random.cuh"

namespace troupe::cuda {
namespace {

// A stream and two events, released on every path out.
struct timing {
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  ~timing() {
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (stream) cudaStreamDestroy(stream);
  }
  status init() {
    TROUPE_CUDA_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    TROUPE_CUDA_TRY(cudaEventCreate(&start), "cudaEventCreate");
    TROUPE_CUDA_TRY(cudaEventCreate(&stop), "cudaEventCreate");
    return {};
  }
  result<double> seconds() {
    TROUPE_CUDA_TRY(cudaEventSynchronize(stop), "timing");
    float ms = 0;
    TROUPE_CUDA_TRY(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    return ms / 1e3;
  }
};

}  // namespace

result<double> copy_bandwidth(int device, size_t bytes, int reps) {
  TROUPE_TRY(device_info info, probe_device(device));
  (void)info;
  TROUPE_CHECK(use_device(device));
  TROUPE_TRY(device_buffer a, device_buffer::alloc(bytes, "the bandwidth test"));
  TROUPE_TRY(device_buffer b, device_buffer::alloc(bytes, "the bandwidth test"));
  timing t;
  TROUPE_CHECK(t.init());
  TROUPE_CUDA_TRY(cudaMemsetAsync(a.get(), 1, bytes, t.stream), "cudaMemset");
  TROUPE_CUDA_TRY(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, t.stream), "warm-up copy");
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    TROUPE_CUDA_TRY(cudaEventRecord(t.start, t.stream), "cudaEventRecord");
    TROUPE_CUDA_TRY(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, t.stream), "copy");
    TROUPE_CUDA_TRY(cudaEventRecord(t.stop, t.stream), "cudaEventRecord");
    TROUPE_TRY(const double s, t.seconds());
    best = std::min(best, s);
  }
  return 2.0 * static_cast<double>(bytes) / best;
}

result<double> cublas_gemm_seconds(int device, std::span<const gemm_shape> shapes, int reps) {
  TROUPE_TRY(device_info info, probe_device(device));
  (void)info;
  TROUPE_CHECK(use_device(device));
  size_t max_w = 0, max_x = 0, max_y = 0;
  for (const gemm_shape& s : shapes) {
    max_w = std::max(max_w, static_cast<size_t>(s.n * s.k));
    max_x = std::max(max_x, static_cast<size_t>(s.m * s.k));
    max_y = std::max(max_y, static_cast<size_t>(s.m * s.n));
  }
  TROUPE_TRY(device_buffer w, device_buffer::alloc(max_w * 2, "the GEMM reference"));
  TROUPE_TRY(device_buffer x, device_buffer::alloc(max_x * 2, "the GEMM reference"));
  TROUPE_TRY(device_buffer y, device_buffer::alloc(max_y * 2, "the GEMM reference"));
  timing t;
  TROUPE_CHECK(t.init());
  TROUPE_CUDA_TRY(launch_fill_uniform(w.as<bf16>(), max_w, 0.01f, 1, t.stream), "filling W");
  TROUPE_CUDA_TRY(launch_fill_uniform(x.as<bf16>(), max_x, 1.0f, 2, t.stream), "filling x");
  cublasHandle_t h = nullptr;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return make_error("cublasCreate failed");
  struct handle_guard {
    cublasHandle_t h;
    ~handle_guard() { cublasDestroy(h); }
  } guard{h};
  cublasSetStream(h, t.stream);
  const float alpha = 1.0f, beta = 0.0f;
  auto all = [&]() -> status {
    for (const gemm_shape& s : shapes) {
      // Row-major y = x · Wᵀ as column-major yᵀ = W' · xᵀ (see gemm.cpp).
      const cublasStatus_t st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(s.n), static_cast<int>(s.m),
                                             static_cast<int>(s.k), &alpha, w.get(), CUDA_R_16BF, static_cast<int>(s.k),
                                             x.get(), CUDA_R_16BF, static_cast<int>(s.k), &beta, y.get(), CUDA_R_16BF,
                                             static_cast<int>(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      if (st != CUBLAS_STATUS_SUCCESS)
        return make_error(fmt::format("cublasGemmEx [{}, {}] x [{}, {}]^T: {}", s.m, s.k, s.n, s.k,
                                      cublasGetStatusString(st)));
    }
    return {};
  };
  TROUPE_CHECK(all());  // warm-up
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    TROUPE_CUDA_TRY(cudaEventRecord(t.start, t.stream), "cudaEventRecord");
    TROUPE_CHECK(all());
    TROUPE_CUDA_TRY(cudaEventRecord(t.stop, t.stream), "cudaEventRecord");
    TROUPE_TRY(const double s, t.seconds());
    best = std::min(best, s);
  }
  return best;
}

}  // namespace troupe::cuda
