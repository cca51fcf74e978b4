#include "kernels/cpu/ops.hpp"

#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_features.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace troupe::cpu {
namespace {

const detail::ops_table& ops() {
  static const detail::ops_table& t = [&]() -> const detail::ops_table& {
    switch (best_isa()) {
      case isa::avx512: return detail::ops_avx512();
      case isa::avx2: return detail::ops_avx2();
      case isa::generic: break;
    }
    return detail::ops_generic();
  }();
  return t;
}

}  // namespace

void rms_norm(const float* x, int64_t ldx, int64_t n_rows, int64_t n, const float* w, float eps,
              float* out, int64_t ldo) {
  ops().rms_norm(x, ldx, n_rows, n, w, eps, out, ldo);
}

void rope(float* x, int64_t ld, int64_t n_rows, int64_t n_heads, int64_t head_dim,
          const float* cos, const float* sin, bool interleaved) {
  ops().rope(x, ld, n_rows, n_heads, head_dim, cos, sin, interleaved);
}

void silu_mul(float* g, const float* u, int64_t n) { ops().silu_mul(g, u, n); }

void add(float* x, const float* y, int64_t n) { ops().add(x, y, n); }

double exp_shifted(float* x, int64_t n, float max, float scale) { return ops().exp_shifted(x, n, max, scale); }

void kv_store(const kv_layer_view& kv, const int32_t* block_table, const int32_t* positions,
              int64_t n_rows, const float* k, int64_t ldk, const float* v, int64_t ldv) {
  const int64_t hd = kv.head_dim, bs = kv.block_size;
  for (int64_t r = 0; r < n_rows; ++r) {
    const int64_t pos = positions[r];
    const int64_t blk = block_table[pos / bs], slot = pos % bs;
    for (int64_t h = 0; h < kv.n_head_kv; ++h) {
      float* kb = kv.k + blk * kv.block_floats() + h * hd * bs;
      float* vb = kv.v + blk * kv.block_floats() + h * bs * hd + slot * hd;
      const float* kr = k + r * ldk + h * hd;
      const float* vr = v + r * ldv + h * hd;
      for (int64_t d = 0; d < hd; ++d) kb[d * bs + slot] = kr[d];
      std::copy(vr, vr + hd, vb);
    }
  }
}

void paged_attention(const float* q, int64_t ldq, std::span<const attention_seq> seqs,
                     const kv_layer_view& kv, int64_t n_head, int64_t window, float scale,
                     float* out, int64_t ldo, thread_pool& pool) {
  // Work items: (sequence, KV head, chunk of queries). Chunks keep long prefills spread over
  // threads while each item still reuses every key block for many queries.
  constexpr int64_t chunk = 32;
  struct item {
    int32_t seq;
    int32_t kvh;
    int64_t i0, i1;
  };
  // (Not thread_local: the pool's workers must see the caller's list.)
  std::vector<item> items;
  for (size_t s = 0; s < seqs.size(); ++s)
    for (int64_t h = 0; h < kv.n_head_kv; ++h)
      for (int64_t i = 0; i < seqs[s].n_q; i += chunk)
        items.push_back({static_cast<int32_t>(s), static_cast<int32_t>(h), i,
                         std::min(seqs[s].n_q, i + chunk)});
  // Later queries see more keys: interleave so that threads get similar work.
  const int64_t group = n_head / kv.n_head_kv;
  const auto& fn = ops().attention_item;
  const int64_t n_items = static_cast<int64_t>(items.size());
  const int n_threads = pool.size();
  pool.run([&](int t) {
    for (int64_t i = t; i < n_items; i += n_threads) {
      const item& it = items[static_cast<size_t>(i)];
      fn(q, ldq, seqs[static_cast<size_t>(it.seq)], it.i0, it.i1, it.kvh, kv, group, window, scale,
         out, ldo);
    }
  });
}

}  // namespace troupe::cpu
