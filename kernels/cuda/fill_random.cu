#include "kernels/cuda/fill_random.cuh"

#include <algorithm>

#include "kernels/cuda/sampling_math.hpp"

namespace troupe::cuda {
namespace {

template <class T>
__global__ void fill_uniform_kernel(T* p, size_t n, float scale, uint32_t k0, uint32_t k1) {
  const size_t n4 = (n + 3) / 4;
  for (size_t c = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; c < n4;
       c += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const philox4 r = philox4x32_10(static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), 0u, 0u, k0, k1);
    for (int j = 0; j < 4; ++j) {
      const size_t i = 4 * c + j;
      if (i >= n) break;
      const float u = static_cast<float>(r.v[j] >> 8) * (1.0f / 16777216.0f);  // [0, 1)
      p[i] = from_f32<T>((2.0f * u - 1.0f) * scale);
    }
  }
}

__global__ void fill_constant_kernel(float* p, size_t n, float value) {
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    p[i] = value;
}

unsigned blocks_for(size_t n) { return static_cast<unsigned>(std::min<size_t>((n + 255) / 256, 4096)); }

template <class T>
cudaError_t fill(T* p, size_t n, float scale, uint64_t seed, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  fill_uniform_kernel<T><<<blocks_for((n + 3) / 4), 256, 0, stream>>>(p, n, scale, static_cast<uint32_t>(seed),
                                                                      static_cast<uint32_t>(seed >> 32));
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_fill_uniform(bf16* p, size_t n, float scale, uint64_t seed, cudaStream_t stream) {
  return fill(p, n, scale, seed, stream);
}
cudaError_t launch_fill_uniform(float* p, size_t n, float scale, uint64_t seed, cudaStream_t stream) {
  return fill(p, n, scale, seed, stream);
}
cudaError_t launch_fill_constant(float* p, size_t n, float value, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  fill_constant_kernel<<<blocks_for(n), 256, 0, stream>>>(p, n, value);
  return cudaGetLastError();
}

}  // namespace troupe::cuda
