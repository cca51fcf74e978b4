// ops: the element-wise and attention kernels of the forward pass (f32), each compiled for
// AVX-512, AVX2 and generic x86-64 and chosen at run time.
#pragma once

#include <cstdint>
#include <span>

namespace troupe::cpu {

class thread_pool;

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for n_rows rows of n (row strides ld).
void rms_norm(const float* x, int64_t ldx, int64_t n_rows, int64_t n, const float* w, float eps,
              float* out, int64_t ldo);

// Rotates n_heads heads of head_dim in each of n_rows rows (row stride ld) in place, row r by
// the angles cos/sin[r][head_dim / 2]. neox pairs (i, i + head_dim/2); interleaved (2i, 2i+1).
void rope(float* x, int64_t ld, int64_t n_rows, int64_t n_heads, int64_t head_dim,
          const float* cos, const float* sin, bool interleaved);

// g = silu(g) * u over n values.
void silu_mul(float* g, const float* u, int64_t n);

// x += y over n values.
void add(float* x, const float* y, int64_t n);

// x[i] = exp((x[i] - max) * scale) for max >= every x[i] (softmax numerators); returns their
// sum in double.
double exp_shifted(float* x, int64_t n, float max, float scale);

// The paged KV cache of one layer, as the CPU executor lays it out. Per block and KV head,
// keys are stored transposed, [head_dim][block_size] (so scores for a block are vertical
// FMAs), values as [block_size][head_dim].
struct kv_layer_view {
  float* k = nullptr;  // [n_blocks][n_head_kv][head_dim][block_size]
  float* v = nullptr;  // [n_blocks][n_head_kv][block_size][head_dim]
  int64_t block_size = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t block_floats() const { return n_head_kv * head_dim * block_size; }
};

// Stores the keys and values of n_rows tokens at the given positions of one sequence.
void kv_store(const kv_layer_view& kv, const int32_t* block_table, const int32_t* positions,
              int64_t n_rows, const float* k, int64_t ldk, const float* v, int64_t ldv);

// One sequence's queries for paged attention: rows [q_row, q_row + n_q) of q hold the
// queries of positions pos0 .. pos0 + n_q - 1; keys 0 .. pos0 + n_q - 1 are in the cache.
// A tree verification (mask non-null): query i may see key slots below pos0 and those new
// slots pos0 + j whose bit j is set in its row, mask[i * mask_words + j / 64] >> (j % 64) (its
// ancestors and itself); a null mask is the causal chain, at no cost.
struct attention_seq {
  int64_t q_row = 0;
  int64_t n_q = 0;
  int64_t pos0 = 0;
  const int32_t* block_table = nullptr;
  const uint64_t* mask = nullptr;
  int64_t mask_words = 0;
};

// Causal grouped-query attention over the paged cache with an online softmax.
// q: [rows, n_head * head_dim] (stride ldq); out likewise (stride ldo).
// window > 0 limits each query to the last `window` positions (its own included).
void paged_attention(const float* q, int64_t ldq, std::span<const attention_seq> seqs,
                     const kv_layer_view& kv, int64_t n_head, int64_t window, float scale,
                     float* out, int64_t ldo, thread_pool& pool);

namespace detail {
struct ops_table {
  void (*rms_norm)(const float*, int64_t, int64_t, int64_t, const float*, float, float*, int64_t);
  void (*rope)(float*, int64_t, int64_t, int64_t, int64_t, const float*, const float*, bool);
  void (*silu_mul)(float*, const float*, int64_t);
  void (*add)(float*, const float*, int64_t);
  double (*exp_shifted)(float*, int64_t, float, float);
  // One work item of paged attention: queries [i0, i1) of seq s, KV head kvh.
  void (*attention_item)(const float* q, int64_t ldq, const attention_seq& s, int64_t i0,
                         int64_t i1, int64_t kvh, const kv_layer_view& kv, int64_t group,
                         int64_t window, float scale, float* out, int64_t ldo);
};
const ops_table& ops_generic();
const ops_table& ops_avx2();
const ops_table& ops_avx512();
}  // namespace detail

}  // namespace troupe::cpu
