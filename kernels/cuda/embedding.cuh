// embedding: gathers token rows of an embedding table into the f32 residual stream.
// The table keeps its checkpoint's type (f32, f16, bf16 or GGML q8_0) on the device, so a
// large vocabulary costs no more memory than on disk; rows become f32 because the residual
// stream is f32 (it accumulates every layer's output, as on the CPU).
#pragma once

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// x[t][:] = table[tokens[t]][:] for t < n_tokens. table: [n_vocab][n_embd] of type (q8_0 rows are
// n_embd / 32 blocks of an f16 scale and 32 int8). x: [n_tokens][n_embd].
cudaError_t launch_embedding(const void* table, table_type type, int64_t n_embd, const int32_t* tokens,
                             int32_t n_tokens, float* x, cudaStream_t stream);

}  // namespace troupe::cuda
