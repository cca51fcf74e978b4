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

}  // namespace troupe::cpu::detail
