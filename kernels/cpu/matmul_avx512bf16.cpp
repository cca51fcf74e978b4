// AVX512-BF16 micro-kernels for bf16 weights: vdpbf16ps multiplies pairs of bf16 values and
// accumulates in f32, so weights are used as stored, with no widening. Activations are split
// into bf16 high and low parts (x = hi + lo to about 16 bits of mantissa), two dot products
// per block, which keeps results within the f32 path's error; the `single` variant uses the
// high part only (half the work, activations rounded to bf16) and is opt-in.
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512bf16.
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/matmul.hpp"

namespace troupe::cpu::detail {
namespace {

constexpr int64_t max_rows = 6;
constexpr int64_t cols = 4;
constexpr int64_t k_block = 1024;

inline float hsum(__m512 v) {
  alignas(64) float a[16];
  _mm512_store_ps(a, v);
  float s[4];
  for (int j = 0; j < 4; ++j) s[j] = (a[j] + a[j + 4]) + (a[j + 8] + a[j + 12]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// Rows of x as bf16 high and low parts: [n_rows][k] each.
void split_rows(const float* x, int64_t ldx, int64_t n_rows, int64_t k, std::vector<uint16_t>& hi, std::vector<uint16_t>& lo) {
  hi.resize(static_cast<size_t>(n_rows * k));
  lo.resize(static_cast<size_t>(n_rows * k));
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t i = 0; i < k; i += 16) {
      const __m512 v = _mm512_loadu_ps(x + r * ldx + i);
      const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
      const __m512 back = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
      const __m256i l = (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, back));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(hi.data() + r * k + i), h);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(lo.data() + r * k + i), l);
    }
}

template <bool Single, int R, int C>
inline void kernel(const uint16_t* hi, const uint16_t* lo, int64_t k, const uint8_t* w, size_t rb, int64_t k0, int64_t k1,
                   float* y, int64_t ldy, bool first) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t i = k0; i < k1; i += 32) {
    __m512bh wv[C];
    for (int c = 0; c < C; ++c) wv[c] = (__m512bh)_mm512_loadu_si512(w + c * rb + 2 * i);
    for (int r = 0; r < R; ++r) {
      const __m512bh xh = (__m512bh)_mm512_loadu_si512(hi + r * k + i);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xh, wv[c]);
      if constexpr (!Single) {
        const __m512bh xl = (__m512bh)_mm512_loadu_si512(lo + r * k + i);
        for (int c = 0; c < C; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], xl, wv[c]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      const float s = hsum(acc[r][c]);
      y[r * ldy + c] = first ? s : y[r * ldy + c] + s;
    }
}

template <bool Single, int C>
inline void rows_dispatch(int64_t nr, const uint16_t* hi, const uint16_t* lo, int64_t k, const uint8_t* w, size_t rb,
                          int64_t k0, int64_t k1, float* y, int64_t ldy, bool first) {
  switch (nr) {
    case 1: kernel<Single, 1, C>(hi, lo, k, w, rb, k0, k1, y, ldy, first); break;
    case 2: kernel<Single, 2, C>(hi, lo, k, w, rb, k0, k1, y, ldy, first); break;
    case 3: kernel<Single, 3, C>(hi, lo, k, w, rb, k0, k1, y, ldy, first); break;
    case 4: kernel<Single, 4, C>(hi, lo, k, w, rb, k0, k1, y, ldy, first); break;
    case 5: kernel<Single, 5, C>(hi, lo, k, w, rb, k0, k1, y, ldy, first); break;
    default: kernel<Single, 6, C>(hi, lo, k, w, rb, k0, k1, y, ldy, first); break;
  }
}

template <bool Single>
void tile(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0, int64_t c1, float* y,
          int64_t ldy) {
  thread_local std::vector<uint16_t> hi, lo;
  const int64_t k = w.n_in;
  split_rows(x, ldx, n_rows, k, hi, lo);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  for (int64_t k0 = 0; k0 < k; k0 += k_block) {
    const int64_t k1 = std::min(k, k0 + k_block);
    const bool first = k0 == 0;
    for (int64_t c = c0; c < c1; c += cols) {
      const int64_t nc = std::min(cols, c1 - c);
      for (int64_t r = 0; r < n_rows; r += max_rows) {
        const int64_t nr = std::min(max_rows, n_rows - r);
        const uint16_t* h = hi.data() + r * k;
        const uint16_t* l = lo.data() + r * k;
        float* yr = y + r * ldy + c;
        if (nc == cols) {
          rows_dispatch<Single, cols>(nr, h, l, k, base + c * rb, rb, k0, k1, yr, ldy, first);
        } else {
          for (int64_t j = 0; j < nc; ++j)
            rows_dispatch<Single, 1>(nr, h, l, k, base + (c + j) * rb, rb, k0, k1, yr + j, ldy, first);
        }
      }
    }
  }
}

}  // namespace

// bf16 weights only; n_in a multiple of 32.
void tile_avx512bf16(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0, int64_t c1,
                     float* y, int64_t ldy) {
  tile<false>(x, ldx, n_rows, w, c0, c1, y, ldy);
}
void tile_avx512bf16_single(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0,
                            int64_t c1, float* y, int64_t ldy) {
  tile<true>(x, ldx, n_rows, w, c0, c1, y, ldy);
}

}  // namespace troupe::cpu::detail
