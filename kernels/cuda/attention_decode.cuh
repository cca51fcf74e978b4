// attention_decode: attention of one new token per sequence over its paged context, split
// over long contexts (flash decoding): each split of split_len keys is one thread block
// per (sequence, KV head, group of up to 8 query heads), and a second kernel merges the
// splits' partial softmax states. The grid depends only on the batch size and the split
// count, so a captured decode graph replays it for any context within its bucket.
#pragma once

#include "kernels/cuda/batch_plan.hpp"
#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// For each item and query head: out = softmax(q k^T * scale over the item's n_ctx positions,
// the last `window` only if window > 0) v. q: query head h at column h * head_dim of row
// item.q_row (stride ldq). partial: scratch of [n_items][n_head][n_splits][head_dim + 2]
// floats. out: [*, n_head * head_dim] (stride ldo); items with n_ctx 0 get zeros.
// head_dim: even, at most 256.
template <class T>
cudaError_t launch_attention_decode(const T* q, int64_t ldq, const decode_item* items, int32_t n_items,
                                    const int32_t* block_tables, const T* k_cache, const T* v_cache,
                                    int32_t block_size, int32_t n_head, int32_t n_head_kv, int32_t head_dim,
                                    int32_t window, float scale, int32_t n_splits, int32_t split_len, float* partial,
                                    T* out, int64_t ldo, cudaStream_t stream);

}  // namespace troupe::cuda
