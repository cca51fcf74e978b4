// cpu_features: which vector instruction sets this CPU has, for run-time kernel dispatch.
#pragma once

#include <string>

namespace troupe::cpu {

enum class isa { generic, avx2, avx512 };

struct features {
  bool avx2 = false;         // with FMA and F16C
  bool avx512 = false;       // F, BW, VL, DQ
  bool avx512_bf16 = false;  // vdpbf16ps
  bool avx512_vnni = false;  // vpdpbusd, vpdpwssd
};

// What the CPU has.
const features& detect();
// What the kernels use: the CPU's features, lowered by TROUPE_ISA for tests:
//   generic | avx2 | avx512 (AVX-512 without its BF16 and VNNI extensions) | native (default).
const features& usable();
// The best kernel set of usable().
isa best_isa();
// "avx512+bf16+vnni", "avx2", ...: the kernels in use.
std::string isa_name(isa i);

}  // namespace troupe::cpu
