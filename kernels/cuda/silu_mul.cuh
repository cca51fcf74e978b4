// silu_mul: the SwiGLU activation over the fused gate/up projection's output.
#pragma once

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// out[r][i] = silu(gu[r][i]) * gu[r][n_ff + i]. gu: [n_rows, 2 * n_ff] (gate, then up),
// out: [n_rows, n_ff].
template <class T>
cudaError_t launch_silu_mul(const T* gu, int32_t n_rows, int64_t n_ff, T* out, cudaStream_t stream);

}  // namespace troupe::cuda
