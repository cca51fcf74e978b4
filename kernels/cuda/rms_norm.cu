#include "kernels/cuda/rms_norm.cuh"

#include <cmath>

namespace troupe::cuda {
namespace {

template <class T>
__global__ void add_rms_norm_kernel(float* x, const T* y, const int32_t* rows, int64_t n, const float* w,
                                    float eps, bool write_back, T* out) {
  __shared__ float scratch[32];
  const int64_t o = blockIdx.x;
  const int64_t r = rows ? rows[o] : o;
  float* xr = x + r * n;
  const T* yr = y ? y + r * n : nullptr;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = yr ? xr[i] + to_f32(yr[i]) : xr[i];
    if (yr && write_back) xr[i] = v;
    sum += v * v;
  }
  sum = block_sum(sum, scratch);
  // As the CPU kernel: the mean in double, the scale rounded to float once.
  const float inv = static_cast<float>(1.0 / sqrt(static_cast<double>(sum) / static_cast<double>(n) + eps));
  T* orow = out + o * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    // Each thread reads back only what it wrote above.
    const float v = (yr && !write_back) ? xr[i] + to_f32(yr[i]) : xr[i];
    orow[i] = from_f32<T>(v * inv * w[i]);
  }
}

}  // namespace

template <class T>
cudaError_t launch_add_rms_norm(float* x, const T* y, const int32_t* rows, int32_t n_out, int64_t n,
                                const float* w, float eps, bool write_back, T* out, cudaStream_t stream) {
  if (n_out == 0) return cudaSuccess;
  const int threads = n >= 4096 ? 1024 : n >= 1024 ? 512 : n >= 256 ? 256 : 128;
  add_rms_norm_kernel<T><<<n_out, threads, 0, stream>>>(x, y, rows, n, w, eps, write_back, out);
  return cudaGetLastError();
}

template cudaError_t launch_add_rms_norm<float>(float*, const float*, const int32_t*, int32_t, int64_t,
                                                const float*, float, bool, float*, cudaStream_t);
template cudaError_t launch_add_rms_norm<bf16>(float*, const bf16*, const int32_t*, int32_t, int64_t,
                                               const float*, float, bool, bf16*, cudaStream_t);

}  // namespace troupe::cuda
