// matmul: y = x · Wᵀ for f32 activations and weights read in place as checkpoints store them
// (f32, f16, bf16 and GGML's q8_0, q4_0, q4_K, q5_K, q6_K blocks), multithreaded, with per-ISA
// kernels chosen at run time (cpu_features).
//
// Accuracy contract. Two paths, chosen per call by `precision`:
// - precision::f32, the reference path: activations stay f32, the weights' stored values are
//   widened exactly (quantized blocks dequantized as GGML defines them), products summed in f32.
//   A forward on this path matches the float64 numpy reference (scripts/reference_forward.py)
//   within 1e-3 of the largest logit magnitude at every position.
// - precision::fast, the default: activations are rounded the way the weight type's fast kernel
//   reads them, then products are exact and summed in f32 (or in int32 for integer products):
//   * bf16 weights: each activation rounded to bf16 (nearest even): vdpbf16ps on CPUs with
//     AVX512-BF16, the same rounded values through f32 FMA elsewhere. Each product is off by at
//     most 2^-9 of its size.
//   * quantized weights: each row of activations quantized to int8 in blocks (32 values for
//     q8_0 and q4_0, 256 for the K types): d = amax/127, q = nearest-even(x · 127/amax), all in
//     f32; integer dot products (vpdpbusd / vpmaddubsw where the CPU has them) scaled by d in
//     f32. Each activation is off by at most d/2.
//   * f32 and f16 weights: as precision::f32.
//   `reference_forward.py --round fast` simulates exactly these roundings (in float64 from the
//   rounded values); D, its largest logit deviation from the unrounded reference (relative to
//   the largest logit), is recorded per model (0.4-0.5% for bf16, 1.2-2.6% for int8 in the test
//   models). A forward on this path matches the simulation within 1e-3 + 0.75 D (activations whose
//   rounding flips between the engine's f32 values and numpy's float64 ones), the unrounded
//   reference within 1e-3 + 1.75 D, and its greedy tokens up to the first near-tie (a top-2 gap
//   within twice that). tests/runtime/forward_reference_test.cpp checks all three on every model
//   of the reference suite and every kernel variant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace troupe::cpu {

class thread_pool;

enum class wtype : uint8_t { f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k };

// GGML block sizes: values per block along a row, and bytes per block.
int64_t block_values(wtype t);
size_t block_bytes(wtype t);
bool is_quantized(wtype t);  // a GGML block type
const char* wtype_name(wtype t);

// [n_out, n_in] row-major weights, read in place. n_in must be a multiple of the type's block.
enum class precision : uint8_t { f32, fast };  // matmul's two paths (the contract above)

struct weight_matrix {
  wtype type = wtype::f32;
  const void* data = nullptr;
  int64_t n_out = 0;
  int64_t n_in = 0;
  // bf16 only, optional: the same weights as packed_bf16 lays them out (owned elsewhere, e.g.
  // by the model's runtime::packed_weights). The AVX-512 kernel reads it where set, and packs
  // strips on every call where not (same results, bit for bit).
  const uint32_t* packed = nullptr;
  size_t row_bytes() const;
};

// bf16 weights packed once for the AVX-512 outer-product kernel (CPUs without bf16 units, and
// the f32 reference path on any AVX-512 CPU): strips of 16 output columns (weight rows, the last
// strip padded with zeros), each strip [(n_in + 1) / 2] 64-byte lines, line p's 32-bit word j
// = W[16s + j][2p] | W[16s + j][2p + 1] << 16 (the odd k of an odd n_in is 0). One load then
// gives the even k's weights by a shift and the odd k's by an AND, and the line is the operand
// vdpbf16ps takes. The same size as the bf16 matrix (plus the padding): resident memory the
// model costs on top of its mapped file, whose pages stay in the page cache, reclaimable.
class packed_bf16 {
 public:
  packed_bf16() = default;
  // Packs w (bf16), on the pool's threads where one is given. Needs AVX-512 (can_pack_bf16()).
  explicit packed_bf16(const weight_matrix& w, thread_pool* pool = nullptr);
  const uint32_t* data() const { return data_.get(); }
  size_t bytes() const { return bytes_; }
  static size_t bytes_for(int64_t n_out, int64_t n_in);

 private:
  struct free_deleter {
    void operator()(uint32_t* p) const;
  };
  std::unique_ptr<uint32_t, free_deleter> data_;
  size_t bytes_ = 0;
};
// Whether packed_bf16 can pack here, and the kernel read it: the AVX-512 kernels are in use.
bool can_pack_bf16();
// Whether matmuls at precision p read packed bf16 weights, so that a loader should pack them:
// AVX-512 without bf16 units, and the f32 reference path on any AVX-512 CPU (the fast path on
// AVX512-BF16 runs vdpbf16ps or oneDNN on the weights as stored).
bool uses_packed_bf16(precision p);

// TROUPE_PRECISION=f32|fast (default fast).
precision default_precision();
const char* precision_name(precision p);

// The reference path's kernels: the f32 micro-kernels, or OpenBLAS sgemm over dequantized panels.
enum class matmul_path { automatic, kernel, blas };

// y[n_rows, n_out] (row stride ldy) = x[n_rows, n_in] (row stride ldx) · Wᵀ.
// n_in must be a multiple of 16 and of the weight type's block.
void matmul(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, float* y,
            int64_t ldy, thread_pool& pool, precision prec = precision::f32,
            matmul_path path = matmul_path::automatic);

// Rows [row_begin, row_end) of W as f32, for embedding lookups: out[(r - row_begin) * n_in].
void dequantize_rows(const weight_matrix& w, int64_t row_begin, int64_t row_end, float* out);

// Row count from which the reference path uses BLAS (TROUPE_BLAS_ROWS overrides).
int64_t blas_threshold_rows();

// The activation roundings of precision::fast, exposed for tests and the benchmark.
// bf16: n values rounded to nearest even (as f32_to_bf16).
void round_to_bf16(const float* x, int64_t n, uint16_t* out);

// Rows of activations quantized to int8 for the integer kernels (see the contract above).
struct q8_rows {
  int64_t n_rows = 0, n_in = 0, block = 32;  // block: 32 or 256 values per scale
  int64_t ldq = 0;                           // row stride of q (a multiple of 64)
  const int8_t* q = nullptr;                 // [n_rows][ldq]
  const float* d = nullptr;                  // [n_rows][n_in / block]
  const int16_t* sum16 = nullptr;            // [n_rows][n_in / 16]: sums of 16 consecutive q
};
// The activation block size the integer kernels of type t read (32 or 256).
int64_t act_block(wtype t);
// Quantizes rows [r0, r1) of x into the buffers behind out (which must hold n_rows rows).
void quantize_rows_q8(const float* x, int64_t ldx, int64_t r0, int64_t r1, const q8_rows& out);

// The CPU's peak multiply-add throughput on all threads of the pool, from register-only loops
// (vdpbf16ps where usable, else AVX-512 f32 FMA; 0 without AVX-512): the roofline of
// compute-bound matmuls. GFLOP/s.
double peak_gflops(thread_pool& pool, bool bf16);

namespace detail {
double bf16_peak_gflops(int64_t iters);  // this thread, AVX512-BF16
double fma_peak_gflops(int64_t iters);   // this thread, AVX-512 f32 FMA
// The reference path: y[:, c0:c1) for all rows with the f32 micro-kernels of one ISA
// (f32, f16, bf16 and q8_0 weights; other types go through dequantized panels).
using tile_fn = void (*)(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w,
                         int64_t c0, int64_t c1, float* y, int64_t ldy);
void tile_generic(const float*, int64_t, int64_t, const weight_matrix&, int64_t, int64_t, float*, int64_t);
void tile_avx2(const float*, int64_t, int64_t, const weight_matrix&, int64_t, int64_t, float*, int64_t);
void tile_avx512(const float*, int64_t, int64_t, const weight_matrix&, int64_t, int64_t, float*, int64_t);
using dequant_fn = void (*)(const weight_matrix& w, int64_t r0, int64_t r1, float* out);
void dequant_generic(const weight_matrix&, int64_t, int64_t, float*);
void dequant_avx512(const weight_matrix&, int64_t, int64_t, float*);
// quantize_rows_q8 in plain C++ and with AVX-512 (bit for bit the same; quantize_rows_q8 picks).
void quantize_rows_q8_generic(const float* x, int64_t ldx, int64_t r0, int64_t r1, const q8_rows& out);
void quantize_rows_q8_avx512(const float* x, int64_t ldx, int64_t r0, int64_t r1, const q8_rows& out);
// out[i] = x[i] rounded to bf16 (as round_to_bf16) and widened back to f32, 16 lanes at a time.
void round_bf16_f32_avx512(const float* x, int64_t n, float* out);

// bf16 weights on AVX-512 (the fast path without bf16 units, where x holds the activations
// already rounded to bf16, as f32; and the reference path): the outer-product kernel over
// w.packed, or over strips packed on the fly where it is null. Every row count, the same bits
// for a row whatever the others (matmul_avx512.cpp). y[:, c0:c1), c0 a multiple of 16.
void bf16_packed_avx512(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, int64_t c0, int64_t c1,
                        float* y, int64_t ldy);
// Strips [s0, s1) of w packed as packed_bf16 lays them out, into out.
void pack_bf16_avx512(const weight_matrix& w, int64_t s0, int64_t s1, uint32_t* out);
// The fast path for bf16 weights on AVX512-BF16: xb holds the rows of activations already
// rounded to bf16 (row stride ldxb); n_in a multiple of 32.
using bf16_tile_fn = void (*)(const uint16_t* xb, int64_t ldxb, int64_t n_rows, const weight_matrix& w,
                              int64_t c0, int64_t c1, float* y, int64_t ldy);
void bf16_tile_avx512bf16(const uint16_t*, int64_t, int64_t, const weight_matrix&, int64_t, int64_t, float*, int64_t);
// The same through oneDNN's matmul (matmul_onednn.cpp), for many rows; where troupe was built with it.
void bf16_gemm_onednn(const uint16_t*, int64_t, int64_t, const weight_matrix&, int64_t, int64_t, float*, int64_t);
// Rows from which the bf16 fast path uses oneDNN (TROUPE_BF16_GEMM=own|onednn overrides; 0 when
// it is not built in, meaning never).
int64_t onednn_min_rows();

// The fast path for quantized weights: y[:, c0:c1) from activations quantized with
// act_block(w.type).
using q8_tile_fn = void (*)(const q8_rows& x, const weight_matrix& w, int64_t c0, int64_t c1, float* y,
                            int64_t ldy);
void q8_tile_generic(const q8_rows&, const weight_matrix&, int64_t, int64_t, float*, int64_t);
void q8_tile_avx512vnni(const q8_rows&, const weight_matrix&, int64_t, int64_t, float*, int64_t);
// Many rows against q8_0, q4_K, q5_K and q6_K weights: an outer-product int8 GEMM over transposed
// panels (other types: q8_tile_avx512vnni). Used from q8_gemm_min_rows(t) rows (q8_0 6, the K
// types 10; TROUPE_Q8_GEMM_ROWS overrides for all; 0: never).
void q8_gemm_avx512vnni(const q8_rows&, const weight_matrix&, int64_t, int64_t, float*, int64_t);
int64_t q8_gemm_min_rows(wtype t);
}  // namespace detail

}  // namespace troupe::cpu
