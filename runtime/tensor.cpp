#include "runtime/tensor.hpp"

namespace troupe {

std::string_view dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
    case dtype::q8_0: return "q8_0";
    case dtype::q4_0: return "q4_0";
    case dtype::q4_k: return "q4_K";
    case dtype::q5_k: return "q5_K";
    case dtype::q6_k: return "q6_K";
    case dtype::i32: return "i32";
    case dtype::i64: return "i64";
    case dtype::u8: return "u8";
  }
  return "?";
}

int64_t dtype_block(dtype t) {
  switch (t) {
    case dtype::q8_0:
    case dtype::q4_0: return 32;
    case dtype::q4_k:
    case dtype::q5_k:
    case dtype::q6_k: return 256;
    default: return 1;
  }
}

size_t dtype_block_bytes(dtype t) {
  switch (t) {
    case dtype::f32: return 4;
    case dtype::f16: return 2;
    case dtype::bf16: return 2;
    case dtype::q8_0: return q8_0_block_bytes;
    case dtype::q4_0: return 18;
    case dtype::q4_k: return 144;
    case dtype::q5_k: return 176;
    case dtype::q6_k: return 210;
    case dtype::i32: return 4;
    case dtype::i64: return 8;
    case dtype::u8: return 1;
  }
  return 0;
}

bool is_ggml_quantized(dtype t) { return dtype_block(t) > 1; }

size_t dtype_row_bytes(dtype t, int64_t n) {
  return static_cast<size_t>(n / dtype_block(t)) * dtype_block_bytes(t);
}

int64_t tensor_view::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string tensor_view::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace troupe
