#include "kernels/cpu/matmul.hpp"

#include <algorithm>
#include <new>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <vector>

#include <cblas.h>
#include <sys/mman.h>

#include "kernels/cpu/cpu_features.hpp"
#include "kernels/cpu/ggml_blocks.hpp"
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

// The f32 micro-kernels widen these types in registers; the others go through panels.
bool widened_in_registers(wtype t) {
  return t == wtype::f32 || t == wtype::f16 || t == wtype::bf16 || t == wtype::q8_0;
}

// Columns per dequantized panel: 128 rows of a 4096-wide matrix are 2 MiB of f32, which stays
// in L2/L3 while sgemm streams the activations past it.
constexpr int64_t panel_cols = 128;

// Each worker thread's dequantized panel. Reached through a function: GCC does not register
// the destructor of a function-local thread_local that is only named inside a lambda run on
// another thread (the panel then leaked at every thread exit; LeakSanitizer found it).
std::vector<float>& panel_buffer() {
  static thread_local std::vector<float> panel;
  return panel;
}

// The reference path over dequantized panels of columns: OpenBLAS sgemm, or (small row counts)
// the f32 micro-kernels on the panel.
void panel_path(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, float* y,
                int64_t ldy, thread_pool& pool, bool blas) {
  static const bool single = [] {
    openblas_set_num_threads(1);  // we parallelise over columns ourselves
    return true;
  }();
  (void)single;
  static const detail::dequant_fn dq = pick_dequant();
  static const detail::tile_fn tile = pick_tile();
  const int64_t grain = blas ? panel_cols : 16;
  pool.parallel_for(w.n_out, grain, [&](int64_t c0, int64_t c1) {
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
      if (blas) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n_rows), static_cast<int>(nc),
                    static_cast<int>(w.n_in), 1.0f, x, static_cast<int>(ldx), b, static_cast<int>(w.n_in), 0.0f,
                    y + c, static_cast<int>(ldy));
      } else {
        const weight_matrix pw{wtype::f32, b, nc, w.n_in};
        tile(x, ldx, n_rows, pw, 0, nc, y + c, ldy);
      }
    }
  });
}

void reference_path(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, float* y,
                    int64_t ldy, thread_pool& pool, matmul_path path) {
  if (path == matmul_path::automatic)
    path = n_rows >= blas_threshold_rows() ? matmul_path::blas : matmul_path::kernel;
  if (path == matmul_path::blas || !widened_in_registers(w.type)) {
    panel_path(x, ldx, n_rows, w, y, ldy, pool, path == matmul_path::blas);
    return;
  }
  static const detail::tile_fn tile = pick_tile();
  // Columns in multiples of 16 per chunk keep each thread's tiles whole.
  pool.parallel_for(w.n_out, 16, [&](int64_t c0, int64_t c1) { tile(x, ldx, n_rows, w, c0, c1, y, ldy); });
}

// Runs fn(r0, r1) over rows, on the pool when there is enough work to share.
template <class F>
void over_rows(int64_t n_rows, int64_t n, thread_pool& pool, F&& fn) {
  if (n_rows * n < (int64_t{1} << 16)) fn(int64_t{0}, n_rows);
  else pool.parallel_for(n_rows, 1, fn);
}

// The caller's scratch for rounded activations (matmul runs on the pool's owner thread).
struct fast_scratch {
  std::vector<uint16_t> bf16;
  std::vector<float> f32;
  std::vector<int8_t> q;
  std::vector<float> d;
  std::vector<int16_t> sum16;
};
fast_scratch& scratch() {
  static thread_local fast_scratch s;
  return s;
}

void fast_bf16(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, float* y, int64_t ldy,
               thread_pool& pool) {
  fast_scratch& s = scratch();
  const int64_t k = w.n_in;
  if (!usable().avx512_bf16 && best_isa() == isa::avx512) {
    // Without bf16 units: the rounded values straight to f32 in one vector pass, then the
    // packed kernel for every row count (chunks of 64 columns: whole tiles of strips).
    s.f32.resize(static_cast<size_t>(n_rows * k));
    float* xr = s.f32.data();
    over_rows(n_rows, k, pool, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) detail::round_bf16_f32_avx512(x + r * ldx, k, xr + r * k);
    });
    pool.parallel_for(w.n_out, 64, [&](int64_t c0, int64_t c1) {
      detail::bf16_packed_avx512(xr, k, n_rows, w, c0, c1, y, ldy);
    });
    return;
  }
  s.bf16.resize(static_cast<size_t>(n_rows * k));
  uint16_t* xb = s.bf16.data();
  over_rows(n_rows, k, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) round_to_bf16(x + r * ldx, k, xb + r * k);
  });
  if (usable().avx512_bf16 && k % 32 == 0) {
    const int64_t dnnl_rows = detail::onednn_min_rows();
    const detail::bf16_tile_fn tile = dnnl_rows > 0 && n_rows >= dnnl_rows ? detail::bf16_gemm_onednn
                                                                            : detail::bf16_tile_avx512bf16;
    // Chunks of 64 columns: whole tiles, and both threads busy even for narrow matrices.
    pool.parallel_for(w.n_out, 64, [&](int64_t c0, int64_t c1) { tile(xb, k, n_rows, w, c0, c1, y, ldy); });
    return;
  }
  // Without bf16 units: the same rounded values, widened, through the f32 kernels.
  s.f32.resize(static_cast<size_t>(n_rows * k));
  float* xr = s.f32.data();
  over_rows(n_rows, k, pool, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0 * k; i < r1 * k; ++i) xr[i] = bf16_to_f32(xb[i]);
  });
  reference_path(xr, k, n_rows, w, y, ldy, pool, matmul_path::automatic);
}

void fast_q8(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, float* y, int64_t ldy,
             thread_pool& pool) {
  fast_scratch& s = scratch();
  q8_rows a;
  a.n_rows = n_rows;
  a.n_in = w.n_in;
  a.block = act_block(w.type);
  a.ldq = (w.n_in + 63) / 64 * 64;
  s.q.resize(static_cast<size_t>(n_rows * a.ldq) + 64);
  s.d.resize(static_cast<size_t>(n_rows * (w.n_in / a.block)));
  s.sum16.resize(static_cast<size_t>(n_rows * (w.n_in / 16)));
  // 64-byte aligned rows for the vector kernels.
  auto* q = reinterpret_cast<int8_t*>((reinterpret_cast<uintptr_t>(s.q.data()) + 63) & ~uintptr_t{63});
  a.q = q;
  a.d = s.d.data();
  a.sum16 = s.sum16.data();
  over_rows(n_rows, w.n_in, pool, [&](int64_t r0, int64_t r1) { quantize_rows_q8(x, ldx, r0, r1, a); });
  static const detail::q8_tile_fn tile =
      usable().avx512_vnni ? detail::q8_tile_avx512vnni : detail::q8_tile_generic;
  const int64_t gemm_rows = detail::q8_gemm_min_rows(w.type);
  const bool has_gemm = w.type == wtype::q8_0 || w.type == wtype::q4_k || w.type == wtype::q5_k || w.type == wtype::q6_k;
  if (usable().avx512_vnni && has_gemm && gemm_rows > 0 && n_rows >= gemm_rows) {
    // Chunks of 32 columns: whole panels.
    pool.parallel_for(w.n_out, 32, [&](int64_t c0, int64_t c1) { detail::q8_gemm_avx512vnni(a, w, c0, c1, y, ldy); });
    return;
  }
  pool.parallel_for(w.n_out, 16, [&](int64_t c0, int64_t c1) { tile(a, w, c0, c1, y, ldy); });
}

}  // namespace

int64_t block_values(wtype t) {
  switch (t) {
    case wtype::q8_0:
    case wtype::q4_0: return 32;
    case wtype::q4_k:
    case wtype::q5_k:
    case wtype::q6_k: return ggml::qk_k;
    default: return 1;
  }
}

size_t block_bytes(wtype t) {
  switch (t) {
    case wtype::f32: return 4;
    case wtype::f16:
    case wtype::bf16: return 2;
    case wtype::q8_0: return ggml::q8_0_bytes;
    case wtype::q4_0: return ggml::q4_0_bytes;
    case wtype::q4_k: return ggml::q4_k_bytes;
    case wtype::q5_k: return ggml::q5_k_bytes;
    case wtype::q6_k: return ggml::q6_k_bytes;
  }
  return 0;
}

bool is_quantized(wtype t) { return block_values(t) > 1; }

const char* wtype_name(wtype t) {
  switch (t) {
    case wtype::f32: return "f32";
    case wtype::f16: return "f16";
    case wtype::bf16: return "bf16";
    case wtype::q8_0: return "q8_0";
    case wtype::q4_0: return "q4_0";
    case wtype::q4_k: return "q4_K";
    case wtype::q5_k: return "q5_K";
    case wtype::q6_k: return "q6_K";
  }
  return "?";
}

size_t weight_matrix::row_bytes() const {
  return static_cast<size_t>(n_in / block_values(type)) * block_bytes(type);
}

int64_t act_block(wtype t) { return block_values(t) == ggml::qk_k ? ggml::qk_k : 32; }

precision default_precision() {
  static const precision p = [] {
    const char* v = std::getenv("TROUPE_PRECISION");
    return v && std::string_view(v) == "f32" ? precision::f32 : precision::fast;
  }();
  return p;
}

const char* precision_name(precision p) { return p == precision::f32 ? "f32" : "fast"; }

namespace detail {
int64_t onednn_min_rows() {
#if defined(TROUPE_HAVE_DNNL)
  static const int64_t rows = [] {
    const char* v = std::getenv("TROUPE_BF16_GEMM");
    if (v && std::string_view(v) == "own") return int64_t{0};
    if (v && std::string_view(v) == "onednn") return int64_t{1};
    return int64_t{16};  // measured: below 16 rows troupe's own kernel is as fast or faster
  }();
  return rows;
#else
  return 0;
#endif
}
#if !defined(TROUPE_HAVE_DNNL)
void bf16_gemm_onednn(const uint16_t* xb, int64_t ldxb, int64_t n_rows, const weight_matrix& w, int64_t c0,
                      int64_t c1, float* y, int64_t ldy) {
  bf16_tile_avx512bf16(xb, ldxb, n_rows, w, c0, c1, y, ldy);
}
#endif
}  // namespace detail

int64_t detail::q8_gemm_min_rows(wtype t) {
  static const int64_t env = [] {
    const char* v = std::getenv("TROUPE_Q8_GEMM_ROWS");
    return v ? static_cast<int64_t>(std::atoll(v)) : int64_t{-1};
  }();
  if (env >= 0) return env;
  // Measured (one core, cold weights, TinyLlama's matrices): for q8_0 at 4 rows the inner-product
  // kernel is faster, at 6 the GEMM; the K types' decode kernels (4 weight rows' blocks unpacked
  // in registers per pass) beat their GEMMs (whose panel packing costs as much as the products at
  // 8 rows) up to 8-10 rows, and lose from 12.
  return t == wtype::q8_0 ? 6 : 10;
}

int64_t blas_threshold_rows() {
  static const int64_t t = [] {
    if (const char* v = std::getenv("TROUPE_BLAS_ROWS")) return static_cast<int64_t>(std::atoll(v));
    return int64_t{48};
  }();
  return t;
}

void round_to_bf16(const float* x, int64_t n, uint16_t* out) {
  // As f32_to_bf16 (nearest even, NaN kept), written so that the compiler vectorizes it.
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u;
    out[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
  }
}

void quantize_rows_q8(const float* x, int64_t ldx, int64_t r0, int64_t r1, const q8_rows& out) {
  if (best_isa() == isa::avx512) detail::quantize_rows_q8_avx512(x, ldx, r0, r1, out);
  else detail::quantize_rows_q8_generic(x, ldx, r0, r1, out);
}

void detail::quantize_rows_q8_generic(const float* x, int64_t ldx, int64_t r0, int64_t r1, const q8_rows& out) {
  const int64_t n = out.n_in, bs = out.block;
  auto* q_all = const_cast<int8_t*>(out.q);
  auto* d_all = const_cast<float*>(out.d);
  auto* s_all = const_cast<int16_t*>(out.sum16);
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * ldx;
    int8_t* q = q_all + r * out.ldq;
    float* d = d_all + r * (n / bs);
    for (int64_t b = 0; b < n / bs; ++b) {
      float amax = 0.0f;
      for (int64_t i = b * bs; i < (b + 1) * bs; ++i) amax = std::max(amax, std::fabs(xr[i]));
      const float iscale = amax > 0.0f ? 127.0f / amax : 0.0f;
      d[b] = amax / 127.0f;
      // nearbyint rounds to nearest even in the default rounding mode.
      for (int64_t i = b * bs; i < (b + 1) * bs; ++i) q[i] = static_cast<int8_t>(std::nearbyint(xr[i] * iscale));
    }
    int16_t* s = s_all + r * (n / 16);
    for (int64_t g = 0; g < n / 16; ++g) {
      int32_t t = 0;
      for (int64_t i = 0; i < 16; ++i) t += q[16 * g + i];
      s[g] = static_cast<int16_t>(t);
    }
  }
}

void matmul(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, float* y,
            int64_t ldy, thread_pool& pool, precision prec, matmul_path path) {
  if (n_rows <= 0 || w.n_out <= 0) return;
  if (prec == precision::fast && path == matmul_path::automatic) {
    if (w.type == wtype::bf16) return fast_bf16(x, ldx, n_rows, w, y, ldy, pool);
    if (is_quantized(w.type)) return fast_q8(x, ldx, n_rows, w, y, ldy, pool);
  }
  reference_path(x, ldx, n_rows, w, y, ldy, pool, path);
}

double peak_gflops(thread_pool& pool, bool bf16) {
  std::vector<double> per(static_cast<size_t>(pool.size()));
  const bool use_bf16 = bf16 && usable().avx512_bf16;
  if (!use_bf16 && best_isa() != isa::avx512) return 0;  // measured for AVX-512 only
  pool.run([&](int t) {
    double best = 0;
    for (int rep = 0; rep < 3; ++rep)
      best = std::max(best, use_bf16 ? detail::bf16_peak_gflops(20'000'000) : detail::fma_peak_gflops(20'000'000));
    per[static_cast<size_t>(t)] = best;
  });
  double total = 0;
  for (double p : per) total += p;
  return total;
}

bool can_pack_bf16() { return best_isa() == isa::avx512; }

bool uses_packed_bf16(precision p) {
  return can_pack_bf16() && (p == precision::f32 || !usable().avx512_bf16);
}

size_t packed_bf16::bytes_for(int64_t n_out, int64_t n_in) {
  return static_cast<size_t>((n_out + 15) / 16) * static_cast<size_t>((n_in + 1) / 2) * 64;
}

void packed_bf16::free_deleter::operator()(uint32_t* p) const { std::free(p); }

packed_bf16::packed_bf16(const weight_matrix& w, thread_pool* pool) {
  bytes_ = bytes_for(w.n_out, w.n_in);
  if (bytes_ == 0) return;
  // Large matrices in 2 MiB-aligned memory the kernel may back with huge pages (THP "madvise"
  // mode): a fault per 2 MiB instead of per 4 KiB while packing, and fewer TLB misses streaming.
  constexpr size_t huge = size_t{2} << 20;
  if (bytes_ >= huge) {
    const size_t alloc = (bytes_ + huge - 1) / huge * huge;
    data_.reset(static_cast<uint32_t*>(std::aligned_alloc(huge, alloc)));
    if (data_) madvise(data_.get(), alloc, MADV_HUGEPAGE);  // advice only: no error to report
  } else {
    data_.reset(static_cast<uint32_t*>(std::aligned_alloc(64, bytes_)));  // bytes_: a multiple of 64
  }
  if (!data_) throw std::bad_alloc();
  const int64_t strips = (w.n_out + 15) / 16, words = static_cast<int64_t>(bytes_ / 4) / strips;
  auto run = [&](int64_t s0, int64_t s1) { detail::pack_bf16_avx512(w, s0, s1, data_.get() + s0 * words); };
  if (pool) pool->parallel_for(strips, 1, run);
  else run(0, strips);
}

void dequantize_rows(const weight_matrix& w, int64_t r0, int64_t r1, float* out) {
  static const detail::dequant_fn dq = pick_dequant();
  dq(w, r0, r1, out);
}

}  // namespace troupe::cpu
