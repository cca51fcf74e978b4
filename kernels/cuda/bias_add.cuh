// bias_add: adds Qwen2's q/k/v projection biases to the fused projection's output, in place.
#pragma once

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// x[r][j] += b[j] for r < n_rows, j < n (row stride ld). b: [n] f32.
template <class T>
cudaError_t launch_bias_add(T* x, int64_t ld, int32_t n_rows, int64_t n, const float* b, cudaStream_t stream);

}  // namespace troupe::cuda
