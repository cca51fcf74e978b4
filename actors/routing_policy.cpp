#include "actors/routing_policy.hpp"

#include <tuple>

namespace troupe {
namespace {

class least_loaded final : public routing_policy {
 public:
  size_t choose(const route_request_view&, std::span<const worker_view> w) override {
    size_t best = 0;
    bool found = false;
    // Start the scan after the last pick so that equal workers take turns.
    for (size_t k = 0; k < w.size(); ++k) {
      const size_t i = (next_ + k) % w.size();
      if (!found || std::tie(w[i].in_flight_tokens, w[i].in_flight_requests) <
                        std::tie(w[best].in_flight_tokens, w[best].in_flight_requests)) {
        best = i;
        found = true;
      }
    }
    next_ = best + 1;
    return best;
  }
  std::string name() const override { return "least_loaded"; }

 private:
  size_t next_ = 0;
};

}  // namespace

std::unique_ptr<routing_policy> make_least_loaded_policy() { return std::make_unique<least_loaded>(); }

}  // namespace troupe
