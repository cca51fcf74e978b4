// ggml_blocks: GGML's quantized block layouts (ggml-common.h), as troupe reads them in place
// from GGUF files, and their scalar dequantization (the definition every kernel is tested against).
//
//   q8_0  f16 d; int8 qs[32]                                  34 bytes per 32 values: d * qs[j]
//   q4_0  f16 d; uint8 qs[16]                                 18 bytes per 32 values:
//         value j = d * ((qs[j] & 15) - 8), value j + 16 = d * ((qs[j] >> 4) - 8)
//   q4_K  f16 d, dmin; uint8 scales[12]; uint8 qs[128]        144 bytes per 256 values:
//         8 sub-blocks of 32 with 6-bit scale sc and min m (scale_min_k4); sub-block 2i uses the
//         low nibbles of qs[32i..32i+31], 2i+1 the high ones: value = d*sc*q - dmin*m
//   q5_K  f16 d, dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128]   176 bytes per 256:
//         as q4_K with a fifth bit: sub-block s, value l takes bit s of qh[l] as bit 4 of q
//   q6_K  uint8 ql[128]; uint8 qh[64]; int8 scales[16]; f16 d   210 bytes per 256 values:
//         two halves of 128; in half h, value 32c + l (c < 4, l < 32) is
//         q = ((ql[64h + l + 32(c&1)] >> 4(c>>1)) & 15) | ((qh[32h + l] >> 2c) & 3) << 4,
//         value = d * scales[8h + 2c + l/16] * (q - 32)
#pragma once

#include <cstdint>
#include <cstring>

#include "runtime/half.hpp"

namespace troupe::cpu::ggml {

constexpr int64_t qk_k = 256;
constexpr size_t q8_0_bytes = 34, q4_0_bytes = 18, q4_k_bytes = 144, q5_k_bytes = 176, q6_k_bytes = 210;

inline float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// Scale and min of sub-block j (0..7) from a K block's 12 packed bytes (ggml's get_scale_min_k4).
inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// The integer value (before scales) of element i (0..255) of a K block, and of a 32-block.
inline int q4_k_value(const uint8_t* blk, int i) {
  const uint8_t* qs = blk + 16;
  return (qs[32 * (i / 64) + i % 32] >> (4 * ((i / 32) & 1))) & 15;
}
inline int q5_k_value(const uint8_t* blk, int i) {
  const uint8_t* qh = blk + 16;
  const uint8_t* qs = blk + 48;
  const int lo = (qs[32 * (i / 64) + i % 32] >> (4 * ((i / 32) & 1))) & 15;
  return lo | (((qh[i % 32] >> (i / 32)) & 1) << 4);
}
inline int q6_k_value(const uint8_t* blk, int i) {  // 0..63, before the -32 offset
  const uint8_t* ql = blk;
  const uint8_t* qh = blk + 128;
  const int h = i / 128, c = (i % 128) / 32, l = i % 32;
  const int lo = (ql[64 * h + l + 32 * (c & 1)] >> (4 * (c >> 1))) & 15;
  return lo | (((qh[32 * h + l] >> (2 * c)) & 3) << 4);
}
inline int q6_k_scale(const uint8_t* blk, int i) { return static_cast<int8_t>(blk[192 + i / 16]); }
inline int q4_0_value(const uint8_t* blk, int i) {  // 0..15, before the -8 offset
  return (blk[2 + i % 16] >> (4 * (i / 16))) & 15;
}

// n values (a multiple of the block) of one row of blocks, dequantized.
inline void dequantize_q8_0(const uint8_t* row, int64_t n, float* out) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* blk = row + b * q8_0_bytes;
    const float d = f16_at(blk);
    for (int j = 0; j < 32; ++j) out[b * 32 + j] = d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
  }
}
inline void dequantize_q4_0(const uint8_t* row, int64_t n, float* out) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const uint8_t* blk = row + b * q4_0_bytes;
    const float d = f16_at(blk);
    for (int j = 0; j < 32; ++j) out[b * 32 + j] = d * static_cast<float>(q4_0_value(blk, j) - 8);
  }
}
// q4_K and q5_K: the same scales and mins, values of 4 or 5 bits.
template <size_t BlockBytes, int (*Value)(const uint8_t*, int)>
inline void dequantize_k45(const uint8_t* row, int64_t n, float* out) {
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const uint8_t* blk = row + b * BlockBytes;
    const float d = f16_at(blk), dmin = f16_at(blk + 2);
    for (int j = 0; j < 8; ++j) {
      int sc, m;
      scale_min_k4(j, blk + 4, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) out[b * qk_k + 32 * j + l] = d1 * static_cast<float>(Value(blk, 32 * j + l)) - m1;
    }
  }
}
inline void dequantize_q4_k(const uint8_t* row, int64_t n, float* out) {
  dequantize_k45<q4_k_bytes, q4_k_value>(row, n, out);
}
inline void dequantize_q5_k(const uint8_t* row, int64_t n, float* out) {
  dequantize_k45<q5_k_bytes, q5_k_value>(row, n, out);
}
inline void dequantize_q6_k(const uint8_t* row, int64_t n, float* out) {
  for (int64_t b = 0; b < n / qk_k; ++b) {
    const uint8_t* blk = row + b * q6_k_bytes;
    const float d = f16_at(blk + 208);
    for (int i = 0; i < qk_k; ++i)
      out[b * qk_k + i] = d * static_cast<float>(q6_k_scale(blk, i)) * static_cast<float>(q6_k_value(blk, i) - 32);
  }
}

}  // namespace troupe::cpu::ggml
