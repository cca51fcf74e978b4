// tensor_view: a typed, shaped view of weight bytes that live elsewhere (usually an mmap).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

// The weight types the engine reads. q8_0, q4_0, q4_K, q5_K and q6_K are GGML's block types
// (kernels/cpu/ggml_blocks.hpp has their layouts), blocked along the innermost dimension.
enum class dtype : uint8_t { f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k, i32, i64, u8 };

inline constexpr int64_t q8_0_block = 32;
inline constexpr size_t q8_0_block_bytes = 34;

// Values per block along a row (1 for the plain types) and bytes per block.
int64_t dtype_block(dtype t);
size_t dtype_block_bytes(dtype t);
bool is_ggml_quantized(dtype t);

std::string_view dtype_name(dtype t);
// Bytes taken by n_elements values of type t along the innermost dimension (n_elements
// must be a multiple of the block size for block types).
size_t dtype_row_bytes(dtype t, int64_t n_elements);

struct tensor_view {
  dtype type = dtype::f32;
  // Outermost dimension first (row-major, as Hugging Face and PyTorch write shapes):
  // a linear layer's weight is [n_out, n_in].
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t n_bytes = 0;

  int64_t n_elements() const;
  int64_t dim(size_t i) const { return shape.at(i); }
  std::string shape_string() const;  // "[4096, 11008]"
};

}  // namespace troupe
