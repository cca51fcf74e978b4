// avx512_util: small helpers shared by the AVX-512 kernel files (each compiled with AVX-512 flags;
// include it from those only).
#pragma once

#include <immintrin.h>

namespace troupe::cpu::detail {

// Horizontal sum in a fixed order. (GCC 12's _mm512_reduce_add_ps trips -Wuninitialized.)
inline float hsum512(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// A 16 x 16 transpose of dwords: r[i] holds dwords 0-15 of weight row i; afterwards r[p] holds
// dword p of rows 0-15 (bf16 pairs for the bf16 GEMM, groups of 4 int8 for the int8 one).
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // r[4q + m] now holds, in 128-bit lane L, pair 4L + m of rows 4q..4q+3: gather each pair's
  // lanes of the four row groups.
  for (int m = 0; m < 4; ++m) {
    const __m512i a = _mm512_shuffle_i32x4(r[m], r[4 + m], 0x88);  // lanes 0, 2 of each
    const __m512i b = _mm512_shuffle_i32x4(r[m], r[4 + m], 0xdd);  // lanes 1, 3
    const __m512i c = _mm512_shuffle_i32x4(r[8 + m], r[12 + m], 0x88);
    const __m512i d = _mm512_shuffle_i32x4(r[8 + m], r[12 + m], 0xdd);
    t[m] = _mm512_shuffle_i32x4(a, c, 0x88);       // pair m of rows 0-15
    t[8 + m] = _mm512_shuffle_i32x4(a, c, 0xdd);   // pair 8 + m
    t[4 + m] = _mm512_shuffle_i32x4(b, d, 0x88);   // pair 4 + m
    t[12 + m] = _mm512_shuffle_i32x4(b, d, 0xdd);  // pair 12 + m
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}

}  // namespace troupe::cpu::detail
