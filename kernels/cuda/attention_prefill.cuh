// attention_prefill: causal grouped-query attention of many new tokens per sequence over the
// paged KV cache (variable-length sequences in one launch), tiled with an online softmax, as
// flash attention does: a tile of query rows loads each tile of keys and values once.
#pragma once

#include "kernels/cuda/batch_plan.hpp"
#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// For each item (a tile of one sequence's (token, head) rows, see batch_plan.hpp) and each KV
// head: out = softmax(q k^T * scale, causal, within the last `window` positions if window > 0) v.
// q: rows of the batch, query head h at column h * head_dim (row stride ldq), keys and values
// of the new tokens already stored in the cache. out: [n_tokens, n_head * head_dim] (stride ldo).
// head_dim: a multiple of 4, at most 256.
//
// The arithmetic is f32 on the SIMT cores; a tensor-core (WMMA / wgmma) variant for bf16 is
// the known next step if prefill of long prompts falls short of the cuBLAS target.
template <class T>
cudaError_t launch_attention_prefill(const T* q, int64_t ldq, const prefill_item* items, int32_t n_items,
                                     const int32_t* block_tables, const T* k_cache, const T* v_cache,
                                     int32_t block_size, int32_t n_head, int32_t n_head_kv, int32_t head_dim,
                                     int32_t window, float scale, T* out, int64_t ldo, cudaStream_t stream);

// Shared memory a launch needs (it must fit the device's opt-in limit).
size_t attention_prefill_smem_bytes(int32_t head_dim);

}  // namespace troupe::cuda
