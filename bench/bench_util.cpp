#include "bench/bench_util.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <thread>

#include "kernels/cpu/thread_pool.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/executor.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/progress.hpp"

namespace troupe::bench {

double triad_bandwidth(cpu::thread_pool& pool, size_t n, int reps) {
  std::unique_ptr<double[]> a(new double[n]), b(new double[n]), c(new double[n]);
  const auto count = static_cast<int64_t>(n);
  // First touch on the threads that will use each part (NUMA-friendly, pages mapped).
  pool.parallel_for(count, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      a[static_cast<size_t>(i)] = 0.0;
      b[static_cast<size_t>(i)] = 1.0;
      c[static_cast<size_t>(i)] = 2.0;
    }
  });
  double best = 1e30;
  const double s = 3.0;
  for (int r = 0; r < reps; ++r) {
    const auto t = std::chrono::steady_clock::now();
    pool.parallel_for(count, 4096, [&](int64_t i0, int64_t i1) {
      double* __restrict pa = a.get();
      const double* __restrict pb = b.get();
      const double* __restrict pc = c.get();
      for (int64_t i = i0; i < i1; ++i) pa[i] = pb[i] + s * pc[i];
    });
    best = std::min(best, seconds_since(t));
  }
  volatile double sink = a[n / 2];
  (void)sink;
  return 24.0 * static_cast<double>(n) / best;
}

size_t peak_rss_bytes() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<size_t>(u.ru_maxrss) * 1024;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

double mean(const std::vector<double>& v) {
  return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

decode_driver::decode_driver(executor& ex, int batch, int blocks_per_seq, int context, int64_t n_vocab)
    : ex_(ex), tables_(static_cast<size_t>(batch)), context_(context), n_vocab_(n_vocab) {
  for (size_t s = 0; s < tables_.size(); ++s) {
    tables_[s].resize(static_cast<size_t>(blocks_per_seq));
    std::iota(tables_[s].begin(), tables_[s].end(), static_cast<int32_t>(s) * blocks_per_seq);
  }
}

status decode_driver::run_steps(int steps, int first) {
  for (int step = 0; step < steps; ++step) {
    forward_batch b;
    for (size_t s = 0; s < tables_.size(); ++s) {
      const auto t = static_cast<token_id>((static_cast<int64_t>(s) * 131 + step * 7) % n_vocab_);
      b.add(context_ + first + step, std::span(&t, 1), tables_[s], 1);
    }
    TROUPE_CHECK(ex_.forward(b, logits_));
  }
  return {};
}

bench_steps::bench_steps(std::string what, int n_steps)
    : shown_(std::make_unique<progress>(std::move(what), n_steps, "steps", stderr, progress_style_for(stderr), 0.0)) {}
bench_steps::~bench_steps() = default;

void bench_steps::next(const std::string& step) { shown_->set(++done_, step); }

result<text_model> load_text_model(const std::string& path, int threads, const std::string& why) {
  TROUPE_TRY(model_bundle m, load_model(path.empty() ? default_model_path() : path));
  if (!m.tok) return make_error("the model ships no tokenizer: " + why);
  auto bundle = std::make_shared<const model_bundle>(std::move(m));
  cpu_executor_options eo;
  eo.n_threads = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  eo.kv_block_size = 16;
  eo.kv_cache_bytes = size_t{1} << 30;
  TROUPE_TRY(std::unique_ptr<executor> ex, make_cpu_executor(bundle->weights, eo));
  return text_model{std::move(bundle), std::move(ex)};
}

}  // namespace troupe::bench
