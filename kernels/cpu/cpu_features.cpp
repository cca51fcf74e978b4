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
    r.avx512_vnni = r.avx512 && __builtin_cpu_supports("avx512vnni");
    return r;
  }();
  return f;
}

const features& usable() {
  static const features f = [] {
    features r = detect();
    const char* want = std::getenv("TROUPE_ISA");
    if (!want || std::strcmp(want, "native") == 0) return r;
    r.avx512_bf16 = r.avx512_vnni = false;
    if (std::strcmp(want, "avx512") == 0) return r;
    r.avx512 = false;
    if (std::strcmp(want, "avx2") == 0) return r;
    r.avx2 = false;
    return r;
  }();
  return f;
}

isa best_isa() {
  const features& f = usable();
  return f.avx512 ? isa::avx512 : f.avx2 ? isa::avx2 : isa::generic;
}

std::string isa_name(isa i) {
  switch (i) {
    case isa::generic: return "generic";
    case isa::avx2: return "avx2";
    case isa::avx512: {
      std::string s = "avx512";
      if (usable().avx512_bf16) s += "+bf16";
      if (usable().avx512_vnni) s += "+vnni";
      return s;
    }
  }
  return "?";
}

}  // namespace troupe::cpu
