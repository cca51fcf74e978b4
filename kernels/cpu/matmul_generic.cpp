// Portable matmul kernels (no vector extensions assumed): the reference the vector kernels
// are tested against, and the fallback on CPUs without AVX2.
#include <cstring>
#include <vector>

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
      case wtype::q8_0:
        for (int64_t b = 0; b < w.n_in / 32; ++b) {
          const uint8_t* blk = row + b * 34;
          uint16_t dh;
          std::memcpy(&dh, blk, 2);
          const float d = fp16_to_f32(dh);
          for (int j = 0; j < 32; ++j) o[b * 32 + j] = d * static_cast<float>(static_cast<int8_t>(blk[2 + j]));
        }
        break;
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

}  // namespace troupe::cpu::detail
