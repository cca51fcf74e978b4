#include "cli/version.hpp"

#include <cstdlib>

#include <fmt/format.h>

#include "cli/build_info.hpp"
#include "kernels/cpu/cpu_features.hpp"
#if defined(TROUPE_HAVE_CUDA)
#include "kernels/cuda/device.hpp"
#endif

namespace troupe {

namespace {

std::string commit_line() {
  if (*build_info::git_commit == 0) return "unknown: built from a source tree that is not a git checkout";
  return fmt::format("{}{}", build_info::git_commit, build_info::git_dirty ? " with uncommitted changes" : "");
}

std::string build_line() {
  std::string b = TROUPE_BUILD_TYPE;
#if defined(__clang__)
  b += fmt::format(", clang {}.{}.{}", __clang_major__, __clang_minor__, __clang_patchlevel__);
#elif defined(__GNUC__)
  b += fmt::format(", GCC {}.{}.{}", __GNUC__, __GNUC_MINOR__, __GNUC_PATCHLEVEL__);
#endif
#if defined(__SANITIZE_ADDRESS__)
  b += ", AddressSanitizer";
#endif
  return b;
}

std::string cpu_line() {
  const cpu::features& f = cpu::detect();
  auto yes = [](bool b) { return b ? "yes" : "no"; };
  std::string s = fmt::format("{} (this CPU: AVX2 {}, AVX-512 {}, AVX512-BF16 {})", cpu::isa_name(cpu::best_isa()),
                              yes(f.avx2), yes(f.avx512), yes(f.avx512_bf16));
  if (const char* isa = std::getenv("TROUPE_ISA"); isa && *isa) s += fmt::format("; TROUPE_ISA={} is set", isa);
  return s;
}

std::string cuda_lines() {
#if defined(TROUPE_HAVE_CUDA)
  std::string s = fmt::format("compiled in (CUDA {}, kernels for sm_{})\n", TROUPE_CUDA_VERSION, TROUPE_CUDA_ARCHS);
  auto n = cuda::device_count();
  if (!n.ok()) return s + fmt::format("{:<13}none seen: {}", "GPUs", n.message());
  for (int i = 0; i < *n; ++i) {
    auto d = cuda::probe_device(i);
    s += fmt::format("{:<13}{}: {}\n", i == 0 ? "GPUs" : "", i, d.ok() ? cuda::describe(*d) : d.message());
  }
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
#else
  return fmt::format("not compiled in (configured without nvcc, or with -DTROUPE_CUDA=OFF)\n{:<13}not looked for",
                     "GPUs");
#endif
}

}  // namespace

std::string version_text() {
  return fmt::format("troupe {}\n{:<13}{}\n{:<13}{}\n{:<13}{}\n{:<13}{}", TROUPE_VERSION, "commit", commit_line(),
                     "build", build_line(), "CPU kernels", cpu_line(), "CUDA", cuda_lines());
}

}  // namespace troupe
