#include "kernels/cuda/bias_add.cuh"

namespace troupe::cuda {
namespace {

template <class T>
__global__ void bias_add_kernel(T* x, int64_t ld, int64_t n, const float* b) {
  T* row = x + static_cast<int64_t>(blockIdx.x) * ld;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) row[j] = from_f32<T>(to_f32(row[j]) + b[j]);
}

}  // namespace

template <class T>
cudaError_t launch_bias_add(T* x, int64_t ld, int32_t n_rows, int64_t n, const float* b, cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  bias_add_kernel<T><<<n_rows, 256, 0, stream>>>(x, ld, n, b);
  return cudaGetLastError();
}

template cudaError_t launch_bias_add<float>(float*, int64_t, int32_t, int64_t, const float*, cudaStream_t);
template cudaError_t launch_bias_add<bf16>(bf16*, int64_t, int32_t, int64_t, const float*, cudaStream_t);

}  // namespace troupe::cuda
