// cpu_features: which vector instruction sets this CPU has, for run-time kernel dispatch.
#pragma once

#include <string>

namespace troupe::cpu {

enum class isa { generic, avx2, avx512 };

struct features {
  bool avx2 = false;      // with FMA and F16C
  bool avx512 = false;    // F, BW, VL, DQ
  bool avx512_bf16 = false;
};

const features& detect();
// The best kernel set for this CPU; TROUPE_ISA=generic|avx2|avx512 lowers it (for tests).
isa best_isa();
std::string isa_name(isa i);

}  // namespace troupe::cpu
