// The ops of ops.hpp compiled for the avx512 instruction set (see CMakeLists.txt for its flags).
#define OPS_NS avx512
#include "kernels/cpu/ops_impl.inc"

namespace troupe::cpu::detail {
const ops_table& ops_avx512() { return avx512::table(); }
}  // namespace troupe::cpu::detail
