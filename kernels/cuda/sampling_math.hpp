// sampling_math: the arithmetic that device sampling (sampling.cu) and its host reference
// (sampling_ref.cpp) share, written so that both produce the same bits: Philox4x32-10, the
// order-preserving key of a logit, and each token's weight from explicit round-to-nearest
// operations and fused multiply-adds (nothing left for a compiler to contract or reorder).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define TROUPE_HD __host__ __device__ __forceinline__
#else
#define TROUPE_HD inline
#endif

namespace troupe::cuda {

// What one row of logits is sampled with, as the sampling kernel reads it.
struct sampling_row {
  float temperature = 1.0f;  // > 0 unless greedy
  float top_p = 1.0f;        // (0, 1]; 1: off
  float min_p = 0.0f;        // [0, 1]; 0: off
  int32_t top_k = 0;         // 0: off
  int32_t greedy = 0;        // 1: argmax (temperature 0 or top_k 1)
  uint32_t seed_lo = 0, seed_hi = 0;        // the Philox key
  uint32_t counter_lo = 0, counter_hi = 0;  // tokens this sequence sampled before: the counter
};

struct philox4 {
  uint32_t v[4];
};

// Philox4x32 with 10 rounds (Salmon et al., SC'11), as Random123 and cuRAND define it.
TROUPE_HD philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n1 = static_cast<uint32_t>(p1);
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    const uint32_t n3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
  }
  return philox4{{c0, c1, c2, c3}};
}

// 64 random bits for a row: the key is the seed, the counter the row's token count.
TROUPE_HD uint64_t row_random64(const sampling_row& r) {
  const philox4 o = philox4x32_10(r.counter_lo, r.counter_hi, 0u, 0u, r.seed_lo, r.seed_hi);
  return static_cast<uint64_t>(o.v[0]) << 32 | o.v[1];
}

// The high 64 bits of a * b, from 32-bit halves (no 128-bit type needed).
TROUPE_HD uint64_t mulhi64(uint64_t a, uint64_t b) {
  const uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32, b_lo = b & 0xffffffffu, b_hi = b >> 32;
  const uint64_t lo_lo = a_lo * b_lo, hi_lo = a_hi * b_lo, lo_hi = a_lo * b_hi, hi_hi = a_hi * b_hi;
  const uint64_t cross = (lo_lo >> 32) + (hi_lo & 0xffffffffu) + lo_hi;
  return hi_hi + (hi_lo >> 32) + (cross >> 32);
}

TROUPE_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}

TROUPE_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}

// A key with the order of the floats: a > b exactly when order_key(a) > order_key(b).
TROUPE_HD uint32_t order_key(float x) {
  const uint32_t u = float_bits(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

TROUPE_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
TROUPE_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
TROUPE_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
TROUPE_HD float rint_f(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return std::nearbyint(x);
#endif
}

// exp(x) for x <= 0: Cody-Waite reduction and a degree-6 polynomial (the CPU kernels' exp_neg),
// about 2 ulp, in operations that round the same on every machine.
TROUPE_HD float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float k = rint_f(mul_rn(x, 1.44269504088896341f));
  float r = fma_rn(-k, 0.693359375f, x);
  r = fma_rn(-k, -2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fma_rn(p, r, 1.3981999507e-3f);
  p = fma_rn(p, r, 8.3334519073e-3f);
  p = fma_rn(p, r, 4.1665795894e-2f);
  p = fma_rn(p, r, 1.6666665459e-1f);
  p = fma_rn(p, r, 5.0000001201e-1f);
  p = fma_rn(p, mul_rn(r, r), r);
  p = p + 1.0f;
  return mul_rn(p, bits_float(static_cast<uint32_t>(static_cast<int32_t>(k) + 127) << 23));
}

// A token's weight relative to the most likely one: exp((logit - max) / temperature), in (0, 1].
TROUPE_HD float token_weight(float logit, float max_logit, float inv_temperature) {
  return exp_nonpositive(mul_rn(sub_rn(logit, max_logit), inv_temperature));
}

// Weights summed in fixed point (2^-40 units), so that a sum is the same in any order.
inline constexpr float fixed_one = 1099511627776.0f;  // 2^40
TROUPE_HD uint64_t to_fixed(float weight) {
#if defined(__CUDA_ARCH__)
  return __float2ull_rz(mul_rn(weight, fixed_one));
#else
  return static_cast<uint64_t>(mul_rn(weight, fixed_one));
#endif
}

// The nucleus's share of the mass z, in the same units.
TROUPE_HD uint64_t top_p_target(float top_p, uint64_t z) {
  return static_cast<uint64_t>(static_cast<double>(top_p) * static_cast<double>(z));
}

}  // namespace troupe::cuda
