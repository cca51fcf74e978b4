// rms_norm: RMSNorm fused with the residual add. The residual stream x stays f32; the normed
// rows come out in the activation type T (bf16 or f32) that the next matrix product reads.
#pragma once

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// For output row o < n_out, with r = rows ? rows[o] : o:
//   v = x[r] + y[r] (y may be null), out[o] = v / sqrt(mean(v^2) + eps) * w.
// With write_back, x[r] = v is stored: the residual add of the layer. x: [*, n] f32,
// y: [*, n] T, w: [n] f32, out: [n_out, n] T.
template <class T>
cudaError_t launch_add_rms_norm(float* x, const T* y, const int32_t* rows, int32_t n_out, int64_t n,
                                const float* w, float eps, bool write_back, T* out, cudaStream_t stream);

}  // namespace troupe::cuda
