// matmul: y = x · Wᵀ for f32 activations and f32/f16/bf16/q8_0 weights, multithreaded, with
// per-ISA micro-kernels for small row counts (decode) and an OpenBLAS sgemm path over
// dequantized weight panels for large ones (prefill).
#pragma once

#include <cstddef>
#include <cstdint>

namespace troupe::cpu {

class thread_pool;

enum class wtype : uint8_t { f32, f16, bf16, q8_0 };

// [n_out, n_in] row-major weights, read in place. q8_0 rows are blocks of 32 values:
// an f16 scale then 32 int8 (34 bytes a block).
struct weight_matrix {
  wtype type = wtype::f32;
  const void* data = nullptr;
  int64_t n_out = 0;
  int64_t n_in = 0;
  size_t row_bytes() const;
};

enum class matmul_path { automatic, kernel, blas };

// How bf16 weights are multiplied on CPUs with AVX512-BF16 (TROUPE_BF16_DOT overrides):
//   widen: to f32 in registers, f32 FMA (the path every CPU has)
//   split: bf16 dot products with activations as bf16 high + low parts (about f32 accuracy)
//   single: bf16 dot products with activations rounded to bf16 (half the work, less accurate)
enum class bf16_dot { widen, split, single };
bf16_dot bf16_dot_mode();

// y[n_rows, n_out] (row stride ldy) = x[n_rows, n_in] (row stride ldx) · Wᵀ.
// n_in must be a multiple of 16 (of 32 for q8_0).
void matmul(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w, float* y,
            int64_t ldy, thread_pool& pool, matmul_path path = matmul_path::automatic);

// Rows [row_begin, row_end) of W as f32, for embedding lookups: out[(r - row_begin) * n_in].
void dequantize_rows(const weight_matrix& w, int64_t row_begin, int64_t row_end, float* out);

// Row count from which the BLAS path is used (measured by `troupe bench engine`).
int64_t blas_threshold_rows();

namespace detail {
// Computes y[:, c0:c1) for all rows with the micro-kernels of one ISA.
using tile_fn = void (*)(const float* x, int64_t ldx, int64_t n_rows, const weight_matrix& w,
                         int64_t c0, int64_t c1, float* y, int64_t ldy);
void tile_generic(const float*, int64_t, int64_t, const weight_matrix&, int64_t, int64_t, float*, int64_t);
void tile_avx2(const float*, int64_t, int64_t, const weight_matrix&, int64_t, int64_t, float*, int64_t);
void tile_avx512(const float*, int64_t, int64_t, const weight_matrix&, int64_t, int64_t, float*, int64_t);
// bf16 weights with n_in a multiple of 32, on CPUs with AVX512-BF16.
void tile_avx512bf16(const float*, int64_t, int64_t, const weight_matrix&, int64_t, int64_t, float*, int64_t);
void tile_avx512bf16_single(const float*, int64_t, int64_t, const weight_matrix&, int64_t, int64_t, float*, int64_t);
using dequant_fn = void (*)(const weight_matrix& w, int64_t r0, int64_t r1, float* out);
void dequant_generic(const weight_matrix&, int64_t, int64_t, float*);
void dequant_avx512(const weight_matrix&, int64_t, int64_t, float*);
}  // namespace detail

}  // namespace troupe::cpu
