// sampling: picks each row's next token on the device (greedy, temperature, top-k, top-p,
// min-p, seeded with a counter-based Philox draw), so that a decode step need not copy the
// logits to the host. The algorithm and its bit-exact host reference: sampling_ref.hpp.
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/sampling_math.hpp"

namespace troupe::cuda {

// out[r] = the token row r of logits chooses under rows[r], for r < n_rows. logits: [n_rows,
// n_vocab] f32 (row stride ld), finite or -inf. One thread block per row.
cudaError_t launch_sample(const float* logits, int64_t ld, int32_t n_rows, int32_t n_vocab, const sampling_row* rows,
                          int32_t* out, cudaStream_t stream);

}  // namespace troupe::cuda
