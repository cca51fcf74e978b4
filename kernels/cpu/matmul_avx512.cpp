// AVX-512 micro-kernels for matmul: up to 6 activation rows x 4 weight rows per tile, weights
// widened to f32 in registers (bf16 by a shift, f16 by vcvtph2ps, q8_0 by sign extension and
// its block scale), accumulated with FMA. Compiled with -mavx512f -mavx512bw -mavx512vl -mf16c.
#include <immintrin.h>

#include <algorithm>
#include <chrono>

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
  constexpr bool prefetch = C == 4 && (T == wtype::bf16 || T == wtype::f16 || T == wtype::f32);
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
    case wtype::bf16: tile<wtype::bf16>(x, ldx, n_rows, w, c0, c1, y, ldy); break;
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

// Many rows of activations against bf16 weights, on CPUs without bf16 units: an outer-product
// GEMM. Per 64 weight rows (output columns) and 128 values along k, the weights are widened to
// f32 and transposed into a 32 KiB panel (a 16 x 16 transpose of bf16 pairs, then a shift or a
// mask per pair), which every tile of activation rows then reads from L1: per k, four panel
// vectors and one broadcast activation per row feed 4 FMAs per row, 6 rows a tile (24
// accumulators). The inner-product micro-kernels above read one activation and one weight vector
// per 16 products of a row and a column and sum lanes at the end; this one loads 10 vectors per
// 24 FMAs and no lane sums.
namespace {

constexpr int64_t gemm_nb = 64;   // weight rows per panel
constexpr int64_t gemm_kb = 128;  // values along k per panel
constexpr int gemm_mr = 6;        // activation rows per tile

// 16 weight rows from `row` (nr of them; zeros after) x 32 values of k from k (kn of them, a
// multiple of 2) into panel rows k.., columns j0..j0+15.
template <bool Full>
inline void pack_strip(const uint8_t* row, size_t rb, int64_t nr, int64_t k, int64_t kn, float* out) {
  const __m512i hi_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  __m512i r[16];
  if constexpr (Full) {
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(row + i * rb + 2 * k);
  } else {
    const __mmask16 km = kn >= 32 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << (kn / 2)) - 1u);
    for (int i = 0; i < 16; ++i)
      r[i] = i < nr ? _mm512_maskz_loadu_epi32(km, row + i * rb + 2 * k) : _mm512_setzero_si512();
  }
  transpose16(r);
  for (int64_t p = 0; p < 16; ++p) {
    if (!Full && 2 * p >= kn) break;
    _mm512_store_si512(out + 2 * p * gemm_nb, _mm512_slli_epi32(r[p], 16));
    _mm512_store_si512(out + (2 * p + 1) * gemm_nb, _mm512_and_si512(r[p], hi_mask));
  }
}

// panel[k][j] = W[c + j][k0 + k] as f32 for j < nc (0 beyond), k < kb. The lines of the panel
// after this one (the next k block, else the next 64 rows' first) are fetched meanwhile: a
// panel's rows are too short for the hardware prefetcher to follow.
void pack_panel(const uint8_t* base, size_t rb, int64_t nc, int64_t k0, int64_t kb, int64_t n_in, float* panel) {
  const uint8_t* next = k0 + kb < n_in ? base + 2 * (k0 + kb) : base + gemm_nb * rb;
  for (int64_t j0 = 0; j0 < gemm_nb; j0 += 16) {
    for (int64_t kk = 0; kk < kb; kk += 32) {
      for (int i = 0; i < 16; ++i)  // one line per row: 32 values of k
        _mm_prefetch(reinterpret_cast<const char*>(next + (j0 + i) * rb + 2 * kk), _MM_HINT_T0);
      float* out = panel + kk * gemm_nb + j0;
      if (nc - j0 >= 16 && kb - kk >= 32) pack_strip<true>(base + j0 * rb, rb, 16, k0 + kk, 32, out);
      else pack_strip<false>(base + j0 * rb, rb, std::max<int64_t>(0, nc - j0), k0 + kk, std::min<int64_t>(32, kb - kk), out);
    }
  }
}

template <int MR>
inline void gemm_tile(const float* x, int64_t ldx, const float* panel, int64_t kb, float* y, int64_t ldy,
                      __mmask16 last_mask, int nvec, bool first) {
  __m512 acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kb; ++k) {
    const float* pk = panel + k * gemm_nb;
    const __m512 w0 = _mm512_load_ps(pk), w1 = _mm512_load_ps(pk + 16), w2 = _mm512_load_ps(pk + 32),
                 w3 = _mm512_load_ps(pk + 48);
    for (int r = 0; r < MR; ++r) {
      const __m512 xb = _mm512_set1_ps(x[r * ldx + k]);
      acc[r][0] = _mm512_fmadd_ps(xb, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(xb, w1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(xb, w2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(xb, w3, acc[r][3]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < nvec; ++j) {
      float* yp = y + r * ldy + 16 * j;
      const __mmask16 m = j == nvec - 1 ? last_mask : __mmask16(0xffff);
      const __m512 v = first ? acc[r][j] : _mm512_add_ps(_mm512_maskz_loadu_ps(m, yp), acc[r][j]);
      _mm512_mask_storeu_ps(yp, m, v);
    }
}

}  // namespace

void bf16_gemm_avx512(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0,
                      int64_t c1, float* y, int64_t ldy) {
  alignas(64) static thread_local float panel[gemm_kb * gemm_nb];
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  for (int64_t c = c0; c < c1; c += gemm_nb) {
    const int64_t nc = std::min(gemm_nb, c1 - c);
    const int nvec = static_cast<int>((nc + 15) / 16);
    const __mmask16 last_mask = nc % 16 ? static_cast<__mmask16>((1u << (nc % 16)) - 1u) : __mmask16(0xffff);
    for (int64_t k0 = 0; k0 < w.n_in; k0 += gemm_kb) {
      const int64_t kb = std::min(gemm_kb, w.n_in - k0);
      pack_panel(base + c * rb, rb, nc, k0, kb, w.n_in, panel);
      const bool first = k0 == 0;
      for (int64_t r = 0; r < n_rows; r += gemm_mr) {
        const float* xr = x + r * ldx + k0;
        float* yr = y + r * ldy + c;
        switch (std::min<int64_t>(gemm_mr, n_rows - r)) {
          case 1: gemm_tile<1>(xr, ldx, panel, kb, yr, ldy, last_mask, nvec, first); break;
          case 2: gemm_tile<2>(xr, ldx, panel, kb, yr, ldy, last_mask, nvec, first); break;
          case 3: gemm_tile<3>(xr, ldx, panel, kb, yr, ldy, last_mask, nvec, first); break;
          case 4: gemm_tile<4>(xr, ldx, panel, kb, yr, ldy, last_mask, nvec, first); break;
          case 5: gemm_tile<5>(xr, ldx, panel, kb, yr, ldy, last_mask, nvec, first); break;
          default: gemm_tile<6>(xr, ldx, panel, kb, yr, ldy, last_mask, nvec, first); break;
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
