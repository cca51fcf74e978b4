#include "runtime/tensor.hpp"

namespace troupe {

std::string_view dtype_name(dtype t) {
  switch (t) {
    case dtype::f32: return "f32";
    case dtype::f16: return "f16";
    case dtype::bf16: return "bf16";
    case dtype::q8_0: return "q8_0";
    case dtype::i32: return "i32";
    case dtype::i64: return "i64";
    case dtype::u8: return "u8";
  }
  return "?";
}

size_t dtype_row_bytes(dtype t, int64_t n) {
  const auto un = static_cast<size_t>(n);
  switch (t) {
    case dtype::f32: return un * 4;
    case dtype::f16: return un * 2;
    case dtype::bf16: return un * 2;
    case dtype::q8_0: return un / q8_0_block * q8_0_block_bytes;
    case dtype::i32: return un * 4;
    case dtype::i64: return un * 8;
    case dtype::u8: return un;
  }
  return 0;
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
