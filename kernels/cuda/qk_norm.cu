#include "kernels/cuda/qk_norm.cuh"

namespace troupe::cuda {
namespace {

// One warp per (token, head).
template <class T>
__global__ void head_rms_norm_kernel(T* x, int64_t ld, int32_t n_tokens, int32_t n_heads, int32_t head_dim,
                                     int64_t col0, const float* w, float eps) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (item >= static_cast<int64_t>(n_tokens) * n_heads) return;
  const int lane = threadIdx.x & 31;
  T* h = x + (item / n_heads) * ld + col0 + (item % n_heads) * head_dim;
  float sum = 0.0f;
  for (int d = lane; d < head_dim; d += 32) {
    const float v = to_f32(h[d]);
    sum += v * v;
  }
  sum = warp_sum(sum);
  const float inv = static_cast<float>(1.0 / sqrt(static_cast<double>(sum) / head_dim + eps));
  for (int d = lane; d < head_dim; d += 32) h[d] = from_f32<T>(to_f32(h[d]) * inv * w[d]);
}

}  // namespace

template <class T>
cudaError_t launch_head_rms_norm(T* x, int64_t ld, int32_t n_tokens, int32_t n_heads, int32_t head_dim,
                                 int64_t col0, const float* w, float eps, cudaStream_t stream) {
  const int64_t items = static_cast<int64_t>(n_tokens) * n_heads;
  if (items == 0) return cudaSuccess;
  constexpr int warps = 8;
  head_rms_norm_kernel<T><<<static_cast<unsigned>((items + warps - 1) / warps), warps * 32, 0, stream>>>(
      x, ld, n_tokens, n_heads, head_dim, col0, w, eps);
  return cudaGetLastError();
}

template cudaError_t launch_head_rms_norm<float>(float*, int64_t, int32_t, int32_t, int32_t, int64_t,
                                                 const float*, float, cudaStream_t);
template cudaError_t launch_head_rms_norm<bf16>(bf16*, int64_t, int32_t, int32_t, int32_t, int64_t,
                                                const float*, float, cudaStream_t);

}  // namespace troupe::cuda
