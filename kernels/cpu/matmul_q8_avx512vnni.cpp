// The fast path for GGML quantized weights on CPUs with AVX512-VNNI: activations quantized to
// int8 (q8_rows), weights unpacked in registers to unsigned 8-bit values, integer dot products.
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni.
//
// K types (q4_K, q5_K, q6_K; 256 values a block), 1-9 rows (decode: kd_kernel, k6d_kernel): per
// 64 values, vpdpbusd from zero (u8 weights x s8 activations, sums of 4: at most 4 * 63 * 127,
// so int16 holds them), two such vectors packed to int16 and multiplied by their sub-blocks'
// scales with one vpmaddwd / vpdpwssd into int32; once per block, to f32 with d * d_x. Mins
// (q4_K, q5_K) and q6_K's -32 come from the activations' sums of 16 (q8_rows::sum16). From 10
// rows, outer-product GEMMs over transposed panels (k_gemm, k6_gemm).
// 32-value types (q8_0 as w + 128, q4_0 as its nibbles): vpdpbusd per block, its offset from the
// activation sums, then f32 scales per block.
// A tile is up to R activation rows x C weight rows, so each unpacked weight vector serves R rows
// and C weight rows stream at once.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/cpu/ggml_blocks.hpp"
#include "kernels/cpu/avx512_util.hpp"
#include "kernels/cpu/matmul.hpp"

namespace troupe::cpu::detail {
namespace {

inline float hsum(__m512 v) { return hsum512(v); }

inline float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Index vectors of kd_kernel, for the scales and mins of k4_scales_mins4 (sc0..7, m0..7 as bytes
// in every 128-bit lane).
struct k_consts {
  __m512i pack_sc[2];  // vpshufb: the scales of kd_kernel's packed pair m (below), as int16
  __m512i mins16;      // vpshufb: int16 lane i of each 128-bit lane: min i
  __m512i dmin_lanes;  // vpermps of kd_kernel's [d0, dmin0, d1, dmin1, ...]: dmin c in lanes 4c .. 4c + 3
  k_consts() {
    alignas(64) int8_t bytes[64];
    // Pair m packs the low nibbles of bytes 64m .. 64m + 63 (sub-blocks 4m, 4m + 2) with the high
    // ones (4m + 1, 4m + 3): in 128-bit lane L, int16 lanes 0-3 hold sub-block 4m + 2 (L >= 2),
    // lanes 4-7 sub-block 4m + 1 + 2 (L >= 2).
    for (int m = 0; m < 2; ++m) {
      for (int l = 0; l < 64; ++l) {
        const int lane = l / 16, p = (l % 16) / 2;
        bytes[l] = l % 2 ? int8_t(-128) : static_cast<int8_t>(4 * m + (p >= 4) + 2 * (lane >= 2));
      }
      pack_sc[m] = _mm512_load_si512(bytes);
    }
    for (int l = 0; l < 64; ++l) bytes[l] = l % 2 ? int8_t(-128) : static_cast<int8_t>(8 + (l % 16) / 2);
    mins16 = _mm512_load_si512(bytes);
    dmin_lanes = _mm512_set_epi32(7, 7, 7, 7, 5, 5, 5, 5, 3, 3, 3, 3, 1, 1, 1, 1);
  }
};

template <wtype T>
constexpr size_t kbytes() {
  return T == wtype::q4_k ? ggml::q4_k_bytes : T == wtype::q5_k ? ggml::q5_k_bytes : ggml::q6_k_bytes;
}

// Chunk j (values 64j .. 64j+63) of a K block as unsigned bytes.
template <wtype T>
inline __m512i k_chunk(const uint8_t* blk, int j, __m512i qh) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  if constexpr (T == wtype::q4_k || T == wtype::q5_k) {
    const uint8_t* qs = blk + (T == wtype::q4_k ? 16 : 48) + 32 * j;
    const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs)));
    __m512i u = _mm512_and_si512(_mm512_srlv_epi16(v, _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1)),
                                 low4);
    if constexpr (T == wtype::q5_k) {
      const __m512i bits = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (2 * j))),
                                              _mm256_set1_epi8(static_cast<char>(1 << (2 * j + 1))), 1);
      const __mmask64 k = _mm512_test_epi8_mask(qh, bits);
      u = _mm512_mask_add_epi8(u, k, u, _mm512_set1_epi8(16));
    }
    return u;
  } else {  // q6_K: half j / 2; chunks 0-1 of the half are low nibbles of ql, 2-3 high nibbles
    const uint8_t* ql = blk + 64 * (j / 2);
    const __m512i v = _mm512_loadu_si512(ql);
    const __m512i nib = (j & 1) ? _mm512_and_si512(_mm512_srli_epi16(v, 4), low4) : _mm512_and_si512(v, low4);
    const int s0 = (j & 1) ? 4 : 0;
    const __m512i shifts = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<short>(s0)),
                                              _mm256_set1_epi16(static_cast<short>(s0 + 2)), 1);
    const __m512i hi = _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shifts), _mm512_set1_epi8(3)), 4);
    return _mm512_or_si512(nib, hi);
  }
}

// One to four rows of activations against q4_K / q5_K weights (decode), C (up to 4) weight rows
// at a time. Per 64 bytes of a block's nibbles (sub-blocks 4m and 4m + 2 in the low nibbles,
// 4m + 1 and 4m + 3 in the high ones), one vpand and one vpsrlw + vpand give two vectors of
// unsigned values, matched by activations stored in that order (kd_acts); per (row, weight row),
// one vpdpbusd from zero each gives int32 sums of 4 products (at most 4 x 31 x 127: int16 holds
// them), the pair is packed to int16 (vpackssdw, exact) and multiplied by the sub-blocks' scales
// with one vpmaddwd / vpdpwssd, then once per block to f32 and one FMA with d x d_x. The 6-bit
// scales and mins of the C weight rows are unpacked together (one 128-bit lane each), and the
// mins' term (activation sums of each sub-block against the mins) is one vpmaddwd and one FMA
// per block for all C weight rows. Each (row, weight row) is summed in the same order whatever R,
// C and its place in the tile are: a row's result does not depend on the rows beside it.
struct kd_acts {
  const int8_t* q = nullptr;    // [row][ldq]: each block's sub-blocks in the order 0 2 1 3 4 6 5 7
  int64_t ldq = 0;
  const int16_t* s32 = nullptr;  // [row][block][8]: the sums of each sub-block of 32
  const float* d = nullptr;      // [row][block]
  int64_t nb = 0;                // blocks per row
};

// The 4 weight rows' block headers (16 bytes from blk: d, dmin, 12 bytes of scales and mins, one
// 128-bit lane each; lanes past C zero) to sc0..7, m0..7 as bytes per lane (as k4_scales_mins).
inline __m512i k4_scales_mins4(__m512i hdr) {
  // dwords per lane: [d|dmin, u0, u1, u2] -> [u0 & m1, (u2 & m2) | ((u0 >> 2) & 0x30..),
  //                                           u1 & m1, ((u2 >> 4) & m2) | ((u1 >> 2) & 0x30..)]
  const __m512i p = _mm512_srlv_epi32(_mm512_shuffle_epi32(hdr, _MM_PERM_ENUM(1 | 3 << 2 | 2 << 4 | 3 << 6)),
                                      _mm512_set4_epi32(4, 0, 0, 0));
  const __m512i q = _mm512_srli_epi32(_mm512_shuffle_epi32(hdr, _MM_PERM_ENUM(0 | 1 << 2 | 0 << 4 | 2 << 6)), 2);
  const __m512i pm = _mm512_and_si512(p, _mm512_set4_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
  return _mm512_ternarylogic_epi32(pm, q, _mm512_set4_epi32(0x30303030, 0, 0x30303030, 0), 0xf8);  // pm | (q & m)
}

template <int C>
inline __m512i k_headers(const uint8_t* w, size_t rb, size_t at) {
  const auto lane = [&](int c) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + c * rb + at)); };
  __m512i h = _mm512_castsi128_si512(lane(0));
  h = _mm512_inserti32x4(h, C > 1 ? lane(1) : _mm_setzero_si128(), 1);
  h = _mm512_inserti32x4(h, C > 2 ? lane(2) : _mm_setzero_si128(), 2);
  return _mm512_inserti32x4(h, C > 3 ? lane(3) : _mm_setzero_si128(), 3);
}

template <int c>
inline __m512i lane_bcast(__m512i v) {
  return _mm512_shuffle_i32x4(v, v, c * 0x55);
}

template <wtype T, int R, int C>
void kd_kernel(const kd_acts& a, int64_t r0, const uint8_t* w, size_t rb, float* y, int64_t ldy, const k_consts& kc) {
  constexpr size_t bb = kbytes<T>();
  constexpr size_t qs_at = T == wtype::q4_k ? 16 : 48;
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  __m512 facc[R][C], macc[R];
  for (int r = 0; r < R; ++r) {
    macc[r] = _mm512_setzero_ps();
    for (int c = 0; c < C; ++c) facc[r][c] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < a.nb; ++b) {
    const __m512i hdr = k_headers<C>(w, rb, b * bb);
    const __m512i sm = k4_scales_mins4(hdr);
    // d and dmin of each weight row, as f32: [d0, dmin0, d1, dmin1, ...]
    const __m256 dd = _mm256_cvtph_ps(_mm512_castsi512_si128(
        _mm512_permutexvar_epi32(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0), hdr)));
    __m512i isum[R][C];
    const auto one_row = [&](auto cc) {
      constexpr int c = decltype(cc)::value;
      const uint8_t* blk = w + c * rb + b * bb;
      const __m512i s = lane_bcast<c>(sm);
      __m512i qh = _mm512_setzero_si512();
      if constexpr (T == wtype::q5_k)
        qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16)));
      for (int m = 0; m < 2; ++m) {
        // The next tile's rows follow these: fetch them in step (measured against fetching further
        // ahead in these rows, two or three tiles ahead, and into L2 or NTA: no better, or worse).
        _mm_prefetch(reinterpret_cast<const char*>(blk + C * rb + 64 * m), _MM_HINT_T0);
        if (m == 1) _mm_prefetch(reinterpret_cast<const char*>(blk + C * rb + bb - 1), _MM_HINT_T0);
        const __m512i v = _mm512_loadu_si512(blk + qs_at + 64 * m);
        __m512i lo = _mm512_and_si512(v, low4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
        if constexpr (T == wtype::q5_k) {
          // Bit s of qh[l] (sub-block s) to bit 4 of each byte: a rotation of the dwords by 4 - s
          // (mod 32) keeps every byte's bit 4 within its byte; vpternlogd ors it in.
          const auto rot = [](int sb) { return (4 - sb + 32) % 32; };
          const __m512i rlo = _mm512_inserti64x4(_mm512_set1_epi32(rot(4 * m)), _mm256_set1_epi32(rot(4 * m + 2)), 1);
          const __m512i rhi =
              _mm512_inserti64x4(_mm512_set1_epi32(rot(4 * m + 1)), _mm256_set1_epi32(rot(4 * m + 3)), 1);
          const __m512i bit4 = _mm512_set1_epi8(0x10);
          lo = _mm512_ternarylogic_epi32(lo, _mm512_rolv_epi32(qh, rlo), bit4, 0xf8);  // lo | (rot & 0x10)
          hi = _mm512_ternarylogic_epi32(hi, _mm512_rolv_epi32(qh, rhi), bit4, 0xf8);
        }
        const __m512i sc = _mm512_shuffle_epi8(s, kc.pack_sc[m]);
        for (int r = 0; r < R; ++r) {
          const int8_t* xq = a.q + (r0 + r) * a.ldq + b * ggml::qk_k + 128 * m;
          const __m512i dlo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_load_si512(xq));
          const __m512i dhi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, _mm512_load_si512(xq + 64));
          const __m512i p = _mm512_packs_epi32(dlo, dhi);
          isum[r][c] = m == 0 ? _mm512_madd_epi16(p, sc) : _mm512_dpwssd_epi32(isum[r][c], p, sc);
        }
      }
    };
    [&]<int... cs>(std::integer_sequence<int, cs...>) {
      (one_row(std::integral_constant<int, cs>{}), ...);
    }(std::make_integer_sequence<int, C>{});
    const __m512i m16 = _mm512_shuffle_epi8(sm, kc.mins16);
    for (int r = 0; r < R; ++r) {
      const __m512 f = _mm512_zextps256_ps512(_mm256_mul_ps(dd, _mm256_set1_ps(a.d[(r0 + r) * a.nb + b])));
      for (int c = 0; c < C; ++c)
        facc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][c]), _mm512_permutexvar_ps(_mm512_set1_epi32(2 * c), f),
                                     facc[r][c]);
      const __m512i bs = _mm512_broadcast_i32x4(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.s32 + ((r0 + r) * a.nb + b) * 8)));
      macc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_madd_epi16(m16, bs)),
                                _mm512_permutexvar_ps(kc.dmin_lanes, f), macc[r]);
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(64) float mv[16];
    _mm512_store_ps(mv, macc[r]);
    for (int c = 0; c < C; ++c)
      y[r * ldy + c] = hsum(facc[r][c]) - ((mv[4 * c] + mv[4 * c + 1]) + (mv[4 * c + 2] + mv[4 * c + 3]));
  }
}

// kd_acts from q8_rows: the values reordered per block, the sums of 32 from the sums of 16.
inline kd_acts kd_prepare(const q8_rows& x) {
  struct alignas(64) line {
    int8_t v[64];
  };
  static thread_local std::vector<line> qbuf;
  static thread_local std::vector<int16_t> sbuf;
  kd_acts a;
  a.nb = x.n_in / ggml::qk_k;
  a.ldq = a.nb * ggml::qk_k;
  a.d = x.d;
  qbuf.resize(static_cast<size_t>(x.n_rows * a.ldq / 64));
  sbuf.resize(static_cast<size_t>(x.n_rows * a.nb * 8));
  auto* q = reinterpret_cast<int8_t*>(qbuf.data());
  for (int64_t r = 0; r < x.n_rows; ++r)
    for (int64_t b = 0; b < a.nb; ++b) {
      for (int m = 0; m < 2; ++m) {
        const int8_t* src = x.q + r * x.ldq + b * ggml::qk_k + 128 * m;
        const __m512i lo = _mm512_loadu_si512(src), hi = _mm512_loadu_si512(src + 64);  // sub-blocks 4m .. 4m + 3
        int8_t* dst = q + r * a.ldq + b * ggml::qk_k + 128 * m;
        _mm512_store_si512(dst, _mm512_shuffle_i64x2(lo, hi, 0x44));       // 4m, 4m + 2
        _mm512_store_si512(dst + 64, _mm512_shuffle_i64x2(lo, hi, 0xee));  // 4m + 1, 4m + 3
      }
      const __m256i s16 =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.sum16 + r * (x.n_in / 16) + b * 16));
      const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));  // at most 32 x 127: int16
      _mm_storeu_si128(reinterpret_cast<__m128i*>(sbuf.data() + (r * a.nb + b) * 8),
                       _mm_packs_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1)));
    }
  a.q = q;
  a.s32 = sbuf.data();
  return a;
}

template <wtype T, int C>
inline void kd_rows(int64_t nr, const kd_acts& a, int64_t r0, const uint8_t* w, size_t rb, float* y, int64_t ldy,
                    const k_consts& kc) {
  switch (nr) {
    case 1: kd_kernel<T, 1, C>(a, r0, w, rb, y, ldy, kc); break;
    case 2: kd_kernel<T, 2, C>(a, r0, w, rb, y, ldy, kc); break;
    case 3: kd_kernel<T, 3, C>(a, r0, w, rb, y, ldy, kc); break;
    default: kd_kernel<T, 4, C>(a, r0, w, rb, y, ldy, kc); break;
  }
}

// The decode kernels' tiling over weight rows [c0, c1): `cols` weight rows (the last tile may
// have fewer) by up to 4 activation rows at a time; f.template operator()<C>(nr, r, c) runs the
// tile of C weight rows from c and nr activation rows from r.
template <class F>
inline void for_decode_tiles(int64_t n_rows, int64_t c0, int64_t c1, int64_t cols, F&& f) {
  constexpr int64_t max_rows = 4;
  for (int64_t c = c0; c < c1; c += cols) {
    const int64_t nc = std::min(cols, c1 - c);
    for (int64_t r = 0; r < n_rows; r += max_rows) {
      const int64_t nr = std::min(max_rows, n_rows - r);
      switch (nc) {
        case 4: f.template operator()<4>(nr, r, c); break;
        case 3: f.template operator()<3>(nr, r, c); break;
        case 2: f.template operator()<2>(nr, r, c); break;
        default: f.template operator()<1>(nr, r, c); break;
      }
    }
  }
}

// The tile for q4_K / q5_K: 4 weight rows at a time for up to four rows of activations (one row
// tile; 3-10% faster than 2 at 3-4 rows, measured), else 2.
template <wtype T>
void kd_tile(const q8_rows& x, const weight_matrix& w, int64_t c0, int64_t c1, float* y, int64_t ldy,
             const k_consts& kc) {
  const kd_acts a = kd_prepare(x);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  for_decode_tiles(x.n_rows, c0, c1, x.n_rows <= 4 ? 4 : 2, [&]<int C>(int64_t nr, int64_t r, int64_t c) {
    kd_rows<T, C>(nr, a, r, base + c * rb, rb, y + r * ldy + c, ldy, kc);
  });
}

// One to four rows of activations against q6_K weights (decode), C (up to 4) weight rows at a
// time. Per half block (128 values): the 64 bytes of ql give the low nibbles of values 0-63 (one
// vpand) and 64-127 (vpsrlw + vpand), in the activations' order; qh's two bits of each value are
// rotated to bits 4-5 of their byte (vprold) and ored in (vpternlogd). One vpdpbusd from zero
// per 64 values (sums of 4 products, at most 4 x 63 x 127: int16 holds them), the pair packed to
// int16 and multiplied by the 16-value groups' signed scales with one vpmaddwd / vpdpwssd; the
// -32 offset once per block from the activations' sums of 16 against the scales (exact in
// int32), then one f32 FMA with d x d_x. Each (row, weight row) is summed in the same order
// whatever R, C and its place in the tile are.
template <int R, int C>
void k6d_kernel(const q8_rows& x, int64_t r0, const uint8_t* w, size_t rb, float* y, int64_t ldy) {
  constexpr size_t bb = ggml::q6_k_bytes;
  const int64_t nb = x.n_in / ggml::qk_k;
  const __m512i low4 = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
  // Packed pair of half h: in 128-bit lane L, int16 lanes 0-3 are group 8h + L, 4-7 group 8h + 4 + L.
  const __m512i grp[2] = {_mm512_set_epi16(7, 7, 7, 7, 3, 3, 3, 3, 6, 6, 6, 6, 2, 2, 2, 2, 5, 5, 5, 5, 1, 1, 1, 1, 4,
                                           4, 4, 4, 0, 0, 0, 0),
                          _mm512_set_epi16(15, 15, 15, 15, 11, 11, 11, 11, 14, 14, 14, 14, 10, 10, 10, 10, 13, 13, 13,
                                           13, 9, 9, 9, 9, 12, 12, 12, 12, 8, 8, 8, 8)};
  // qh's bits 2c, 2c + 1 to bits 4-5: values 0-63 of a half (c = 0, 1), then 64-127 (c = 2, 3).
  const __m512i rot_lo = _mm512_inserti64x4(_mm512_set1_epi32(4), _mm256_set1_epi32(2), 1);
  const __m512i rot_hi = _mm512_inserti64x4(_mm512_set1_epi32(0), _mm256_set1_epi32(30), 1);
  __m512 facc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) facc[r][c] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const auto one_row = [&](auto cc) {
      constexpr int c = decltype(cc)::value;
      const uint8_t* blk = w + c * rb + b * bb;
      const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 192)));
      __m512i isum[R];
      for (int h = 0; h < 2; ++h) {
        // The next tile's rows follow these: fetch them in step.
        _mm_prefetch(reinterpret_cast<const char*>(blk + C * rb + 64 * h), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(blk + C * rb + 128 + 81 * h), _MM_HINT_T0);
        const __m512i v = _mm512_loadu_si512(blk + 64 * h);
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * h)));
        const __m512i lo = _mm512_ternarylogic_epi32(_mm512_and_si512(v, low4), _mm512_rolv_epi32(qh, rot_lo), bits45, 0xf8);
        const __m512i hi = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(v, 4), low4),
                                                     _mm512_rolv_epi32(qh, rot_hi), bits45, 0xf8);
        const __m512i sc = _mm512_permutexvar_epi16(grp[h], _mm512_castsi256_si512(sc16));
        for (int r = 0; r < R; ++r) {
          const int8_t* xq = x.q + (r0 + r) * x.ldq + b * ggml::qk_k + 128 * h;
          const __m512i dlo = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_load_si512(xq));
          const __m512i dhi = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, _mm512_load_si512(xq + 64));
          const __m512i p = _mm512_packs_epi32(dlo, dhi);
          isum[r] = h == 0 ? _mm512_madd_epi16(p, sc) : _mm512_dpwssd_epi32(isum[r], p, sc);
        }
      }
      const float d = f16(blk + 208);
      for (int r = 0; r < R; ++r) {
        const __m256i bs =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.sum16 + (r0 + r) * (x.n_in / 16) + b * 16));
        const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5);  // 32 x sum of scale x group sum
        const __m512i t = _mm512_sub_epi32(isum[r], _mm512_zextsi256_si512(corr));
        facc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_set1_ps(d * x.d[(r0 + r) * nb + b]), facc[r][c]);
      }
    };
    [&]<int... cs>(std::integer_sequence<int, cs...>) {
      (one_row(std::integral_constant<int, cs>{}), ...);
    }(std::make_integer_sequence<int, C>{});
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) y[r * ldy + c] = hsum(facc[r][c]);
}

template <int C>
inline void k6d_rows(int64_t nr, const q8_rows& x, int64_t r0, const uint8_t* w, size_t rb, float* y, int64_t ldy) {
  switch (nr) {
    case 1: k6d_kernel<1, C>(x, r0, w, rb, y, ldy); break;
    case 2: k6d_kernel<2, C>(x, r0, w, rb, y, ldy); break;
    case 3: k6d_kernel<3, C>(x, r0, w, rb, y, ldy); break;
    default: k6d_kernel<4, C>(x, r0, w, rb, y, ldy); break;
  }
}

// The tile for q6_K: 4 weight rows at a time for one or two rows of activations, else 2.
void k6d_tile(const q8_rows& x, const weight_matrix& w, int64_t c0, int64_t c1, float* y, int64_t ldy) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  for_decode_tiles(x.n_rows, c0, c1, x.n_rows <= 2 ? 4 : 2, [&]<int C>(int64_t nr, int64_t r, int64_t c) {
    k6d_rows<C>(nr, x, r, base + c * rb, rb, y + r * ldy + c, ldy);
  });
}

// q8_0 and q4_0: blocks of 32, two blocks per 512-bit vector. Per group of 16 blocks, each
// weight row's 16 f16 scales come in one gather and each activation row's 16 scales and block
// sums in one load; per pair of blocks, one vpdpbusd per (row, column) starting from the
// offset's correction (-offset * block sum, in int32 lanes 0 and 8: exact), then to f32 and one
// FMA with the pair's scales spread over lanes 0-7 and 8-15. (The previous kernel, one block a
// 256-bit vector with scalar scales and two accumulator sets picked by a run-time index, kept its
// accumulators in memory: about 8 cycles a block per weight row.)
alignas(64) constexpr int32_t pair_lanes[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},         {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},         {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},         {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};

// Blocks b and b + 1 (b + 1 only when `both`) of a weight row as unsigned bytes.
template <wtype T>
inline __m512i b32_pair(const uint8_t* blk, bool both) {
  if constexpr (T == wtype::q8_0) {
    const __m256i flip = _mm256_set1_epi8(-128);
    const __m256i lo = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2)), flip);
    if (!both) return _mm512_zextsi256_si512(lo);
    const __m256i hi =
        _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + ggml::q8_0_bytes + 2)), flip);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
  } else {  // q4_0: 128-bit lanes: block b's low nibbles, its high ones, then block b + 1's
    const __m256i lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2)));
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    constexpr __mmask32 odd_lanes = 0xff00ff00u;  // the 16-bit lanes of 128-bit lanes 1 and 3
    if (!both) {
      const __m256i v = _mm256_mask_srli_epi16(lo, static_cast<__mmask16>(0xff00), lo, 4);
      return _mm512_zextsi256_si512(_mm256_and_si256(v, _mm256_set1_epi8(0x0f)));
    }
    const __m256i hi = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + ggml::q4_0_bytes + 2)));
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    return _mm512_and_si512(_mm512_mask_srli_epi16(v, odd_lanes, v, 4), low4);
  }
}

template <wtype T, int R, int C>
void b32_kernel(const q8_rows& x, int64_t r0, const uint8_t* w, size_t rb, float* y, int64_t ldy) {
  constexpr int64_t bb = T == wtype::q8_0 ? ggml::q8_0_bytes : ggml::q4_0_bytes;
  constexpr short offset = T == wtype::q8_0 ? 128 : 8;
  const int64_t nb = x.n_in / 32;
  const __m512i gather_at = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                               _mm512_set1_epi32(static_cast<int>(bb)));
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t g = 0; g < nb; g += 16) {
    const int ng = static_cast<int>(std::min<int64_t>(16, nb - g));
    const __mmask16 gm = static_cast<__mmask16>((1u << ng) - 1u);
    __m512 ws[C];
    for (int c = 0; c < C; ++c) {
      const __m512i h = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), gm, gather_at, w + c * rb + g * bb, 1);
      ws[c] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
    }
    __m512 sx[R][C];
    __m512i corr[R];
    for (int r = 0; r < R; ++r) {
      const int64_t row = r0 + r;
      const __m512 dx = _mm512_maskz_loadu_ps(gm, x.d + row * nb + g);
      for (int c = 0; c < C; ++c) sx[r][c] = _mm512_mul_ps(ws[c], dx);
      const __m512i s16 = _mm512_maskz_loadu_epi32(gm, x.sum16 + row * (x.n_in / 16) + 2 * g);  // pairs of sums of 16
      corr[r] = _mm512_madd_epi16(s16, _mm512_set1_epi16(static_cast<short>(-offset)));
    }
    for (int p = 0; 2 * p < ng; ++p) {
      const bool both = 2 * p + 1 < ng;
      const int64_t b = g + 2 * p;
      const __m512i lanes = _mm512_load_si512(pair_lanes[p]);
      __m512i u[C];
      for (int c = 0; c < C; ++c) {
        const uint8_t* blk = w + c * rb + b * bb;
        // The next tile's rows follow these: fetch them in step (a line per row per pair).
        _mm_prefetch(reinterpret_cast<const char*>(blk + C * rb), _MM_HINT_T0);
        u[c] = b32_pair<T>(blk, both);
      }
      for (int r = 0; r < R; ++r) {
        const __m512i xv = _mm512_load_si512(x.q + (r0 + r) * x.ldq + 32 * b);
        const __m512i init = _mm512_maskz_permutexvar_epi32(0x0101, lanes, corr[r]);
        for (int c = 0; c < C; ++c) {
          const __m512i isum = _mm512_dpbusd_epi32(init, u[c], xv);
          acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_permutexvar_ps(lanes, sx[r][c]), acc[r][c]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) y[r * ldy + c] = hsum(acc[r][c]);
}

template <wtype T, int C>
inline void rows_dispatch(int64_t nr, const q8_rows& x, int64_t r0, const uint8_t* w, size_t rb, float* y,
                          int64_t ldy) {
  switch (nr) {
    case 1: b32_kernel<T, 1, C>(x, r0, w, rb, y, ldy); break;
    case 2: b32_kernel<T, 2, C>(x, r0, w, rb, y, ldy); break;
    case 3: b32_kernel<T, 3, C>(x, r0, w, rb, y, ldy); break;
    default: b32_kernel<T, 4, C>(x, r0, w, rb, y, ldy); break;
  }
}

template <wtype T>
void tile(const q8_rows& x, const weight_matrix& w, int64_t c0, int64_t c1, float* y, int64_t ldy) {
  if constexpr (T == wtype::q4_k || T == wtype::q5_k) {
    static const k_consts kc;
    kd_tile<T>(x, w, c0, c1, y, ldy, kc);
  } else if constexpr (T == wtype::q6_k) {
    k6d_tile(x, w, c0, c1, y, ldy);
  } else {
    const auto* base = static_cast<const uint8_t*>(w.data);
    const size_t rb = w.row_bytes();
    // One or two rows (decode): four weight rows at a time, for more independent FMA chains (2.5x
    // faster than two, measured); otherwise two, so that the accumulators fit the registers.
    constexpr int64_t max_rows = 4;
    const int64_t cols = x.n_rows <= 2 ? 4 : 2;
    for (int64_t c = c0; c < c1; c += cols) {
      const int64_t nc = std::min(cols, c1 - c);
      for (int64_t r = 0; r < x.n_rows; r += max_rows) {
        const int64_t nr = std::min(max_rows, x.n_rows - r);
        float* yr = y + r * ldy + c;
        if (nc == 4) {
          if (nr == 1) b32_kernel<T, 1, 4>(x, r, base + c * rb, rb, yr, ldy);
          else b32_kernel<T, 2, 4>(x, r, base + c * rb, rb, yr, ldy);
        } else if (nc >= 2) {
          rows_dispatch<T, 2>(nr, x, r, base + c * rb, rb, yr, ldy);
          if (nc == 3) rows_dispatch<T, 1>(nr, x, r, base + (c + 2) * rb, rb, yr + 2, ldy);
        } else {
          rows_dispatch<T, 1>(nr, x, r, base + c * rb, rb, yr, ldy);
        }
      }
    }
  }
}

// Many rows of activations against q8_0 weights: an outer-product int8 GEMM. Per 32 weight rows
// (two strips of 16 output columns) and 8 blocks along k, the weights are transposed into a panel
// of 4-byte groups (vpdpbusd's layout: lane j of a vector holds 4 consecutive values of column j),
// offset to unsigned (w + 128), with the blocks' scales as 16 f32 lanes per strip. Per block, each
// activation row then runs 8 vpdpbusd per strip from a broadcast 4-byte group, starting from its
// offset correction (-128 x the block's activation sum, broadcast: exact in int32), and one FMA
// with the column scales times its own scale: 8 dot-product instructions per 3 others, where the
// inner-product kernel above needs 3 others per one.
constexpr int64_t q8g_strips = 2;                 // strips of 16 weight rows per panel
constexpr int64_t q8g_blocks = 8;                 // blocks of 32 along k per panel
constexpr int q8g_mr = 6;                         // activation rows per tile

// The end of every GEMM tile: acc[r][s] to y's row r, columns 16s .. 16s + 15 (the last of the
// nvec strips masked by last_mask), stored on the first panel along k, added to y after it.
template <int MR>
inline void store_tile(const __m512 (&acc)[MR][q8g_strips], float* y, int64_t ldy, int nvec, __mmask16 last_mask,
                       bool first) {
  for (int r = 0; r < MR; ++r)
    for (int s = 0; s < nvec; ++s) {
      float* yp = y + r * ldy + 16 * s;
      const __mmask16 m = s == nvec - 1 ? last_mask : __mmask16(0xffff);
      const __m512 v = first ? acc[r][s] : _mm512_add_ps(_mm512_maskz_loadu_ps(m, yp), acc[r][s]);
      _mm512_mask_storeu_ps(yp, m, v);
    }
}

struct q8g_panel {
  alignas(64) int32_t q[q8g_strips][q8g_blocks * 8][16];  // 4-byte groups, unsigned
  alignas(64) float d[q8g_strips][q8g_blocks][16];        // the blocks' scales per column
};

// Blocks b0 .. b0 + nbk of weight rows `row` .. (nr of them; the others zero) into strip s.
void q8g_pack(const uint8_t* row, size_t rb, int64_t nr, int64_t b0, int64_t nbk, q8g_panel& p, int s) {
  constexpr int64_t bb = ggml::q8_0_bytes;
  const __m512i flip = _mm512_set1_epi8(-128);
  const __mmask16 rm = nr >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << nr) - 1u);
  const __m512i at = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                        _mm512_set1_epi32(static_cast<int>(rb)));
  for (int64_t i = 0; i < nr; ++i)  // the next panel's blocks of these rows, meanwhile
    for (int64_t l = 0; l < nbk * bb; l += 64)
      _mm_prefetch(reinterpret_cast<const char*>(row + i * rb + (b0 + nbk) * bb + l), _MM_HINT_T0);
  for (int64_t b = 0; b < nbk; b += 2) {
    const bool both = b + 1 < nbk;
    __m512i r[16];
    for (int i = 0; i < 16; ++i) {
      if (i >= nr) {
        r[i] = _mm512_setzero_si512();
        continue;
      }
      const uint8_t* blk = row + i * rb + (b0 + b) * bb;
      const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
      r[i] = both ? _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + bb + 2)), 1)
                  : _mm512_zextsi256_si512(lo);
    }
    transpose16(r);
    for (int g = 0; g < (both ? 16 : 8); ++g) _mm512_store_si512(p.q[s][b * 8 + g], _mm512_xor_si512(r[g], flip));
    for (int64_t e = b; e < b + (both ? 2 : 1); ++e) {
      const __m512i h = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rm, at, row + (b0 + e) * bb, 1);
      _mm512_store_ps(p.d[s][e], _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h)));
    }
  }
}

// corr: the rows' -128 x block sums, [row][block].
template <int MR>
void q8g_tile(const q8_rows& x, int64_t r0, const int32_t* corr, int64_t b0, int64_t nbk, const q8g_panel& p,
              float* y, int64_t ldy, int nvec, __mmask16 last_mask, bool first) {
  const int64_t nb = x.n_in / 32;
  __m512 acc[MR][q8g_strips];
  for (int r = 0; r < MR; ++r)
    for (int s = 0; s < q8g_strips; ++s) acc[r][s] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nbk; ++b) {
    __m512i t[MR][q8g_strips];
    for (int r = 0; r < MR; ++r) {
      const __m512i c = _mm512_set1_epi32(corr[(r0 + r) * nb + b0 + b]);
      for (int s = 0; s < q8g_strips; ++s) t[r][s] = c;
    }
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const __m512i w0 = _mm512_load_si512(p.q[0][b * 8 + g]), w1 = _mm512_load_si512(p.q[1][b * 8 + g]);
      for (int r = 0; r < MR; ++r) {
        int32_t xg;
        std::memcpy(&xg, x.q + (r0 + r) * x.ldq + 32 * (b0 + b) + 4 * g, 4);
        const __m512i xb = _mm512_set1_epi32(xg);
        t[r][0] = _mm512_dpbusd_epi32(t[r][0], w0, xb);
        t[r][1] = _mm512_dpbusd_epi32(t[r][1], w1, xb);
      }
    }
    for (int r = 0; r < MR; ++r) {
      const __m512 dx = _mm512_set1_ps(x.d[(r0 + r) * nb + b0 + b]);
      for (int s = 0; s < q8g_strips; ++s)
        acc[r][s] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t[r][s]), _mm512_mul_ps(_mm512_load_ps(p.d[s][b]), dx), acc[r][s]);
    }
  }
  store_tile<MR>(acc, y, ldy, nvec, last_mask, first);
}

// Many rows against q4_K / q5_K weights: the same outer-product GEMM, one K block (256 values)
// per panel. The weights' values are unsigned already (0-15, 0-31): no offset. Per sub-block of
// 32, each activation row runs 8 vpdpbusd per strip from zero, then one FMA with the columns'
// d x scale times its own scale, and one with the columns' dmin x min times its own
// -scale x sub-block sum (the mins' term, exact sums in int32 before the f32 product).
struct kg_panel {
  alignas(64) int32_t q[q8g_strips][64][16];  // 4-byte groups of the block's 256 values
  alignas(64) float ds[q8g_strips][8][16];    // d x scale of sub-block j, per column
  alignas(64) float dm[q8g_strips][8][16];    // dmin x min of sub-block j, per column
};

template <wtype T>
void kg_pack(const uint8_t* row, size_t rb, int64_t nr, int64_t b, kg_panel& p, int s) {
  constexpr size_t bb = kbytes<T>();
  for (int i = 0; i < nr; ++i)  // the next block of these rows, meanwhile
    for (size_t l = 0; l < bb; l += 64) _mm_prefetch(reinterpret_cast<const char*>(row + i * rb + (b + 1) * bb + l), _MM_HINT_T0);
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 8; ++j) {
      float ds = 0, dm = 0;
      if (i < nr) {
        const uint8_t* blk = row + i * rb + b * bb;
        int sc, m;
        ggml::scale_min_k4(j, blk + 4, sc, m);
        ds = f16(blk) * static_cast<float>(sc);
        dm = f16(blk + 2) * static_cast<float>(m);
      }
      p.ds[s][j][i] = ds;
      p.dm[s][j][i] = dm;
    }
  }
  for (int j = 0; j < 4; ++j) {
    __m512i r[16];
    for (int i = 0; i < 16; ++i) {
      if (i >= nr) {
        r[i] = _mm512_setzero_si512();
        continue;
      }
      const uint8_t* blk = row + i * rb + b * bb;
      __m512i qh = _mm512_setzero_si512();
      if constexpr (T == wtype::q5_k)
        qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 16)));
      r[i] = k_chunk<T>(blk, j, qh);
    }
    transpose16(r);
    for (int g = 0; g < 16; ++g) _mm512_store_si512(p.q[s][16 * j + g], r[g]);
  }
}

// xm: the rows' -scale x sub-block sums, [row][sub-block of 32].
template <int MR>
void kg_tile(const q8_rows& x, int64_t r0, const float* xm, int64_t b, const kg_panel& p, float* y, int64_t ldy,
             int nvec, __mmask16 last_mask, bool first) {
  const int64_t nb = x.n_in / ggml::qk_k;
  __m512 acc[MR][q8g_strips];
  for (int r = 0; r < MR; ++r)
    for (int s = 0; s < q8g_strips; ++s) acc[r][s] = _mm512_setzero_ps();
  for (int j = 0; j < 8; ++j) {
    __m512i t[MR][q8g_strips];
    for (int r = 0; r < MR; ++r)
      for (int s = 0; s < q8g_strips; ++s) t[r][s] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const __m512i w0 = _mm512_load_si512(p.q[0][8 * j + g]), w1 = _mm512_load_si512(p.q[1][8 * j + g]);
      for (int r = 0; r < MR; ++r) {
        int32_t xg;
        std::memcpy(&xg, x.q + (r0 + r) * x.ldq + ggml::qk_k * b + 32 * j + 4 * g, 4);
        const __m512i xb = _mm512_set1_epi32(xg);
        t[r][0] = _mm512_dpbusd_epi32(t[r][0], w0, xb);
        t[r][1] = _mm512_dpbusd_epi32(t[r][1], w1, xb);
      }
    }
    for (int r = 0; r < MR; ++r) {
      const __m512 dx = _mm512_set1_ps(x.d[(r0 + r) * nb + b]);
      const __m512 mx = _mm512_set1_ps(xm[(r0 + r) * (x.n_in / 32) + 8 * b + j]);
      for (int s = 0; s < q8g_strips; ++s) {
        acc[r][s] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t[r][s]), _mm512_mul_ps(_mm512_load_ps(p.ds[s][j]), dx), acc[r][s]);
        acc[r][s] = _mm512_fmadd_ps(_mm512_load_ps(p.dm[s][j]), mx, acc[r][s]);
      }
    }
  }
  store_tile<MR>(acc, y, ldy, nvec, last_mask, first);
}

// q6_K: values 0-63 (before the -32 offset, corrected per 16 values from the activations' sums
// of 16, exact in int32) and a signed scale per 16 values: per 16 values, 4 vpdpbusd per strip
// and one FMA with the columns' d x scale times the row's scale.
struct k6_panel {
  alignas(64) int32_t q[q8g_strips][64][16];
  alignas(64) float ds[q8g_strips][16][16];  // d x scale of 16-value group g, per column
};

void k6_pack(const uint8_t* row, size_t rb, int64_t nr, int64_t b, k6_panel& p, int s) {
  constexpr size_t bb = ggml::q6_k_bytes;
  for (int i = 0; i < nr; ++i)  // the next block of these rows, meanwhile
    for (size_t l = 0; l < bb; l += 64) _mm_prefetch(reinterpret_cast<const char*>(row + i * rb + (b + 1) * bb + l), _MM_HINT_T0);
  for (int i = 0; i < 16; ++i) {
    const uint8_t* blk = row + i * rb + b * bb;
    const float d = i < nr ? f16(blk + 208) : 0.0f;
    for (int g = 0; g < 16; ++g) p.ds[s][g][i] = i < nr ? d * static_cast<float>(static_cast<int8_t>(blk[192 + g])) : 0.0f;
  }
  __m512i qh[16];
  for (int j = 0; j < 4; ++j) {
    __m512i r[16];
    for (int i = 0; i < 16; ++i) {
      if (i >= nr) {
        r[i] = _mm512_setzero_si512();
        continue;
      }
      const uint8_t* blk = row + i * rb + b * bb;
      if ((j & 1) == 0)
        qh[i] = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 128 + 32 * (j / 2))));
      r[i] = k_chunk<wtype::q6_k>(blk, j, qh[i]);
    }
    transpose16(r);
    for (int g = 0; g < 16; ++g) _mm512_store_si512(p.q[s][16 * j + g], r[g]);
  }
}

template <int MR>
void k6_tile(const q8_rows& x, int64_t r0, int64_t b, const k6_panel& p, float* y, int64_t ldy, int nvec,
             __mmask16 last_mask, bool first) {
  const int64_t nb = x.n_in / ggml::qk_k;
  __m512 acc[MR][q8g_strips];
  for (int r = 0; r < MR; ++r)
    for (int s = 0; s < q8g_strips; ++s) acc[r][s] = _mm512_setzero_ps();
  for (int g = 0; g < 16; ++g) {
    __m512i t[MR][q8g_strips];
    for (int r = 0; r < MR; ++r) {
      const __m512i c = _mm512_set1_epi32(-32 * x.sum16[(r0 + r) * (x.n_in / 16) + 16 * b + g]);
      for (int s = 0; s < q8g_strips; ++s) t[r][s] = c;
    }
#pragma GCC unroll 4
    for (int e = 0; e < 4; ++e) {
      const __m512i w0 = _mm512_load_si512(p.q[0][4 * g + e]), w1 = _mm512_load_si512(p.q[1][4 * g + e]);
      for (int r = 0; r < MR; ++r) {
        int32_t xg;
        std::memcpy(&xg, x.q + (r0 + r) * x.ldq + ggml::qk_k * b + 16 * g + 4 * e, 4);
        const __m512i xb = _mm512_set1_epi32(xg);
        t[r][0] = _mm512_dpbusd_epi32(t[r][0], w0, xb);
        t[r][1] = _mm512_dpbusd_epi32(t[r][1], w1, xb);
      }
    }
    for (int r = 0; r < MR; ++r) {
      const __m512 dx = _mm512_set1_ps(x.d[(r0 + r) * nb + b]);
      for (int s = 0; s < q8g_strips; ++s)
        acc[r][s] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t[r][s]), _mm512_mul_ps(_mm512_load_ps(p.ds[s][g]), dx), acc[r][s]);
    }
  }
  store_tile<MR>(acc, y, ldy, nvec, last_mask, first);
}

void k6_gemm(const q8_rows& x, const weight_matrix& w, int64_t c0, int64_t c1, float* y, int64_t ldy) {
  static thread_local k6_panel panel;
  const int64_t nb = x.n_in / ggml::qk_k;
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  constexpr int64_t cols = 16 * q8g_strips;
  for (int64_t c = c0; c < c1; c += cols) {
    const int64_t nc = std::min(cols, c1 - c);
    const int nvec = static_cast<int>((nc + 15) / 16);
    const __mmask16 last_mask = nc % 16 ? static_cast<__mmask16>((1u << (nc % 16)) - 1u) : __mmask16(0xffff);
    for (int64_t b = 0; b < nb; ++b) {
      for (int s = 0; s < q8g_strips; ++s)
        k6_pack(base + (c + 16 * s) * rb, rb, std::max<int64_t>(0, std::min<int64_t>(16, nc - 16 * s)), b, panel, s);
      const bool first = b == 0;
      for (int64_t r = 0; r < x.n_rows; r += q8g_mr) {
        float* yr = y + r * ldy + c;
        switch (std::min<int64_t>(q8g_mr, x.n_rows - r)) {
          case 1: k6_tile<1>(x, r, b, panel, yr, ldy, nvec, last_mask, first); break;
          case 2: k6_tile<2>(x, r, b, panel, yr, ldy, nvec, last_mask, first); break;
          case 3: k6_tile<3>(x, r, b, panel, yr, ldy, nvec, last_mask, first); break;
          case 4: k6_tile<4>(x, r, b, panel, yr, ldy, nvec, last_mask, first); break;
          case 5: k6_tile<5>(x, r, b, panel, yr, ldy, nvec, last_mask, first); break;
          default: k6_tile<6>(x, r, b, panel, yr, ldy, nvec, last_mask, first); break;
        }
      }
    }
  }
}

template <wtype T>
void k_gemm(const q8_rows& x, const weight_matrix& w, int64_t c0, int64_t c1, float* y, int64_t ldy) {
  static thread_local kg_panel panel;
  static thread_local std::vector<float> xm;
  const int64_t nb = x.n_in / ggml::qk_k, ns = x.n_in / 32;
  xm.resize(static_cast<size_t>(x.n_rows * ns));
  for (int64_t r = 0; r < x.n_rows; ++r)
    for (int64_t j = 0; j < ns; ++j)
      xm[static_cast<size_t>(r * ns + j)] =
          -x.d[r * nb + j / 8] *
          static_cast<float>(x.sum16[r * (x.n_in / 16) + 2 * j] + x.sum16[r * (x.n_in / 16) + 2 * j + 1]);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  constexpr int64_t cols = 16 * q8g_strips;
  for (int64_t c = c0; c < c1; c += cols) {
    const int64_t nc = std::min(cols, c1 - c);
    const int nvec = static_cast<int>((nc + 15) / 16);
    const __mmask16 last_mask = nc % 16 ? static_cast<__mmask16>((1u << (nc % 16)) - 1u) : __mmask16(0xffff);
    for (int64_t b = 0; b < nb; ++b) {
      for (int s = 0; s < q8g_strips; ++s)
        kg_pack<T>(base + (c + 16 * s) * rb, rb, std::max<int64_t>(0, std::min<int64_t>(16, nc - 16 * s)), b, panel, s);
      const bool first = b == 0;
      for (int64_t r = 0; r < x.n_rows; r += q8g_mr) {
        float* yr = y + r * ldy + c;
        switch (std::min<int64_t>(q8g_mr, x.n_rows - r)) {
          case 1: kg_tile<1>(x, r, xm.data(), b, panel, yr, ldy, nvec, last_mask, first); break;
          case 2: kg_tile<2>(x, r, xm.data(), b, panel, yr, ldy, nvec, last_mask, first); break;
          case 3: kg_tile<3>(x, r, xm.data(), b, panel, yr, ldy, nvec, last_mask, first); break;
          case 4: kg_tile<4>(x, r, xm.data(), b, panel, yr, ldy, nvec, last_mask, first); break;
          case 5: kg_tile<5>(x, r, xm.data(), b, panel, yr, ldy, nvec, last_mask, first); break;
          default: kg_tile<6>(x, r, xm.data(), b, panel, yr, ldy, nvec, last_mask, first); break;
        }
      }
    }
  }
}

}  // namespace

void q8_tile_avx512vnni(const q8_rows& x, const weight_matrix& w, int64_t c0, int64_t c1, float* y, int64_t ldy) {
  switch (w.type) {
    case wtype::q8_0: tile<wtype::q8_0>(x, w, c0, c1, y, ldy); break;
    case wtype::q4_0: tile<wtype::q4_0>(x, w, c0, c1, y, ldy); break;
    case wtype::q4_k: tile<wtype::q4_k>(x, w, c0, c1, y, ldy); break;
    case wtype::q5_k: tile<wtype::q5_k>(x, w, c0, c1, y, ldy); break;
    case wtype::q6_k: tile<wtype::q6_k>(x, w, c0, c1, y, ldy); break;
    default: q8_tile_generic(x, w, c0, c1, y, ldy); break;
  }
}

void q8_gemm_avx512vnni(const q8_rows& x, const weight_matrix& w, int64_t c0, int64_t c1, float* y, int64_t ldy) {
  if (w.type == wtype::q4_k) return k_gemm<wtype::q4_k>(x, w, c0, c1, y, ldy);
  if (w.type == wtype::q5_k) return k_gemm<wtype::q5_k>(x, w, c0, c1, y, ldy);
  if (w.type == wtype::q6_k) return k6_gemm(x, w, c0, c1, y, ldy);
  if (w.type != wtype::q8_0) return q8_tile_avx512vnni(x, w, c0, c1, y, ldy);
  static thread_local q8g_panel panel;
  static thread_local std::vector<int32_t> corr;
  const int64_t nb = x.n_in / 32;
  corr.resize(static_cast<size_t>(x.n_rows * nb));
  for (int64_t r = 0; r < x.n_rows; ++r)
    for (int64_t b = 0; b < nb; ++b)
      corr[static_cast<size_t>(r * nb + b)] =
          -128 * (x.sum16[r * (x.n_in / 16) + 2 * b] + x.sum16[r * (x.n_in / 16) + 2 * b + 1]);
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  constexpr int64_t cols = 16 * q8g_strips;
  for (int64_t c = c0; c < c1; c += cols) {
    const int64_t nc = std::min(cols, c1 - c);
    const int nvec = static_cast<int>((nc + 15) / 16);
    const __mmask16 last_mask = nc % 16 ? static_cast<__mmask16>((1u << (nc % 16)) - 1u) : __mmask16(0xffff);
    for (int64_t b0 = 0; b0 < nb; b0 += q8g_blocks) {
      const int64_t nbk = std::min(q8g_blocks, nb - b0);
      for (int s = 0; s < q8g_strips; ++s)
        q8g_pack(base + (c + 16 * s) * rb, rb, std::max<int64_t>(0, std::min<int64_t>(16, nc - 16 * s)), b0, nbk, panel, s);
      const bool first = b0 == 0;
      for (int64_t r = 0; r < x.n_rows; r += q8g_mr) {
        float* yr = y + r * ldy + c;
        switch (std::min<int64_t>(q8g_mr, x.n_rows - r)) {
          case 1: q8g_tile<1>(x, r, corr.data(), b0, nbk, panel, yr, ldy, nvec, last_mask, first); break;
          case 2: q8g_tile<2>(x, r, corr.data(), b0, nbk, panel, yr, ldy, nvec, last_mask, first); break;
          case 3: q8g_tile<3>(x, r, corr.data(), b0, nbk, panel, yr, ldy, nvec, last_mask, first); break;
          case 4: q8g_tile<4>(x, r, corr.data(), b0, nbk, panel, yr, ldy, nvec, last_mask, first); break;
          case 5: q8g_tile<5>(x, r, corr.data(), b0, nbk, panel, yr, ldy, nvec, last_mask, first); break;
          default: q8g_tile<6>(x, r, corr.data(), b0, nbk, panel, yr, ldy, nvec, last_mask, first); break;
        }
      }
    }
  }
}

}  // namespace troupe::cpu::detail
