// The matmul kernels' view of a checkpoint's 2-D weight tensor (no copy): one mapping from
// tensor dtypes to kernel weight types, shared by the CPU and CUDA executors.
#pragma once

#include "kernels/cpu/matmul.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

inline cpu::weight_matrix weight_matrix_of(const tensor_view& t) {
  cpu::weight_matrix m;
  switch (t.type) {
    case dtype::f16: m.type = cpu::wtype::f16; break;
    case dtype::bf16: m.type = cpu::wtype::bf16; break;
    case dtype::q8_0: m.type = cpu::wtype::q8_0; break;
    case dtype::q4_0: m.type = cpu::wtype::q4_0; break;
    case dtype::q4_k: m.type = cpu::wtype::q4_k; break;
    case dtype::q5_k: m.type = cpu::wtype::q5_k; break;
    case dtype::q6_k: m.type = cpu::wtype::q6_k; break;
    default: m.type = cpu::wtype::f32; break;
  }
  m.data = t.data;
  m.n_out = t.shape.at(0);
  m.n_in = t.shape.at(1);
  return m;
}

}  // namespace troupe
