// AVX2 micro-kernels for matmul: up to 3 activation rows x 4 weight rows per tile (16 ymm
// registers), weights widened to f32 in registers. Compiled with -mavx2 -mfma -mf16c.
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/matmul.hpp"

namespace troupe::cpu::detail {
namespace {

constexpr int64_t max_rows = 3;
constexpr int64_t cols = 4;
constexpr int64_t k_block = 1024;

template <wtype T>
inline __m256 load8(const uint8_t* row, int64_t i) {
  if constexpr (T == wtype::f32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else if constexpr (T == wtype::bf16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else if constexpr (T == wtype::f16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  } else {
    const uint8_t* blk = row + (i / 32) * 34;
    uint16_t dh;
    __builtin_memcpy(&dh, blk, 2);
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 2 + (i % 32)));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <wtype T, int R, int C>
inline void kernel(const float* x, int64_t ldx, const uint8_t* w, size_t rb, int64_t k0,
                   int64_t k1, float* y, int64_t ldy, bool first) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t i = k0; i < k1; i += 8) {
    __m256 wv[C];
    for (int c = 0; c < C; ++c) wv[c] = load8<T>(w + c * rb, i);
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * ldx + i);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      const float s = hsum(acc[r][c]);
      y[r * ldy + c] = first ? s : y[r * ldy + c] + s;
    }
}

template <wtype T, int C>
inline void rows_dispatch(int64_t nr, const float* x, int64_t ldx, const uint8_t* w, size_t rb,
                          int64_t k0, int64_t k1, float* y, int64_t ldy, bool first) {
  switch (nr) {
    case 1: kernel<T, 1, C>(x, ldx, w, rb, k0, k1, y, ldy, first); break;
    case 2: kernel<T, 2, C>(x, ldx, w, rb, k0, k1, y, ldy, first); break;
    default: kernel<T, 3, C>(x, ldx, w, rb, k0, k1, y, ldy, first); break;
  }
}

template <wtype T>
void tile(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0,
          int64_t c1, float* y, int64_t ldy) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  for (int64_t k0 = 0; k0 < w.n_in; k0 += k_block) {
    const int64_t k1 = std::min(w.n_in, k0 + k_block);
    const bool first = k0 == 0;
    for (int64_t c = c0; c < c1; c += cols) {
      const int64_t nc = std::min(cols, c1 - c);
      for (int64_t r = 0; r < n_rows; r += max_rows) {
        const int64_t nr = std::min(max_rows, n_rows - r);
        const float* xr = x + r * ldx;
        float* yr = y + r * ldy + c;
        if (nc == cols) {
          rows_dispatch<T, cols>(nr, xr, ldx, base + c * rb, rb, k0, k1, yr, ldy, first);
        } else {
          for (int64_t j = 0; j < nc; ++j)
            rows_dispatch<T, 1>(nr, xr, ldx, base + (c + j) * rb, rb, k0, k1, yr + j, ldy, first);
        }
      }
    }
  }
}

}  // namespace

void tile_avx2(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0,
               int64_t c1, float* y, int64_t ldy) {
  switch (w.type) {
    case wtype::f32: tile<wtype::f32>(x, ldx, n_rows, w, c0, c1, y, ldy); break;
    case wtype::f16: tile<wtype::f16>(x, ldx, n_rows, w, c0, c1, y, ldy); break;
    case wtype::bf16: tile<wtype::bf16>(x, ldx, n_rows, w, c0, c1, y, ldy); break;
    case wtype::q8_0: tile<wtype::q8_0>(x, ldx, n_rows, w, c0, c1, y, ldy); break;
    default: tile_generic(x, ldx, n_rows, w, c0, c1, y, ldy); break;  // matmul sends panels instead
  }
}

}  // namespace troupe::cpu::detail
