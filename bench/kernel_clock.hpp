// The clock of the stand-alone kernel benchmarks (troupe_attention_kernels, troupe_quant_kernels,
// troupe_gemm_libraries): this thread's CPU time, which other work on a shared machine disturbs
// far less than wall time, or the wall clock (for runs over several threads).
#pragma once

#include <time.h>

#include <chrono>

namespace troupe::bench {

inline double kernel_clock_s(bool thread_cpu_time) {
  if (thread_cpu_time) {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace troupe::bench
