// The ops of ops.hpp compiled for the avx2 instruction set (see CMakeLists.txt for its flags).
#define OPS_NS avx2
#include "kernels/cpu/ops_impl.inc"

namespace troupe::cpu::detail {
const ops_table& ops_avx2() { return avx2::table(); }
}  // namespace troupe::cpu::detail
