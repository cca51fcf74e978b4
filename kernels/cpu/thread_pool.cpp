#include "kernels/cpu/thread_pool.hpp"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace troupe::cpu {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// How long a worker spins for the next loop before it sleeps: long enough to cover the
// gap between the kernels of one forward, short enough not to burn a core when idle.
constexpr auto spin_for = std::chrono::microseconds(200);

}  // namespace

thread_pool::thread_pool(int n_threads) : n_threads_(std::max(1, n_threads)) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

thread_pool::~thread_pool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void thread_pool::run(const std::function<void(int)>& fn) {
  if (n_threads_ == 1) {
    fn(0);
    return;
  }
  job_ = &fn;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  fn(0);
  while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
}

void thread_pool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    const auto spin_start = std::chrono::steady_clock::now();
    uint64_t g;
    int spins = 0;
    while ((g = generation_.load(std::memory_order_acquire)) == seen) {
      cpu_relax();
      if (++spins % 256 == 0 && std::chrono::steady_clock::now() - spin_start > spin_for) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
    }
    seen = g;
    if (stop_.load()) return;
    (*job_)(index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void thread_pool::parallel_for(int64_t n, int64_t grain,
                               const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t n_chunks = (n + grain - 1) / grain;
  const int64_t threads = std::min<int64_t>(n_threads_, n_chunks);
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  run([&](int t) {
    if (t >= threads) return;
    const int64_t per = n_chunks / threads, extra = n_chunks % threads;
    const int64_t c0 = t * per + std::min<int64_t>(t, extra);
    const int64_t c1 = c0 + per + (t < extra ? 1 : 0);
    const int64_t b = c0 * grain, e = std::min(n, c1 * grain);
    if (b < e) fn(b, e);
  });
}

}  // namespace troupe::cpu
