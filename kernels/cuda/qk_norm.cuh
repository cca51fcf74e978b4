// qk_norm: Qwen3's RMSNorm over each query and key head (before RoPE), in place.
#pragma once

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// For each of n_tokens rows of x (row stride ld) and each of n_heads heads of head_dim values
// starting at column col0: head = head / sqrt(mean(head^2) + eps) * w. w: [head_dim] f32.
template <class T>
cudaError_t launch_head_rms_norm(T* x, int64_t ld, int32_t n_tokens, int32_t n_heads, int32_t head_dim,
                                 int64_t col0, const float* w, float eps, cudaStream_t stream);

}  // namespace troupe::cuda
