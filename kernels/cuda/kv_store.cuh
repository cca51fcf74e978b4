// kv_store: writes the new tokens' keys and values into the paged KV cache.
//
// The device layout of one layer's cache, for keys and values alike:
//   [n_blocks][n_head_kv][block_size][head_dim]
// so that the keys of one block and KV head are one contiguous run that attention reads in
// order. (The CPU cache stores keys transposed; the engine above only sees block ids.)
#pragma once

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// For t < n_tokens with slots[t] >= 0: the key head h of row t (columns k_col0 + h * head_dim of
// qkv) goes to slot slots[t] (block * block_size + offset) of k_cache, the value head likewise.
template <class T>
cudaError_t launch_kv_store(const T* qkv, int64_t ld, int64_t k_col0, int64_t v_col0, const int32_t* slots,
                            int32_t n_tokens, T* k_cache, T* v_cache, int32_t block_size, int32_t n_head_kv,
                            int32_t head_dim, cudaStream_t stream);

}  // namespace troupe::cuda
