// rope: rotary position embeddings on the query and key heads, in place. The angles come from
// an inverse-frequency table that already holds the model's scaling (linear, Llama 3) and
// GGUF's rope_freq_factors; like the CPU executor, each angle is pos * inv_freq in double,
// its cosine and sine rounded to float once.
#pragma once

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// Rotates, in each of n_tokens rows of x (row stride ld), n_q_heads heads at column 0 and
// n_k_heads heads at column k_col0, each of head_dim values, by the angles of positions[t].
// neox pairs (i, i + head_dim / 2); interleaved pairs (2i, 2i + 1). inv_freq: [head_dim / 2].
template <class T>
cudaError_t launch_rope(T* x, int64_t ld, int32_t n_tokens, int32_t n_q_heads, int32_t n_k_heads, int64_t k_col0,
                        int32_t head_dim, const int32_t* positions, const double* inv_freq, bool interleaved,
                        cudaStream_t stream);

}  // namespace troupe::cuda
