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

// One weight row unpacked from its blocks (ggml_blocks.hpp): integer values, per-16 integer
// scales and mins, per-block f32 scales; then every activation row is a run of integer dot
// products of 16, scaled in f32.
struct unpacked_row {
  std::vector<int8_t> q;        // [n_in]: q8_0 as stored; the others unsigned (0..63)
  std::vector<int32_t> sc, mn;  // [n_in / 16]: scale and min (K types; q6_K's -32 is a min)
  std::vector<float> d, dmin;   // [n_in / block]
};

void unpack_row(const uint8_t* wr, wtype t, int64_t n, unpacked_row& u) {
  u.q.resize(static_cast<size_t>(n));
  u.sc.assign(static_cast<size_t>(n / 16), 1);
  u.mn.assign(static_cast<size_t>(n / 16), 0);
  const int64_t bv = block_values(t);
  u.d.resize(static_cast<size_t>(n / bv));
  u.dmin.assign(static_cast<size_t>(n / bv), 0.0f);
  for (int64_t b = 0; b < n / bv; ++b) {
    const uint8_t* blk = wr + static_cast<size_t>(b) * block_bytes(t);
    int8_t* q = u.q.data() + b * bv;
    int32_t* sc = u.sc.data() + b * bv / 16;
    int32_t* mn = u.mn.data() + b * bv / 16;
    switch (t) {
      case wtype::q8_0:
        u.d[static_cast<size_t>(b)] = ggml::f16_at(blk);
        for (int i = 0; i < 32; ++i) q[i] = static_cast<int8_t>(blk[2 + i]);
        break;
      case wtype::q4_0:
        u.d[static_cast<size_t>(b)] = ggml::f16_at(blk);
        for (int i = 0; i < 32; ++i) q[i] = static_cast<int8_t>(ggml::q4_0_value(blk, i));
        mn[0] = mn[1] = 8;  // value - 8
        break;
      case wtype::q4_k:
      case wtype::q5_k:
        u.d[static_cast<size_t>(b)] = ggml::f16_at(blk);
        u.dmin[static_cast<size_t>(b)] = ggml::f16_at(blk + 2);
        for (int j = 0; j < 8; ++j) {
          int s, m;
          ggml::scale_min_k4(j, blk + 4, s, m);
          sc[2 * j] = sc[2 * j + 1] = s;
          mn[2 * j] = mn[2 * j + 1] = m;
        }
        for (int i = 0; i < 256; ++i)
          q[i] = static_cast<int8_t>(t == wtype::q4_k ? ggml::q4_k_value(blk, i) : ggml::q5_k_value(blk, i));
        break;
      case wtype::q6_k:
        u.d[static_cast<size_t>(b)] = ggml::f16_at(blk + 208);
        for (int g = 0; g < 16; ++g) {
          sc[g] = ggml::q6_k_scale(blk, 16 * g);
          mn[g] = 32 * sc[g];  // d * sc * (q - 32)
        }
        for (int i = 0; i < 256; ++i) q[i] = static_cast<int8_t>(ggml::q6_k_value(blk, i));
        break;
      default: break;
    }
  }
}

// Row r of x against an unpacked weight row.
float dot_q8(const unpacked_row& u, wtype t, const q8_rows& x, int64_t r) {
  const int8_t* q = x.q + r * x.ldq;
  const float* d = x.d + r * (x.n_in / x.block);
  const int16_t* s16 = x.sum16 + r * (x.n_in / 16);
  const int64_t bv = block_values(t);
  float total = 0;
  for (int64_t b = 0; b < x.n_in / bv; ++b) {
    int32_t sumi = 0, summ = 0;
    for (int64_t g = b * bv / 16; g < (b + 1) * bv / 16; ++g) {
      int32_t s = 0;
      for (int64_t i = 16 * g; i < 16 * g + 16; ++i) s += u.q[static_cast<size_t>(i)] * q[i];
      sumi += u.sc[static_cast<size_t>(g)] * s;
      summ += u.mn[static_cast<size_t>(g)] * s16[g];
    }
    // (K types: one activation scale per block; 32-value types: the block is the scale's.)
    const float db = u.d[static_cast<size_t>(b)];
    if (t == wtype::q4_k || t == wtype::q5_k)
      total += d[b] * (db * static_cast<float>(sumi) - u.dmin[static_cast<size_t>(b)] * static_cast<float>(summ));
    else
      total += d[b] * db * static_cast<float>(sumi - summ);
  }
  return total;
}

}  // namespace

void q8_tile_generic(const q8_rows& x, const weight_matrix& w, int64_t c0, int64_t c1, float* y, int64_t ldy) {
  const auto* base = static_cast<const uint8_t*>(w.data);
  const size_t rb = w.row_bytes();
  unpacked_row u;
  for (int64_t c = c0; c < c1; ++c) {
    unpack_row(base + static_cast<size_t>(c) * rb, w.type, w.n_in, u);
    for (int64_t r = 0; r < x.n_rows; ++r) y[r * ldy + c] = dot_q8(u, w.type, x, r);
  }
}

}  // namespace troupe::cpu::detail
