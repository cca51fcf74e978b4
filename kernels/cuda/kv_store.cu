#include "kernels/cuda/kv_store.cuh"

namespace troupe::cuda {
namespace {

template <class T>
__global__ void kv_store_kernel(const T* qkv, int64_t ld, int64_t k_col0, int64_t v_col0, const int32_t* slots,
                                T* k_cache, T* v_cache, int32_t block_size, int32_t n_head_kv, int32_t head_dim) {
  const int64_t t = blockIdx.x;
  const int32_t slot = slots[t];
  if (slot < 0) return;
  const int64_t blk = slot / block_size, off = slot % block_size;
  const int64_t kv_dim = static_cast<int64_t>(n_head_kv) * head_dim;
  for (int64_t j = threadIdx.x; j < kv_dim; j += blockDim.x) {
    const int64_t h = j / head_dim, d = j % head_dim;
    const int64_t at = ((blk * n_head_kv + h) * block_size + off) * head_dim + d;
    k_cache[at] = qkv[t * ld + k_col0 + j];
    v_cache[at] = qkv[t * ld + v_col0 + j];
  }
}

}  // namespace

template <class T>
cudaError_t launch_kv_store(const T* qkv, int64_t ld, int64_t k_col0, int64_t v_col0, const int32_t* slots,
                            int32_t n_tokens, T* k_cache, T* v_cache, int32_t block_size, int32_t n_head_kv,
                            int32_t head_dim, cudaStream_t stream) {
  if (n_tokens == 0) return cudaSuccess;
  kv_store_kernel<T><<<n_tokens, 256, 0, stream>>>(qkv, ld, k_col0, v_col0, slots, k_cache, v_cache, block_size,
                                                   n_head_kv, head_dim);
  return cudaGetLastError();
}

template cudaError_t launch_kv_store<float>(const float*, int64_t, int64_t, int64_t, const int32_t*, int32_t, float*,
                                            float*, int32_t, int32_t, int32_t, cudaStream_t);
template cudaError_t launch_kv_store<bf16>(const bf16*, int64_t, int64_t, int64_t, const int32_t*, int32_t, bf16*,
                                           bf16*, int32_t, int32_t, int32_t, cudaStream_t);

}  // namespace troupe::cuda
