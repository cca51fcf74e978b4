#include "kernels/cpu/cpu_features.hpp"

#include <cstdlib>
#include <cstring>

namespace troupe::cpu {

const features& detect() {
  static const features f = [] {
    features r;
    __builtin_cpu_init();
    r.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    r.avx512 = r.avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    r.avx512_bf16 = r.avx512 && __builtin_cpu_supports("avx512bf16");
    return r;
  }();
  return f;
}

isa best_isa() {
  static const isa chosen = [] {
    const features& f = detect();
    isa best = f.avx512 ? isa::avx512 : f.avx2 ? isa::avx2 : isa::generic;
    if (const char* want = std::getenv("TROUPE_ISA")) {
      if (std::strcmp(want, "generic") == 0) best = isa::generic;
      else if (std::strcmp(want, "avx2") == 0 && f.avx2) best = isa::avx2;
    }
    return best;
  }();
  return chosen;
}

std::string isa_name(isa i) {
  switch (i) {
    case isa::generic: return "generic";
    case isa::avx2: return "avx2";
    case isa::avx512: return detect().avx512_bf16 ? "avx512+bf16" : "avx512";
  }
  return "?";
}

}  // namespace troupe::cpu
