// The ops of ops.hpp compiled for the generic instruction set (see CMakeLists.txt for its flags).
#define OPS_NS generic
#include "kernels/cpu/ops_impl.inc"

namespace troupe::cpu::detail {
const ops_table& ops_generic() { return generic::table(); }
}  // namespace troupe::cpu::detail
