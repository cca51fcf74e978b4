#include "kernels/cuda/embedding.cuh"

namespace troupe::cuda {
namespace {

__device__ __forceinline__ float load(const void* row, table_type type, int64_t i) {
  switch (type) {
    case table_type::f32: return static_cast<const float*>(row)[i];
    case table_type::f16: return __half2float(static_cast<const __half*>(row)[i]);
    case table_type::bf16: return __bfloat162float(static_cast<const bf16*>(row)[i]);
    case table_type::q8_0: {
      // 34-byte blocks: the scale is 2-byte aligned, as every row is (34 * n_blocks bytes).
      const auto* blk = static_cast<const uint8_t*>(row) + (i / 32) * 34;
      const float d = __half2float(*reinterpret_cast<const __half*>(blk));
      return d * static_cast<float>(static_cast<const int8_t*>(static_cast<const void*>(blk + 2))[i % 32]);
    }
  }
  return 0.0f;
}

__global__ void embedding_kernel(const uint8_t* table, table_type type, int64_t n_embd, size_t row_bytes,
                                 const int32_t* tokens, float* x) {
  const int64_t t = blockIdx.x;
  const uint8_t* row = table + static_cast<size_t>(tokens[t]) * row_bytes;
  for (int64_t i = threadIdx.x; i < n_embd; i += blockDim.x) x[t * n_embd + i] = load(row, type, i);
}

}  // namespace

cudaError_t launch_embedding(const void* table, table_type type, int64_t n_embd, const int32_t* tokens,
                             int32_t n_tokens, float* x, cudaStream_t stream) {
  if (n_tokens == 0) return cudaSuccess;
  size_t row_bytes = 0;
  switch (type) {
    case table_type::f32: row_bytes = static_cast<size_t>(n_embd) * 4; break;
    case table_type::f16:
    case table_type::bf16: row_bytes = static_cast<size_t>(n_embd) * 2; break;
    case table_type::q8_0: row_bytes = static_cast<size_t>(n_embd / 32) * 34; break;
  }
  embedding_kernel<<<n_tokens, 256, 0, stream>>>(static_cast<const uint8_t*>(table), type, n_embd, row_bytes,
                                                 tokens, x);
  return cudaGetLastError();
}

}  // namespace troupe::cuda
