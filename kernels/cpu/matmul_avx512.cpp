// AVX-512 micro-kernels for matmul: up to 6 activation rows x 4 weight rows per tile, weights
// widened to f32 in registers (f16 by vcvtph2ps, q8_0 by sign extension and its block scale),
// accumulated with FMA; bf16 weights through one outer-product kernel over packed strips (below). Compiled with -mavx512f -mavx512bw -mavx512vl -mf16c.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "kernels/cpu/avx512_util.hpp"
#include "kernels/cpu/matmul.hpp"

namespace troupe::cpu::detail {
namespace {

constexpr int64_t max_rows = 6;
constexpr int64_t cols = 4;
constexpr int64_t k_block = 1024;  // a block of activations (rows x 4 KiB) stays in L2

template <wtype T>
inline __m512 load16(const uint8_t* row, int64_t i) {
  if constexpr (T == wtype::f32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else if constexpr (T == wtype::bf16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else if constexpr (T == wtype::f16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i)));
  } else {
    const uint8_t* blk = row + (i / 32) * 34;
    uint16_t dh;
    __builtin_memcpy(&dh, blk, 2);
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(dh));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2 + (i % 32)));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
  }
}

// Horizontal sum in a fixed order. (GCC 12's _mm512_reduce_add_ps trips -Wuninitialized.)
inline float hsum(__m512 v) {
  alignas(64) float a[16];
  _mm512_store_ps(a, v);
  float s[4];
  for (int j = 0; j < 4; ++j) s[j] = (a[j] + a[j + 4]) + (a[j + 8] + a[j + 12]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

// The sums of four accumulators in lanes 0..3, each in a fixed order (the same for every row,
// whatever the tile's row count): halves, then pairs within 128-bit lanes, then the two lanes.
// A third of the shuffles and adds of four hsum calls, which at K = 256 cost as much as the FMAs.
inline __m128 hsum4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  const __m256 b0 = _mm256_add_ps(_mm512_castps512_ps256(a0), _mm512_extractf32x8_ps(a0, 1));
  const __m256 b1 = _mm256_add_ps(_mm512_castps512_ps256(a1), _mm512_extractf32x8_ps(a1, 1));
  const __m256 b2 = _mm256_add_ps(_mm512_castps512_ps256(a2), _mm512_extractf32x8_ps(a2, 1));
  const __m256 b3 = _mm256_add_ps(_mm512_castps512_ps256(a3), _mm512_extractf32x8_ps(a3, 1));
  const __m256 t0 = _mm256_add_ps(_mm256_unpacklo_ps(b0, b1), _mm256_unpackhi_ps(b0, b1));
  const __m256 t1 = _mm256_add_ps(_mm256_unpacklo_ps(b2, b3), _mm256_unpackhi_ps(b2, b3));
  const __m256 u = _mm256_add_ps(_mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

template <wtype T, int R, int C>
inline void kernel(const float* x, int64_t ldx, const uint8_t* w, size_t rb, int64_t k0,
                   int64_t k1, float* y, int64_t ldy, bool first) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  // Small-row-count tiles (decode, verification) stream the weights, and a tile's rows are
  // too short for the hardware prefetcher to get ahead: fetch the next tile's rows (contiguous
  // after these) in step with this one, a line per row per 64 bytes read here (measured at
  // batch 1: the decode forward from about 2.0 to 1.2 ms of CPU).
  constexpr bool prefetch = C == 4 && (T == wtype::f16 || T == wtype::f32);
  constexpr int64_t elem = T == wtype::f32 ? 4 : 2;
  constexpr int64_t per_line = 64 / elem;
  for (int64_t i = k0; i < k1; i += 16) {
    __m512 wv[C];
    if constexpr (prefetch)
      if (i % per_line == 0)
        for (int c = 0; c < C; ++c)
          _mm_prefetch(reinterpret_cast<const char*>(w + (C + c) * rb + elem * i), _MM_HINT_T0);
    for (int c = 0; c < C; ++c) wv[c] = load16<T>(w + c * rb, i);
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_loadu_ps(x + r * ldx + i);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  if constexpr (C == 4) {
    for (int r = 0; r < R; ++r) {
      const __m128 s = hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
      float* yr = y + r * ldy;
      _mm_storeu_ps(yr, first ? s : _mm_add_ps(_mm_loadu_ps(yr), s));
    }
  } else {
    for (int r = 0; r < R; ++r)
      for (int c = 0; c < C; ++c) {
        const float s = hsum(acc[r][c]);
        y[r * ldy + c] = first ? s : y[r * ldy + c] + s;
      }
  }
}

template <wtype T, int C>
inline void rows_dispatch(int64_t nr, const float* x, int64_t ldx, const uint8_t* w, size_t rb,
                          int64_t k0, int64_t k1, float* y, int64_t ldy, bool first) {
  switch (nr) {
    case 1: kernel<T, 1, C>(x, ldx, w, rb, k0, k1, y, ldy, first); break;
    case 2: kernel<T, 2, C>(x, ldx, w, rb, k0, k1, y, ldy, first); break;
    case 3: kernel<T, 3, C>(x, ldx, w, rb, k0, k1, y, ldy, first); break;
    case 4: kernel<T, 4, C>(x, ldx, w, rb, k0, k1, y, ldy, first); break;
    case 5: kernel<T, 5, C>(x, ldx, w, rb, k0, k1, y, ldy, first); break;
    default: kernel<T, 6, C>(x, ldx, w, rb, k0, k1, y, ldy, first); break;
  }
}

template <wtype T>
void tile(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0,
          int64_t c1, float* y, int64_t ldy) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  // With one tile of rows the activations stay in L1/L2 whatever their length: read each
  // weight row in one pass, which keeps the hardware prefetchers on one stream per row
  // (measured: batch-1 decode from 65% to 76% of the triad bandwidth).
  const int64_t kb = n_rows <= max_rows ? w.n_in : k_block;
  for (int64_t k0 = 0; k0 < w.n_in; k0 += kb) {
    const int64_t k1 = std::min(w.n_in, k0 + kb);
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

template <wtype T>
void dequant(const weight_matrix& w, int64_t r0, int64_t r1, float* out) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  for (int64_t r = r0; r < r1; ++r) {
    float* o = out + (r - r0) * w.n_in;
    for (int64_t i = 0; i < w.n_in; i += 16) _mm512_storeu_ps(o + i, load16<T>(base + r * rb, i));
  }
}

}  // namespace

void tile_avx512(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0,
                 int64_t c1, float* y, int64_t ldy) {
  switch (w.type) {
    case wtype::f32: tile<wtype::f32>(x, ldx, n_rows, w, c0, c1, y, ldy); break;
    case wtype::f16: tile<wtype::f16>(x, ldx, n_rows, w, c0, c1, y, ldy); break;
    case wtype::bf16: bf16_packed_avx512(x, ldx, n_rows, w, c0, c1, y, ldy); break;  // c0: a multiple of 16
    case wtype::q8_0: tile<wtype::q8_0>(x, ldx, n_rows, w, c0, c1, y, ldy); break;
    default: tile_generic(x, ldx, n_rows, w, c0, c1, y, ldy); break;  // matmul sends panels instead
  }
}

void dequant_avx512(const weight_matrix& w, int64_t r0, int64_t r1, float* out) {
  switch (w.type) {
    case wtype::f32: dequant<wtype::f32>(w, r0, r1, out); break;
    case wtype::f16: dequant<wtype::f16>(w, r0, r1, out); break;
    case wtype::bf16: dequant<wtype::bf16>(w, r0, r1, out); break;
    case wtype::q8_0: dequant<wtype::q8_0>(w, r0, r1, out); break;
    default: dequant_generic(w, r0, r1, out); break;
  }
}

void round_bf16_f32_avx512(const float* x, int64_t n, float* out) {
  const __m512i half = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1), hi = _mm512_set1_epi32(int32_t(0xffff0000u));
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(0x400000);
  auto one_vec = [&](__m512i u) {
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), one);
    const __m512i rounded = _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(u, half), lsb), hi);
    // NaN stays NaN (quieted), as round_to_bf16 keeps it.
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
    return _mm512_mask_mov_epi32(rounded, nan, _mm512_and_si512(_mm512_or_si512(u, quiet), hi));
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_si512(out + i, one_vec(_mm512_loadu_si512(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_epi32(out + i, m, one_vec(_mm512_maskz_loadu_epi32(m, x + i)));
  }
}

// bf16 weights packed once (pack_bf16_avx512, see packed_bf16 in matmul.hpp) and one outer-
// product micro-kernel for every row count (bf16_packed_avx512). A strip is 16 output columns;
// inside it, pair p of k is one 64-byte line whose word j is W[c+j][2p] | W[c+j][2p+1] << 16.
// Per pair and tile of R activation rows x S strips: S line loads, a shift and an AND per line
// (the even and the odd k as f32), 2 x R x S FMAs with broadcast activations; no horizontal sums.
// No software prefetch: the strips are contiguous and the hardware prefetchers follow them (measured:
// prefetching 24 lines ahead on every strip changed nothing at 1, 5 or 32 rows, from L3 or memory).
// Every output's accumulator runs the same chain of FMAs over k = 0, 1, 2, ... whatever the tile
// or row count (blocks of k continue from the partial sums stored in y), so a row gives the same
// bits alone, in a verification of 5 rows or in a batch of 32.
namespace {

constexpr int64_t pk_rows = 6;      // activation rows per tile
constexpr int64_t pk_strips = 4;    // strips (64 columns) per tile
constexpr int64_t pk_kb = 256;      // values of k per block when many rows pass over the strips
constexpr int64_t pk_few_rows = 12; // up to this many rows: every strip streamed once, whole k

// Strips [s0, s1) of w into out (strip s at out + (s - s0) * pairs * 16).
void pack_strips(const weight_matrix& w, int64_t s0, int64_t s1, uint32_t* out) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  const int64_t pairs = (w.n_in + 1) / 2, full = w.n_in / 32;  // full: blocks of 16 whole pairs
  for (int64_t s = s0; s < s1; ++s) {
    uint32_t* o = out + (s - s0) * pairs * 16;
    const int64_t c = 16 * s, nr = std::min<int64_t>(16, w.n_out - c);
    if (nr == 16) {
      for (int64_t b = 0; b < full; ++b) {
        __m512i r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(base + (c + i) * rb + 64 * b);
        transpose16(r);
        for (int p = 0; p < 16; ++p) _mm512_store_si512(o + (16 * b + p) * 16, r[p]);
      }
    }
    // What the vector loop left: partial strips, and the pairs after the last block of 32 values.
    for (int64_t p = nr == 16 ? 16 * full : 0; p < pairs; ++p)
      for (int64_t j = 0; j < 16; ++j) {
        uint32_t v = 0;
        if (j < nr) {
          const auto* row = reinterpret_cast<const uint16_t*>(base + (c + j) * rb);
          v = row[2 * p];
          if (2 * p + 1 < w.n_in) v |= static_cast<uint32_t>(row[2 * p + 1]) << 16;
        }
        o[p * 16 + j] = v;
      }
  }
}

// y[R rows][S strips (the last one masked)] (+)= x · W over pairs [p0, p1) of strips at w (line
// stride sw between strips), then, with odd_tail, the even half of pair p1 (an odd n_in's end).
// xt: the tile's activations interleaved by pair (xt[2Rp + 2r + e] = x[r][2p + e]), so that every
// broadcast comes from one pointer.
template <int R, int S>
inline void packed_tile(const float* xt, const uint32_t* w, int64_t sw, int64_t p0, int64_t p1, bool odd_tail,
                        float* y, int64_t ldy, __mmask16 last_mask, bool first) {
  __m512 acc[R][S];
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < S; ++s) {
      const __mmask16 m = s == S - 1 ? last_mask : __mmask16(0xffff);
      acc[r][s] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m, y + r * ldy + 16 * s);
    }
  const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  // The even k of the pair for every row, then the odd k (each line is read twice, from L1):
  // R x S accumulators, S weight vectors and one broadcast live at a time (30 registers at 6 x 4).
  const uint32_t* wp = w + p0 * 16;
  const float* xp = xt + p0 * 2 * R;
  for (int64_t p = p0; p < p1; ++p, wp += 16, xp += 2 * R) {
    __m512 wv[S];
    for (int s = 0; s < S; ++s) wv[s] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_load_si512(wp + s * sw), 16));
    for (int r = 0; r < R; ++r) {
      const __m512 xb = _mm512_set1_ps(xp[2 * r]);
      for (int s = 0; s < S; ++s) acc[r][s] = _mm512_fmadd_ps(xb, wv[s], acc[r][s]);
    }
    for (int s = 0; s < S; ++s) wv[s] = _mm512_castsi512_ps(_mm512_and_si512(_mm512_load_si512(wp + s * sw), hi));
    for (int r = 0; r < R; ++r) {
      const __m512 xb = _mm512_set1_ps(xp[2 * r + 1]);
      for (int s = 0; s < S; ++s) acc[r][s] = _mm512_fmadd_ps(xb, wv[s], acc[r][s]);
    }
  }
  if (odd_tail) {
    for (int s = 0; s < S; ++s) {
      const __m512 we = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_load_si512(wp + s * sw), 16));
      for (int r = 0; r < R; ++r) acc[r][s] = _mm512_fmadd_ps(_mm512_set1_ps(xp[2 * r]), we, acc[r][s]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < S; ++s) {
      const __mmask16 m = s == S - 1 ? last_mask : __mmask16(0xffff);
      _mm512_mask_storeu_ps(y + r * ldy + 16 * s, m, acc[r][s]);
    }
}

template <int S>
inline void packed_rows(int64_t nr, const float* x, const uint32_t* w, int64_t sw, int64_t p0,
                        int64_t p1, bool odd_tail, float* y, int64_t ldy, __mmask16 last_mask, bool first) {
  switch (nr) {
    case 1: packed_tile<1, S>(x, w, sw, p0, p1, odd_tail, y, ldy, last_mask, first); break;
    case 2: packed_tile<2, S>(x, w, sw, p0, p1, odd_tail, y, ldy, last_mask, first); break;
    case 3: packed_tile<3, S>(x, w, sw, p0, p1, odd_tail, y, ldy, last_mask, first); break;
    case 4: packed_tile<4, S>(x, w, sw, p0, p1, odd_tail, y, ldy, last_mask, first); break;
    case 5: packed_tile<5, S>(x, w, sw, p0, p1, odd_tail, y, ldy, last_mask, first); break;
    default: packed_tile<6, S>(x, w, sw, p0, p1, odd_tail, y, ldy, last_mask, first); break;
  }
}

// Matmuls of bf16 weights that were not packed at load (tests, benchmarks, a head's own file):
// each thread packs the strips of its columns here, a tile of them at a time.
uint32_t* strip_buffer(size_t words) {
  static thread_local std::vector<uint32_t> b;
  b.resize(words + 16);
  return reinterpret_cast<uint32_t*>((reinterpret_cast<uintptr_t>(b.data()) + 63) & ~uintptr_t{63});
}

// Each thread's copy of the activations, interleaved by pair per tile of rows (packed_tile's xt).
std::vector<float>& act_buffer() {
  static thread_local std::vector<float> b;
  return b;
}

}  // namespace

void pack_bf16_avx512(const weight_matrix& w, int64_t s0, int64_t s1, uint32_t* out) { pack_strips(w, s0, s1, out); }

void bf16_packed_avx512(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0, int64_t c1,
                        float* y, int64_t ldy) {
  const int64_t pairs = (w.n_in + 1) / 2, sw = pairs * 16;
  const bool odd = w.n_in % 2 != 0;
  // Few rows (decode, verification): each tile of strips streamed once over the whole of k, by
  // every row tile in turn while it is in L1/L2. Many rows: blocks of k, so that the tile of
  // strips (64 columns x 256 values: 32 KiB) stays in L1 while every row tile passes over it.
  const int64_t kb_pairs = n_rows <= pk_few_rows ? pairs : pk_kb / 2;
  // The activations, tile by tile of rows: xt[tile t] = x rows 6t.. interleaved by pair (an odd
  // n_in's missing value 0). A copy of n_rows x n_in floats, small beside the products.
  std::vector<float>& xt = act_buffer();
  xt.resize(static_cast<size_t>(n_rows * 2 * pairs));
  // Row tiles of equal size (8 rows: 4 + 4, not 6 + 2): tile i holds tile_rows(i) rows from tile_row0(i).
  const int64_t n_tiles = (n_rows + pk_rows - 1) / pk_rows, tile_base = n_rows / n_tiles, tile_extra = n_rows % n_tiles;
  auto tile_row0 = [&](int64_t i) { return i * tile_base + std::min(i, tile_extra); };
  auto tile_rows = [&](int64_t i) { return tile_base + (i < tile_extra ? 1 : 0); };
  for (int64_t i = 0; i < n_tiles; ++i) {
    const int64_t r0 = tile_row0(i), nr = tile_rows(i);
    float* t = xt.data() + r0 * 2 * pairs;
    for (int64_t r = 0; r < nr; ++r) {
      const float* xr = x + (r0 + r) * ldx;
      for (int64_t p = 0; p < pairs; ++p) {
        t[(p * nr + r) * 2] = xr[2 * p];
        t[(p * nr + r) * 2 + 1] = 2 * p + 1 < w.n_in ? xr[2 * p + 1] : 0.0f;
      }
    }
  }
  for (int64_t c = c0; c < c1; c += 16 * pk_strips) {
    const int64_t nc = std::min(16 * pk_strips, c1 - c);
    const int ns = static_cast<int>((nc + 15) / 16);
    const __mmask16 last_mask = nc % 16 ? static_cast<__mmask16>((1u << (nc % 16)) - 1u) : __mmask16(0xffff);
    const uint32_t* ws;
    const int64_t stride = sw;
    if (w.packed) {
      ws = w.packed + (c / 16) * sw;
    } else {
      uint32_t* buf = strip_buffer(static_cast<size_t>(ns * sw));
      pack_strips(w, c / 16, c / 16 + ns, buf);
      ws = buf;
    }
    for (int64_t p0 = 0; p0 < pairs; p0 += kb_pairs) {
      const int64_t p1 = std::min(pairs, p0 + kb_pairs);
      const bool tail = odd && p1 == pairs;
      const int64_t pe = tail ? p1 - 1 : p1;
      for (int64_t i = 0; i < n_tiles; ++i) {
        const int64_t r = tile_row0(i), nr = tile_rows(i);
        const float* xr = xt.data() + r * 2 * pairs;
        float* yr = y + r * ldy + c;
        switch (ns) {
          case 1: packed_rows<1>(nr, xr, ws, stride, p0, pe, tail, yr, ldy, last_mask, p0 == 0); break;
          case 2: packed_rows<2>(nr, xr, ws, stride, p0, pe, tail, yr, ldy, last_mask, p0 == 0); break;
          case 3: packed_rows<3>(nr, xr, ws, stride, p0, pe, tail, yr, ldy, last_mask, p0 == 0); break;
          default: packed_rows<4>(nr, xr, ws, stride, p0, pe, tail, yr, ldy, last_mask, p0 == 0); break;
        }
      }
    }
  }
}

// As quantize_rows_q8_generic, 16 values at a time: the same f32 operations (amax, 127 / amax,
// x * that, rounded to nearest even by vcvtps2dq in the default rounding mode), so the same bits.
void quantize_rows_q8_avx512(const float* x, int64_t ldx, int64_t r0, int64_t r1, const q8_rows& out) {
  const int64_t n = out.n_in, bs = out.block;
  auto* q_all = const_cast<int8_t*>(out.q);
  auto* d_all = const_cast<float*>(out.d);
  auto* s_all = const_cast<int16_t*>(out.sum16);
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * ldx;
    int8_t* q = q_all + r * out.ldq;
    float* d = d_all + r * (n / bs);
    int16_t* s = s_all + r * (n / 16);
    for (int64_t b = 0; b < n / bs; ++b) {
      __m512 m = _mm512_setzero_ps();
      for (int64_t i = b * bs; i < (b + 1) * bs; i += 16)
        m = _mm512_max_ps(_mm512_and_ps(_mm512_loadu_ps(xr + i), abs_mask), m);  // NaN lanes keep m
      const float amax = _mm512_reduce_max_ps(m);
      const float iscale = amax > 0.0f ? 127.0f / amax : 0.0f;
      d[b] = amax / 127.0f;
      const __m512 is = _mm512_set1_ps(iscale);
      for (int64_t i = b * bs; i < (b + 1) * bs; i += 16) {
        const __m512i qi = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xr + i), is));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(qi));
        s[i / 16] = static_cast<int16_t>(_mm512_reduce_add_epi32(qi));
      }
    }
  }
}

// f32 FMA in registers only (12 independent chains): this thread's f32 peak.
double fma_peak_gflops(int64_t iters) {
  __m512 acc[12];
  for (auto& a : acc) a = _mm512_setzero_ps();
  __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
  const auto t = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < iters; ++k) {
    for (auto& c : acc) c = _mm512_fmadd_ps(a, b, c);
    __asm__ volatile("" : "+v"(a));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  float sink = 0;
  for (auto& c : acc) sink += _mm512_cvtss_f32(c);
  __asm__ volatile("" ::"x"(sink));
  return static_cast<double>(iters) * 12 * 32 / s / 1e9;
}

}  // namespace troupe::cpu::detail
