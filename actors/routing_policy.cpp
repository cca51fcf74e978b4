#include "actors/routing_policy.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

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
  std::string name() const override { return "least-loaded"; }

 private:
  size_t next_ = 0;
};

class round_robin final : public routing_policy {
 public:
  size_t choose(const route_request_view&, std::span<const worker_view> w) override { return next_++ % w.size(); }
  std::string name() const override { return "round-robin"; }

 private:
  size_t next_ = 0;
};

class random_pick final : public routing_policy {
 public:
  explicit random_pick(uint64_t seed) : rng_(seed) {}
  size_t choose(const route_request_view&, std::span<const worker_view> w) override {
    return std::uniform_int_distribution<size_t>(0, w.size() - 1)(rng_);
  }
  std::string name() const override { return "random"; }

 private:
  std::mt19937_64 rng_;
};

class kv_aware final : public routing_policy {
 public:
  explicit kv_aware(const kv_policy_options& o) : o_(o), rng_(o.seed) {}

  size_t choose(const route_request_view& r, std::span<const worker_view> w) override {
    cost_.resize(w.size());
    double lo = INFINITY;
    for (size_t i = 0; i < w.size(); ++i) {
      cost_[i] = kv_cost(r, w[i], o_.overlap_score_weight);
      lo = std::min(lo, cost_[i]);
    }
    if (o_.temperature > 0) {
      // Softmax over costs in units of the request's cold cost: the best worker has weight 1.
      weight_.resize(w.size());
      const double cold = std::max(1.0, (o_.overlap_score_weight + 1) * static_cast<double>(r.request_blocks));
      double sum = 0;
      for (size_t i = 0; i < w.size(); ++i) {
        weight_[i] = std::exp(-(cost_[i] - lo) / cold / o_.temperature);
        sum += weight_[i];
      }
      double x = std::uniform_real_distribution<double>(0, sum)(rng_);
      for (size_t i = 0; i < w.size(); ++i) {
        x -= weight_[i];
        if (x < 0) return i;
      }
      return w.size() - 1;
    }
    // Lowest cost; ties: fewer active blocks, then one of the tied at random.
    tied_.clear();
    for (size_t i = 0; i < w.size(); ++i) {
      if (cost_[i] != lo) continue;
      if (!tied_.empty() && w[i].active_blocks > w[tied_[0]].active_blocks) continue;
      if (!tied_.empty() && w[i].active_blocks < w[tied_[0]].active_blocks) tied_.clear();
      tied_.push_back(i);
    }
    return tied_[std::uniform_int_distribution<size_t>(0, tied_.size() - 1)(rng_)];
  }
  std::string name() const override { return "kv"; }

 private:
  kv_policy_options o_;
  std::mt19937_64 rng_;
  std::vector<double> cost_, weight_;
  std::vector<size_t> tied_;
};

}  // namespace

double kv_cost(const route_request_view& r, const worker_view& w, double weight) {
  const int64_t overlap = std::min<int64_t>(w.overlap_blocks, r.request_blocks);
  const double prefill = static_cast<double>(r.request_blocks - overlap + w.queued_prefill_blocks);
  const double decode = static_cast<double>(w.active_blocks + r.request_blocks);
  return weight * prefill + decode;
}

std::unique_ptr<routing_policy> make_kv_policy(const kv_policy_options& o) { return std::make_unique<kv_aware>(o); }
std::unique_ptr<routing_policy> make_least_loaded_policy() { return std::make_unique<least_loaded>(); }
std::unique_ptr<routing_policy> make_round_robin_policy() { return std::make_unique<round_robin>(); }
std::unique_ptr<routing_policy> make_random_policy(uint64_t seed) { return std::make_unique<random_pick>(seed); }

result<routing_kind> parse_routing_kind(std::string_view n) {
  if (n == "kv") return routing_kind::kv;
  if (n == "least-loaded") return routing_kind::least_loaded;
  if (n == "round-robin") return routing_kind::round_robin;
  if (n == "random") return routing_kind::random;
  return make_error("--routing must be kv, least-loaded, round-robin or random, not " + std::string(n));
}

std::string_view to_string(routing_kind k) {
  switch (k) {
    case routing_kind::kv: return "kv";
    case routing_kind::least_loaded: return "least-loaded";
    case routing_kind::round_robin: return "round-robin";
    case routing_kind::random: return "random";
  }
  return "?";
}

std::unique_ptr<routing_policy> make_policy(routing_kind k, const kv_policy_options& kv) {
  switch (k) {
    case routing_kind::kv: return make_kv_policy(kv);
    case routing_kind::least_loaded: return make_least_loaded_policy();
    case routing_kind::round_robin: return make_round_robin_policy();
    case routing_kind::random: return make_random_policy(kv.seed);
  }
  return make_kv_policy(kv);
}

}  // namespace troupe
