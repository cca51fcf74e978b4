#include "kernels/cuda/rope.cuh"

namespace troupe::cuda {
namespace {

// One thread per (token, pair): the angle is computed once and applied to every head.
template <class T>
__global__ void rope_kernel(T* x, int64_t ld, int32_t n_q_heads, int32_t n_k_heads, int64_t k_col0,
                            int32_t head_dim, const int32_t* positions, const double* inv_freq,
                            bool interleaved) {
  const int32_t half = head_dim / 2;
  const int32_t i = blockIdx.y * blockDim.x + threadIdx.x;
  if (i >= half) return;
  const int64_t t = blockIdx.x;
  double s, c;
  sincos(static_cast<double>(positions[t]) * inv_freq[i], &s, &c);
  const float cf = static_cast<float>(c), sf = static_cast<float>(s);
  const int32_t a_off = interleaved ? 2 * i : i, b_off = interleaved ? 2 * i + 1 : i + half;
  T* row = x + t * ld;
  for (int32_t h = 0; h < n_q_heads + n_k_heads; ++h) {
    T* v = row + (h < n_q_heads ? static_cast<int64_t>(h) * head_dim
                                : k_col0 + static_cast<int64_t>(h - n_q_heads) * head_dim);
    const float a = to_f32(v[a_off]), b = to_f32(v[b_off]);
    // Written as two products and a sum each, as the CPU kernel rounds them.
    const float ac = a * cf, bs = b * sf, bc = b * cf, as = a * sf;
    v[a_off] = from_f32<T>(__fsub_rn(ac, bs));
    v[b_off] = from_f32<T>(__fadd_rn(bc, as));
  }
}

}  // namespace

template <class T>
cudaError_t launch_rope(T* x, int64_t ld, int32_t n_tokens, int32_t n_q_heads, int32_t n_k_heads, int64_t k_col0,
                        int32_t head_dim, const int32_t* positions, const double* inv_freq, bool interleaved,
                        cudaStream_t stream) {
  if (n_tokens == 0) return cudaSuccess;
  const int32_t half = head_dim / 2;
  const int threads = half >= 64 ? 64 : 32;
  const dim3 grid(static_cast<unsigned>(n_tokens), static_cast<unsigned>((half + threads - 1) / threads));
  rope_kernel<T><<<grid, threads, 0, stream>>>(x, ld, n_q_heads, n_k_heads, k_col0, head_dim, positions, inv_freq,
                                               interleaved);
  return cudaGetLastError();
}

template cudaError_t launch_rope<float>(float*, int64_t, int32_t, int32_t, int32_t, int64_t, int32_t, const int32_t*,
                                        const double*, bool, cudaStream_t);
template cudaError_t launch_rope<bf16>(bf16*, int64_t, int32_t, int32_t, int32_t, int64_t, int32_t, const int32_t*,
                                       const double*, bool, cudaStream_t);

}  // namespace troupe::cuda
