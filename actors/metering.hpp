// metering: per-actor counters (messages handled, time spent handling them) kept in each
// actor's state and reported as actor_stats; the mailbox size is read when reporting.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace troupe {

struct actor_meter {
  std::string node;
  std::string actor;
  std::string role;
  int64_t messages = 0;
  double seconds = 0;
};

// Counts one message and the time until it goes out of scope.
class metered {
 public:
  explicit metered(actor_meter& m) : m_(m), t0_(std::chrono::steady_clock::now()) {}
  ~metered() {
    ++m_.messages;
    m_.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  }
  metered(const metered&) = delete;
  metered& operator=(const metered&) = delete;

 private:
  actor_meter& m_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace troupe
