#include "kernels/cpu/matmul.hpp"

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <vector>

#include <cblas.h>

#include "kernels/cpu/cpu_features.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace troupe::cpu {
namespace {

detail::tile_fn pick_tile() {
  switch (best_isa()) {
    case isa::avx512: return detail::tile_avx512;
    case isa::avx2: return detail::tile_avx2;
    case isa::generic: break;
  }
  return detail::tile_generic;
}

detail::dequant_fn pick_dequant() {
  return best_isa() == isa::avx512 ? detail::dequant_avx512 : detail::dequant_generic;
}

// Columns per dequantized panel on the BLAS path: 128 rows of a 4096-wide matrix are 2 MiB
// of f32, which stays in L2/L3 while sgemm streams the activations past it.
constexpr int64_t panel_cols = 128;

// Each worker thread's dequantized panel. Reached through a function: GCC does not register
// the destructor of a function-local thread_local that is only named inside a lambda run on
// another thread (the panel then leaked at every thread exit; LeakSanitizer found it).
std::vector<float>& panel_buffer() {
  static thread_local std::vector<float> panel;
  return panel;
}

void blas_path(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, float* y,
               int64_t ldy, thread_pool& pool) {
  static const bool single = [] {
    openblas_set_num_threads(1);  // we parallelise over columns ourselves
    return true;
  }();
  (void)single;
  const detail::dequant_fn dq = pick_dequant();
  pool.parallel_for(w.n_out, panel_cols, [&](int64_t c0, int64_t c1) {
    std::vector<float>& panel = panel_buffer();
    panel.resize(static_cast<size_t>(panel_cols * w.n_in));
    for (int64_t c = c0; c < c1; c += panel_cols) {
      const int64_t nc = std::min(panel_cols, c1 - c);
      const float* b;
      if (w.type == wtype::f32) {
        b = static_cast<const float*>(w.data) + c * w.n_in;
      } else {
        dq(w, c, c + nc, panel.data());
        b = panel.data();
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n_rows),
                  static_cast<int>(nc), static_cast<int>(w.n_in), 1.0f, x, static_cast<int>(ldx), b,
                  static_cast<int>(w.n_in), 0.0f, y + c, static_cast<int>(ldy));
    }
  });
}

}  // namespace

size_t weight_matrix::row_bytes() const {
  const auto n = static_cast<size_t>(n_in);
  switch (type) {
    case wtype::f32: return n * 4;
    case wtype::f16:
    case wtype::bf16: return n * 2;
    case wtype::q8_0: return n / 32 * 34;
  }
  return 0;
}

bf16_dot bf16_dot_mode() {
  static const bf16_dot m = [] {
    if (!detect().avx512_bf16 || best_isa() != isa::avx512) return bf16_dot::widen;
    const char* v = std::getenv("TROUPE_BF16_DOT");
    if (v && std::string_view(v) == "widen") return bf16_dot::widen;
    if (v && std::string_view(v) == "single") return bf16_dot::single;
    if (v && std::string_view(v) == "split") return bf16_dot::split;
    return bf16_dot::widen;
  }();
  return m;
}

int64_t blas_threshold_rows() {
  static const int64_t t = [] {
    if (const char* v = std::getenv("TROUPE_BLAS_ROWS")) return static_cast<int64_t>(std::atoll(v));
    return int64_t{48};
  }();
  return t;
}

void matmul(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, float* y,
            int64_t ldy, thread_pool& pool, matmul_path path) {
  if (n_rows <= 0 || w.n_out <= 0) return;
  if (path == matmul_path::automatic)
    path = n_rows >= blas_threshold_rows() ? matmul_path::blas : matmul_path::kernel;
  if (path == matmul_path::blas) {
    blas_path(x, ldx, n_rows, w, y, ldy, pool);
    return;
  }
  static const detail::tile_fn generic_tile = pick_tile();
  detail::tile_fn tile = generic_tile;
  if (w.type == wtype::bf16 && w.n_in % 32 == 0) {
    if (bf16_dot_mode() == bf16_dot::split) tile = detail::tile_avx512bf16;
    else if (bf16_dot_mode() == bf16_dot::single) tile = detail::tile_avx512bf16_single;
  }
  // Columns in multiples of 16 per chunk keep each thread's tiles whole.
  pool.parallel_for(w.n_out, 16, [&](int64_t c0, int64_t c1) {
    tile(x, ldx, n_rows, w, c0, c1, y, ldy);
  });
}

void dequantize_rows(const weight_matrix& w, int64_t r0, int64_t r1, float* out) {
  static const detail::dequant_fn dq = pick_dequant();
  dq(w, r0, r1, out);
}

}  // namespace troupe::cpu
