#include "kernels/cuda/device.hpp"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include "kernels/cuda/cuda_util.hpp"
#include "kernels/cuda/fill_random.cuh"

namespace troupe::cuda {

result<int> device_count() {
  // Without a driver cudaGetDeviceCount fails and leaves its output alone.
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the error so that it does not surface in later calls
    return make_error("no CUDA device: cudaGetDeviceCount failed: " + error_text(e));
  }
  if (n <= 0) return make_error("no CUDA device: the driver reports none");
  return n;
}

result<device_info> probe_device(int index) {
  TROUPE_TRY(const int n, device_count());
  if (index < 0 || index >= n)
    return make_error(fmt::format("no CUDA device {}: this machine has {} (cuda:0 to cuda:{})", index, n, n - 1));
  cudaDeviceProp p{};
  TROUPE_CUDA_TRY(cudaGetDeviceProperties(&p, index), fmt::format("cudaGetDeviceProperties({})", index));
  device_info d;
  d.index = index;
  d.name = p.name;
  d.sm_major = p.major;
  d.sm_minor = p.minor;
  d.n_sms = p.multiProcessorCount;
  d.total_bytes = p.totalGlobalMem;
  TROUPE_CHECK(use_device(index));
  TROUPE_CUDA_TRY(cudaMemGetInfo(&d.free_bytes, &d.total_bytes), "cudaMemGetInfo");
  // The kernels are built for sm_90 (with PTX that newer devices compile): run a small one, so
  // that an older device fails here, in words, rather than at the first forward.
  float* probe = nullptr;
  TROUPE_CUDA_TRY(cudaMalloc(&probe, sizeof(float)), "cudaMalloc");
  const cudaError_t launch = launch_fill_constant(probe, 1, 0.0f, nullptr);
  const cudaError_t sync = launch == cudaSuccess ? cudaDeviceSynchronize() : launch;
  cudaFree(probe);
  if (sync != cudaSuccess)
    return make_error(fmt::format("CUDA device {} ({}, sm_{}{}) cannot run this build's kernels (built for {}): {}", index,
                                  d.name, d.sm_major, d.sm_minor, "sm_90", error_text(sync)));
  return d;
}

std::string describe(const device_info& d) {
  return fmt::format("{} (sm_{}{}, {} SMs, {:.1f} GiB, {:.1f} GiB free)", d.name, d.sm_major, d.sm_minor, d.n_sms,
                     static_cast<double>(d.total_bytes) / (1 << 30), static_cast<double>(d.free_bytes) / (1 << 30));
}

}  // namespace troupe::cuda
