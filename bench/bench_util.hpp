// bench_util: measurements the benchmarks share: memory bandwidth (a STREAM-like triad),
// peak resident memory, percentiles, wall-clock timing.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe::cpu {
class thread_pool;
}
namespace troupe {
class executor;
class progress;
struct model_bundle;
}

namespace troupe::bench {

// Best-of-reps triad a[i] = b[i] + s * c[i] over three arrays of doubles much larger than
// the caches, on every thread of the pool; bytes/s counting 24 bytes per element (STREAM).
double triad_bandwidth(cpu::thread_pool& pool, size_t n_elements = size_t{1} << 25, int reps = 5);

size_t peak_rss_bytes();

// p in [0, 100]; linear interpolation between order statistics; 0 for an empty sample.
double percentile(std::vector<double> v, double p);
double mean(const std::vector<double>& v);

// Decode benchmarks: `batch` sequences, each with its own run of `blocks_per_seq` KV blocks
// (sequence s owns blocks s * blocks_per_seq onwards) and `context` tokens cached; run_steps
// forwards `steps` decode steps of one new token per sequence, at positions from
// context + first (the cached values do not change the time).
class decode_driver {
 public:
  decode_driver(executor& ex, int batch, int blocks_per_seq, int context, int64_t n_vocab);
  [[nodiscard]] status run_steps(int steps, int first);

 private:
  executor& ex_;
  std::vector<std::vector<int32_t>> tables_;
  int context_;
  int64_t n_vocab_;
  std::vector<float> logits_;
};

// A benchmark's steps as progress on stderr ("bench engine [####....] 3/7 steps, decode at
// batch 8"): next() starts the named step.
class bench_steps {
 public:
  bench_steps(std::string what, int n_steps);
  ~bench_steps();
  void next(const std::string& step);

 private:
  std::unique_ptr<progress> shown_;
  int done_ = -1;
};

// A model that ships a tokenizer (the project's default, models/troupe-py-7m, for "") and a CPU
// executor of it with 1 GiB of 16-token KV blocks (threads 0: every core this process may use).
// `why` ends the refusal of a model without a tokenizer.
struct text_model {
  std::shared_ptr<const model_bundle> bundle;
  std::unique_ptr<executor> ex;
};
[[nodiscard]] result<text_model> load_text_model(const std::string& path, int threads, const std::string& why);

inline double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace troupe::bench
