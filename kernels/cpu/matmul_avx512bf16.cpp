// The fast path for bf16 weights on CPUs with AVX512-BF16: activations already rounded to bf16
// times weights as stored, with vdpbf16ps (32 products a 512-bit instruction, summed in f32).
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512bf16.
//
// A tile is R activation rows x C weight rows, both read along k 32 values at a time into R x C
// vector accumulators, reduced to sums once per k block (four at a time, by a transpose). The
// weights are read in place, never repacked. Blocking (measured at TinyLlama's shapes): a k
// block of up to 2048 values (reducing the accumulators costs about one instruction each, so
// long k blocks pay for it best); within it, an n block of 96 columns whose weights (384 KiB)
// stay in L2 while each tile's R rows of activations (R * 4 KiB) stay in L1 across the n
// block's columns, so each step loads C weight vectors from L2 for R * C products. Tiles of
// 6 x 4 and 8 x 3 measured alike (about 55% of the vdpbf16ps peak per core at 512 x 5632 x
// 2048, thread CPU time); 4 x 6 and 12 x 2 were slower, and so were k blocks of 512 or 1024.
// Few rows (decode) take wide tiles (R = 1, C = 8: eight weight rows stream at once).
#include <immintrin.h>

#include <algorithm>
#include <chrono>

#include "kernels/cpu/avx512_util.hpp"
#include "kernels/cpu/matmul.hpp"

namespace troupe::cpu::detail {
namespace {

constexpr int64_t k_block = 2048;
constexpr int64_t n_block = 96;

// Sums of four accumulators, in their order, in the low 4 lanes.
inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));  // a0+a2 b0+b2 a1+a3 b1+b3
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  const __m512 abcd = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
                                    _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(abcd), _mm512_extractf32x8_ps(abcd, 1));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

inline float hsum(__m512 v) { return hsum512(v); }

template <int R, int C>
inline void kernel(const uint16_t* x, int64_t ldx, const uint16_t* w, int64_t ldw, int64_t k0, int64_t k1,
                   float* y, int64_t ldy, bool first) {
  __m512 acc[R * C];
  for (auto& a : acc) a = _mm512_setzero_ps();
  for (int64_t i = k0; i < k1; i += 32) {
    __m512bh wv[C];
    for (int c = 0; c < C; ++c) wv[c] = (__m512bh)_mm512_loadu_si512(w + c * ldw + i);
    for (int r = 0; r < R; ++r) {
      const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + r * ldx + i);
      for (int c = 0; c < C; ++c) acc[r * C + c] = _mm512_dpbf16_ps(acc[r * C + c], xv, wv[c]);
    }
  }
  // Accumulator j is (row j / C, column j % C); reduce four at a time.
  constexpr int n = R * C;
  alignas(16) float s[4];
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    _mm_store_ps(s, hsum4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3]));
    for (int q = 0; q < 4; ++q) {
      float& out = y[((j + q) / C) * ldy + (j + q) % C];
      out = first ? s[q] : out + s[q];
    }
  }
  if constexpr (n % 4 != 0) {
    for (; j < n; ++j) {
      float& out = y[(j / C) * ldy + j % C];
      const float v = hsum(acc[j]);
      out = first ? v : out + v;
    }
  }
}

// Rows [r0, r1) against columns [c0, c1) of one k block, in tiles of R rows x C columns
// (columns left over in tiles of R x 1).
template <int R, int C>
inline void tiles(const uint16_t* x, int64_t ldx, int64_t r0, int64_t r1, const uint16_t* w, int64_t ldw,
                  int64_t c0, int64_t c1, int64_t k0, int64_t k1, float* y, int64_t ldy, bool first) {
  for (int64_t r = r0; r + R <= r1; r += R) {
    int64_t c = c0;
    for (; c + C <= c1; c += C)
      kernel<R, C>(x + r * ldx, ldx, w + c * ldw, ldw, k0, k1, y + r * ldy + c, ldy, first);
    for (; c < c1; ++c) kernel<R, 1>(x + r * ldx, ldx, w + c * ldw, ldw, k0, k1, y + r * ldy + c, ldy, first);
  }
}

// The rows left after whole tiles of 8: one tile of their count.
inline void tail_rows(int64_t nr, const uint16_t* x, int64_t ldx, int64_t r0, const uint16_t* w, int64_t ldw,
                      int64_t c0, int64_t c1, int64_t k0, int64_t k1, float* y, int64_t ldy, bool first) {
  const int64_t r1 = r0 + nr;
  switch (nr) {
    case 1: tiles<1, 8>(x, ldx, r0, r1, w, ldw, c0, c1, k0, k1, y, ldy, first); break;
    case 2: tiles<2, 8>(x, ldx, r0, r1, w, ldw, c0, c1, k0, k1, y, ldy, first); break;
    case 3: tiles<3, 6>(x, ldx, r0, r1, w, ldw, c0, c1, k0, k1, y, ldy, first); break;
    case 4: tiles<4, 5>(x, ldx, r0, r1, w, ldw, c0, c1, k0, k1, y, ldy, first); break;
    case 5: tiles<5, 4>(x, ldx, r0, r1, w, ldw, c0, c1, k0, k1, y, ldy, first); break;
    case 6: tiles<6, 4>(x, ldx, r0, r1, w, ldw, c0, c1, k0, k1, y, ldy, first); break;
    case 7: tiles<7, 3>(x, ldx, r0, r1, w, ldw, c0, c1, k0, k1, y, ldy, first); break;
    default: break;
  }
}

}  // namespace

void bf16_tile_avx512bf16(const uint16_t* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0,
                          int64_t c1, float* y, int64_t ldy) {
  const auto* wb = static_cast<const uint16_t*>(w.data);
  const int64_t k = w.n_in, ldw = w.n_in;
  // k blocks of equal size (multiples of 32), at most k_block.
  const int64_t n_kb = (k + k_block - 1) / k_block;
  const int64_t kb = (k / 32 + n_kb - 1) / n_kb * 32;
  constexpr int64_t R = 6, C = 4;
  const int64_t whole = n_rows / R * R;
  // Column blocks whose weights stay in L2 (a multiple of C, so that tiles stay whole).
  const int64_t nb = n_rows >= R ? n_block / C * C : c1 - c0;
  for (int64_t k0 = 0; k0 < k; k0 += kb) {
    const int64_t k1 = std::min(k, k0 + kb);
    const bool first = k0 == 0;
    for (int64_t n0 = c0; n0 < c1; n0 += nb) {
      const int64_t n1 = std::min(c1, n0 + nb);
      tiles<R, C>(x, ldx, 0, whole, wb, ldw, n0, n1, k0, k1, y, ldy, first);
      if (whole < n_rows) tail_rows(n_rows - whole, x, ldx, whole, wb, ldw, n0, n1, k0, k1, y, ldy, first);
    }
  }
}

}  // namespace troupe::cpu::detail

namespace troupe::cpu::detail {

// vdpbf16ps in registers only (12 independent chains): this thread's bf16 dot-product peak.
double bf16_peak_gflops(int64_t iters) {
  __m512 acc[12];
  for (auto& a : acc) a = _mm512_setzero_ps();
  __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3f80);
  const auto t = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < iters; ++k) {
    for (auto& c : acc) c = _mm512_dpbf16_ps(c, a, b);
    __asm__ volatile("" : "+v"(a));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  float sink = 0;
  for (auto& c : acc) sink += _mm512_cvtss_f32(c);
  __asm__ volatile("" ::"x"(sink));
  return static_cast<double>(iters) * 12 * 64 / s / 1e9;
}

}  // namespace troupe::cpu::detail
