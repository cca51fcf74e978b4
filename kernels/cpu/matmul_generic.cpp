// Portable matmul kernels (no vector extensions assumed): the reference the vector kernels
// are tested against, and the fallback on CPUs without AVX2 (or without AVX512-VNNI for the
// integer kernels).
#include <cstring>
#include <vector>

#include "kernels/cpu/ggml_blocks.hpp"
#include "kernels/cpu/matmul.hpp"
#include "runtime/half.hpp"

namespace troupe::cpu::detail {

void dequant_generic(const weight_matrix& w, int64_t r0, int64_t r1, float* out) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = base + static_cast<size_t>(r) * rb;
    float* o = out + (r - r0) * w.n_in;
    switch (w.type) {
      case wtype::f32: std::memcpy(o, row, rb); break;
      case wtype::f16:
        for (int64_t i = 0; i < w.n_in; ++i) {
          uint16_t h;
          std::memcpy(&h, row + 2 * i, 2);
          o[i] = fp16_to_f32(h);
        }
        break;
      case wtype::bf16:
        for (int64_t i = 0; i < w.n_in; ++i) {
          uint16_t h;
          std::memcpy(&h, row + 2 * i, 2);
          o[i] = bf16_to_f32(h);
        }
        break;
      case wtype::q8_0: ggml::dequantize_q8_0(row, w.n_in, o); break;
      case wtype::q4_0: ggml::dequantize_q4_0(row, w.n_in, o); break;
      case wtype::q4_k: ggml::dequantize_q4_k(row, w.n_in, o); break;
      case wtype::q5_k: ggml::dequantize_q5_k(row, w.n_in, o); break;
      case wtype::q6_k: ggml::dequantize_q6_k(row, w.n_in, o); break;
    }
  }
}

void tile_generic(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0,
                  int64_t c1, float* y, int64_t ldy) {
  std::vector<float> row(static_cast<size_t>(w.n_in));
  for (int64_t c = c0; c < c1; ++c) {
    dequant_generic(w, c, c + 1, row.data());
    for (int64_t r = 0; r < n_rows; ++r) {
      const float* xr = x + r * ldx;
      float s = 0;
      for (int64_t i = 0; i < w.n_in; ++i) s += xr[i] * row[static_cast<size_t>(i)];
      y[r * ldy + c] = s;
    }
  }
}

namespace {

// The integer dot products of one weight row with one row of quantized activations, written
// from the block definitions (ggml_blocks.hpp): integer sums per (sub-)block, then f32 scales.
float dot_q8(const uint8_t* wr, wtype t, const q8_rows& x, int64_t r) {
  const int8_t* q = x.q + r * x.ldq;
  const float* d = x.d + r * (x.n_in / x.block);
  const int16_t* s16 = x.sum16 + r * (x.n_in / 16);
  float total = 0;
  switch (t) {
    case wtype::q8_0:
    case wtype::q4_0:
      for (int64_t b = 0; b < x.n_in / 32; ++b) {
        int32_t s = 0;
        if (t == wtype::q8_0) {
          const uint8_t* blk = wr + b * ggml::q8_0_bytes;
          for (int j = 0; j < 32; ++j) s += static_cast<int8_t>(blk[2 + j]) * q[32 * b + j];
          total += ggml::f16_at(blk) * d[b] * static_cast<float>(s);
        } else {
          const uint8_t* blk = wr + b * ggml::q4_0_bytes;
          for (int j = 0; j < 32; ++j) s += ggml::q4_0_value(blk, j) * q[32 * b + j];
          s -= 8 * (s16[2 * b] + s16[2 * b + 1]);
          total += ggml::f16_at(blk) * d[b] * static_cast<float>(s);
        }
      }
      break;
    case wtype::q4_k:
    case wtype::q5_k:
      for (int64_t b = 0; b < x.n_in / ggml::qk_k; ++b) {
        const uint8_t* blk = wr + b * (t == wtype::q4_k ? ggml::q4_k_bytes : ggml::q5_k_bytes);
        const int8_t* qb = q + b * ggml::qk_k;
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 8; ++j) {
          int sc, m;
          ggml::scale_min_k4(j, blk + 4, sc, m);
          int32_t s = 0;
          for (int l = 0; l < 32; ++l) {
            const int i = 32 * j + l;
            s += (t == wtype::q4_k ? ggml::q4_k_value(blk, i) : ggml::q5_k_value(blk, i)) * qb[i];
          }
          sumi += sc * s;
          summ += m * (s16[b * 16 + 2 * j] + s16[b * 16 + 2 * j + 1]);
        }
        total += d[b] * (ggml::f16_at(blk) * static_cast<float>(sumi) - ggml::f16_at(blk + 2) * static_cast<float>(summ));
      }
      break;
    case wtype::q6_k:
      for (int64_t b = 0; b < x.n_in / ggml::qk_k; ++b) {
        const uint8_t* blk = wr + b * ggml::q6_k_bytes;
        const int8_t* qb = q + b * ggml::qk_k;
        int32_t sumi = 0;
        for (int g = 0; g < 16; ++g) {
          int32_t s = 0;
          for (int l = 0; l < 16; ++l) s += ggml::q6_k_value(blk, 16 * g + l) * qb[16 * g + l];
          sumi += ggml::q6_k_scale(blk, 16 * g) * (s - 32 * s16[b * 16 + g]);
        }
        total += d[b] * ggml::f16_at(blk + 208) * static_cast<float>(sumi);
      }
      break;
    default: break;
  }
  return total;
}

}  // namespace

void q8_tile_generic(const q8_rows& x, const weight_matrix& w, int64_t c0, int64_t c1, float* y, int64_t ldy) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  for (int64_t c = c0; c < c1; ++c)
    for (int64_t r = 0; r < x.n_rows; ++r) y[r * ldy + c] = dot_q8(base + static_cast<size_t>(c) * rb, w.type, x, r);
}

}  // namespace troupe::cpu::detail
