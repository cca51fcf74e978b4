#include "kernels/cuda/silu_mul.cuh"

#include <algorithm>

namespace troupe::cuda {
namespace {

template <class T>
__global__ void silu_mul_kernel(const T* gu, int64_t n_rows, int64_t n_ff, T* out) {
  const int64_t n = n_rows * n_ff;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / n_ff, c = i % n_ff;
    const float g = to_f32(gu[r * 2 * n_ff + c]);
    const float u = to_f32(gu[r * 2 * n_ff + n_ff + c]);
    // silu(g) = g / (1 + e^-g) with the accurate expf; for g below -88, e^-g is inf and the
    // quotient a signed zero, as it should be.
    out[i] = from_f32<T>(g / (1.0f + expf(-g)) * u);
  }
}

}  // namespace

template <class T>
cudaError_t launch_silu_mul(const T* gu, int32_t n_rows, int64_t n_ff, T* out, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(n_rows) * n_ff;
  if (n == 0) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 132 * 32);  // grid-stride beyond that
  silu_mul_kernel<T><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(gu, n_rows, n_ff, out);
  return cudaGetLastError();
}

template cudaError_t launch_silu_mul<float>(const float*, int32_t, int64_t, float*, cudaStream_t);
template cudaError_t launch_silu_mul<bf16>(const bf16*, int32_t, int64_t, bf16*, cudaStream_t);

}  // namespace troupe::cuda
