// Proves paged_attention (the CPU kernels of whichever ISA runs: TROUPE_ISA picks, see the
// variants in tests/CMakeLists.txt) against a double-precision softmax written out directly,
// over head sizes, grouped-query ratios, block sizes, sliding windows and tree masks; and that
// a query's output does not depend on what shares the call: computed alone, inside a chunk of
// queries, or beside other sequences, it is the same to the bit (the property speculative
// verification and chunked prefill rely on to equal plain decoding).
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/cpu_features.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace troupe::cpu {
namespace {

struct cache {
  int64_t bs, n_kv, hd, n_blocks;
  std::vector<float> k, v;
  kv_layer_view view() { return {k.data(), v.data(), bs, n_kv, hd}; }
  // Key / value d of KV head h at slot `slot` of block `blk`.
  float& key(int64_t blk, int64_t h, int64_t slot, int64_t d) {
    return k[static_cast<size_t>(((blk * n_kv + h) * hd + d) * bs + slot)];
  }
  float& val(int64_t blk, int64_t h, int64_t slot, int64_t d) {
    return v[static_cast<size_t>(((blk * n_kv + h) * bs + slot) * hd + d)];
  }
};

struct shape {
  int64_t hd, n_head, n_kv, bs, window;
};

class attention : public ::testing::TestWithParam<shape> {};

// A sequence of `len` cached positions, its blocks scattered (reversed) through the cache;
// slots past the sequence hold NaN, which no query may read.
struct sequence_cache {
  cache c;
  std::vector<int32_t> table;
  sequence_cache(const shape& s, int64_t len, std::mt19937& rng) {
    const int64_t n_blk = (len + s.bs - 1) / s.bs;
    c = {s.bs, s.n_kv, s.hd, n_blk + 1, {}, {}};
    const size_t n = static_cast<size_t>(c.n_blocks * s.n_kv * s.hd * s.bs);
    c.k.assign(n, std::nanf(""));
    c.v.assign(n, std::nanf(""));
    for (int64_t b = 0; b < n_blk; ++b) table.push_back(static_cast<int32_t>(n_blk - b));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int64_t p = 0; p < len; ++p)
      for (int64_t h = 0; h < s.n_kv; ++h)
        for (int64_t d = 0; d < s.hd; ++d) {
          c.key(table[static_cast<size_t>(p / s.bs)], h, p % s.bs, d) = nd(rng);
          c.val(table[static_cast<size_t>(p / s.bs)], h, p % s.bs, d) = nd(rng);
        }
  }
};

// The double-precision answer for query row i (position pos0 + i) and head h.
std::vector<double> reference(sequence_cache& sc, const shape& s, const float* q, int64_t pos0, int64_t i,
                              int64_t h, const uint64_t* mask, int64_t mask_words, float scale) {
  const int64_t pos = pos0 + i, kvh = h / (s.n_head / s.n_kv);
  std::vector<double> score;
  std::vector<int64_t> keys;
  for (int64_t p = 0; p <= pos; ++p) {
    if (s.window > 0 && p <= pos - s.window) continue;
    if (mask && p >= pos0) {
      const int64_t n = p - pos0;
      if (!((mask[i * mask_words + n / 64] >> (n % 64)) & 1)) continue;
    }
    double dot = 0;
    for (int64_t d = 0; d < s.hd; ++d)
      dot += static_cast<double>(q[h * s.hd + d]) * sc.c.key(sc.table[static_cast<size_t>(p / s.bs)], kvh, p % s.bs, d);
    score.push_back(dot * scale);
    keys.push_back(p);
  }
  double mx = -INFINITY, sum = 0;
  for (double x : score) mx = std::max(mx, x);
  std::vector<double> out(static_cast<size_t>(s.hd), 0.0);
  for (size_t j = 0; j < keys.size(); ++j) {
    const double w = std::exp(score[j] - mx);
    sum += w;
    for (int64_t d = 0; d < s.hd; ++d)
      out[static_cast<size_t>(d)] += w * sc.c.val(sc.table[static_cast<size_t>(keys[j] / s.bs)], kvh, keys[j] % s.bs, d);
  }
  for (double& x : out) x /= sum;
  return out;
}

void run(sequence_cache& sc, const shape& s, const std::vector<float>& q, int64_t q_row, int64_t n_q, int64_t pos0,
         const uint64_t* mask, int64_t mask_words, float scale, std::vector<float>& out, thread_pool& pool) {
  const attention_seq seq{q_row, n_q, pos0, sc.table.data(), mask, mask_words};
  const int64_t w = s.n_head * s.hd;
  paged_attention(q.data(), w, {&seq, 1}, sc.c.view(), s.n_head, s.window, scale, out.data(), w, pool);
}

TEST_P(attention, matches_the_double_reference_and_each_row_alone) {
  const shape s = GetParam();
  std::mt19937 rng(static_cast<uint32_t>(s.hd * 131 + s.n_head * 17 + s.bs + s.window));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  thread_pool pool(2);
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.hd));
  const int64_t w = s.n_head * s.hd;
  for (int64_t len : {1, 17, 40, 131}) {
    for (int64_t n_q : {1, 5, 40}) {
      if (n_q > len) continue;
      const int64_t pos0 = len - n_q;
      sequence_cache sc(s, len, rng);
      std::vector<float> q(static_cast<size_t>(n_q * w));
      for (float& x : q) x = nd(rng);
      for (bool tree : {false, true}) {
        // A tree over the new tokens: node j's parent is a random earlier node (or the cached
        // prefix); each row sees its ancestors and itself.
        const int64_t words = (n_q + 63) / 64;
        std::vector<uint64_t> mask(static_cast<size_t>(n_q * words), 0);
        for (int64_t j = 0; j < n_q; ++j) {
          const int64_t parent = j == 0 ? -1 : static_cast<int64_t>(rng() % static_cast<uint32_t>(j + 1)) - 1;
          if (parent >= 0)
            for (int64_t x = 0; x < words; ++x) mask[static_cast<size_t>(j * words + x)] = mask[static_cast<size_t>(parent * words + x)];
          mask[static_cast<size_t>(j * words + j / 64)] |= uint64_t{1} << (j % 64);
        }
        const uint64_t* m = tree ? mask.data() : nullptr;
        std::vector<float> all(q.size());
        run(sc, s, q, 0, n_q, pos0, m, words, scale, all, pool);
        for (int64_t i = 0; i < n_q; ++i) {
          for (int64_t h = 0; h < s.n_head; ++h) {
            const auto ref = reference(sc, s, q.data() + i * w, pos0, i, h, m, words, scale);
            for (int64_t d = 0; d < s.hd; ++d)
              ASSERT_NEAR(all[static_cast<size_t>(i * w + h * s.hd + d)], ref[static_cast<size_t>(d)], 2e-5)
                  << "len " << len << " n_q " << n_q << " tree " << tree << " row " << i << " head " << h << " d " << d;
          }
          // Row i alone, as a decode step (or one tree row) would compute it: the same bits.
          if (tree) continue;  // a lone row of a tree has no mask of its own to pass
          std::vector<float> one(static_cast<size_t>(w));
          std::vector<float> qi(q.begin() + i * w, q.begin() + (i + 1) * w);
          run(sc, s, qi, 0, 1, pos0 + i, nullptr, 0, scale, one, pool);
          ASSERT_EQ(0, std::memcmp(one.data(), all.data() + i * w, static_cast<size_t>(w) * 4))
              << "len " << len << " n_q " << n_q << " row " << i;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(shapes, attention,
                         ::testing::Values(shape{32, 8, 2, 16, 0},    // troupe-py-7m
                                           shape{64, 32, 4, 16, 0},   // TinyLlama
                                           shape{16, 4, 4, 16, 0},    // multi-head, small heads
                                           shape{80, 8, 1, 16, 0},    // multi-query, 80 = 64 + 16
                                           shape{128, 4, 2, 16, 24},  // a sliding window
                                           shape{256, 2, 1, 16, 0},   // wide heads
                                           shape{32, 8, 2, 8, 0},     // another block size
                                           shape{24, 6, 3, 16, 9}));  // head_dim not a multiple of 16

TEST(attention_isa, says_which_kernels_ran) {
  std::printf("kernels: %s\n", isa_name(best_isa()).c_str());
  SUCCEED();
}

}  // namespace
}  // namespace troupe::cpu
