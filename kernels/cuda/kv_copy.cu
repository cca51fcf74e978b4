#include "kernels/cuda/kv_copy.cuh"

namespace troupe::cuda {
namespace {

// Blocks of 16-byte multiples move as uint4, others as 32-bit words.
template <class W>
__global__ void kv_copy_kernel(uint8_t* cache, size_t plane_bytes, size_t block_bytes, const int32_t* pairs) {
  const int32_t src = pairs[2 * blockIdx.x], dst = pairs[2 * blockIdx.x + 1];
  uint8_t* plane = cache + static_cast<size_t>(blockIdx.y) * plane_bytes;
  const W* s = reinterpret_cast<const W*>(plane + static_cast<size_t>(src) * block_bytes);
  W* d = reinterpret_cast<W*>(plane + static_cast<size_t>(dst) * block_bytes);
  const size_t n = block_bytes / sizeof(W);
  for (size_t i = threadIdx.x; i < n; i += blockDim.x) d[i] = s[i];
}

}  // namespace

cudaError_t launch_kv_copy(void* cache, size_t plane_bytes, int32_t n_planes, size_t block_bytes,
                           const int32_t* pairs, int32_t n_pairs, cudaStream_t stream) {
  if (n_pairs == 0 || n_planes == 0) return cudaSuccess;
  if (block_bytes % 4 != 0) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(n_pairs), static_cast<unsigned>(n_planes));
  auto* base = static_cast<uint8_t*>(cache);
  if (block_bytes % 16 == 0 && plane_bytes % 16 == 0)
    kv_copy_kernel<uint4><<<grid, 256, 0, stream>>>(base, plane_bytes, block_bytes, pairs);
  else
    kv_copy_kernel<uint32_t><<<grid, 256, 0, stream>>>(base, plane_bytes, block_bytes, pairs);
  return cudaGetLastError();
}

}  // namespace troupe::cuda
