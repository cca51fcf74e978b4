// thread_pool: a fixed set of worker threads that run one parallel loop at a time; the
// forward pass runs hundreds of short loops a step, so workers spin briefly before sleeping.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace troupe::cpu {

class thread_pool {
 public:
  // n_threads counts the calling thread: n_threads - 1 workers are started.
  explicit thread_pool(int n_threads);
  ~thread_pool();
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(thread_index) on every thread (the caller is index 0) and waits for all.
  // Only one thread may call run at a time (the owner of the pool).
  void run(const std::function<void(int)>& fn);

  // Splits [0, n) into contiguous chunks aligned to `grain`, one per thread, and runs
  // fn(begin, end) on each.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker(int index);

  int n_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;  // written by run() before the generation bump
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

}  // namespace troupe::cpu
