// bench_util: measurements the benchmarks share: memory bandwidth (a STREAM-like triad),
// peak resident memory, percentiles, wall-clock timing.
#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

namespace troupe::cpu {
class thread_pool;
}

namespace troupe::bench {

// Best-of-reps triad a[i] = b[i] + s * c[i] over three arrays of doubles much larger than
// the caches, on every thread of the pool; bytes/s counting 24 bytes per element (STREAM).
double triad_bandwidth(cpu::thread_pool& pool, size_t n_elements = size_t{1} << 25, int reps = 5);

size_t peak_rss_bytes();

// p in [0, 100]; linear interpolation between order statistics; 0 for an empty sample.
double percentile(std::vector<double> v, double p);
double mean(const std::vector<double>& v);

inline double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace troupe::bench
