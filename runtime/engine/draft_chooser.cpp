#include "runtime/engine/draft_chooser.hpp"

#include <algorithm>
#include <cmath>

namespace troupe {

void draft_chooser::observe_step(int32_t n_tokens, double seconds) {
  if (seconds <= 0 || n_tokens <= 0) return;
  const double x = n_tokens, y = seconds;
  sw_ = kForget * sw_ + 1;
  sx_ = kForget * sx_ + x;
  sy_ = kForget * sy_ + y;
  sxx_ = kForget * sxx_ + x * x;
  sxy_ = kForget * sxy_ + x * y;
  const double mx = sx_ / sw_, my = sy_ / sw_;
  const double vxx = sxx_ / sw_ - mx * mx;
  // Refit only where the steps seen differ in size enough to split a from b (else the last
  // fit stands).
  if (vxx < 0.25) return;
  const double b = std::max(0.0, (sxy_ / sw_ - mx * my) / vxx);
  a_ = std::max(0.0, my - b * mx);
  b_ = b;
  fitted_ = true;
}

void draft_chooser::observe_drafter(int32_t n_drafted, double seconds) {
  if (n_drafted <= 0 || seconds < 0) return;
  drafter_s_ = kForget * drafter_s_ + seconds;
  drafter_tokens_ = kForget * drafter_tokens_ + n_drafted;
  d_ = drafter_s_ / drafter_tokens_;
}

void draft_chooser::observe_verify(spec_acceptance& acc, int32_t drafted, int32_t accepted) {
  if (drafted <= 0) return;
  const double trials = accepted + (accepted < drafted ? 1 : 0);
  acc.hits = kSequenceDecay * acc.hits + accepted;
  acc.trials = kSequenceDecay * acc.trials + trials;
  hits_ = kDrafterDecay * hits_ + accepted;
  trials_ = kDrafterDecay * trials_ + trials;
}

double draft_chooser::alpha(const spec_acceptance& acc) const {
  const double a = (acc.hits + kPriorWeight * alpha_drafter()) / (acc.trials + kPriorWeight);
  return std::clamp(a, 0.0, 0.999);
}

std::vector<int32_t> draft_chooser::allocate(std::span<const double> alphas, std::span<const int32_t> caps, double a,
                                             double b, double d) {
  const size_t B = alphas.size();
  std::vector<int32_t> k(B, 0);
  if (B == 0) return k;
  struct cand {
    double g;
    size_t s;
  };
  std::vector<cand> all;
  for (size_t s = 0; s < B; ++s) {
    double g = 1;
    for (int32_t j = 1; j <= caps[s]; ++j) {
      g *= alphas[s];
      all.push_back({g, s});
    }
  }
  // Falling gain; within one sequence the order is j's (equal gains keep their order).
  std::stable_sort(all.begin(), all.end(), [](const cand& x, const cand& y) { return x.g > y.g; });
  const double delta = b + d;
  double tokens = static_cast<double>(B), time = a + b * static_cast<double>(B);
  for (const cand& c : all) {
    // Add iff g > R(n) Delta, i.e. g * time > tokens * delta (no division by a zero time).
    if (!(c.g * time > tokens * delta)) break;
    ++k[c.s];
    tokens += c.g;
    time += delta;
  }
  return k;
}

std::vector<int32_t> draft_chooser::choose(std::span<const double> alphas, std::span<const int32_t> caps) {
  std::vector<int32_t> k;
  if (!fitted_) {
    // Alternately the ceiling and nothing: two step sizes to fit a and b from at once (a model
    // drafter always fills its drafts, so drafting alone would time one size only).
    if (unfitted_steps_++ % 2 == 0) k.assign(caps.begin(), caps.end());
    else k.assign(caps.size(), 0);
    return k;
  } else {
    k = allocate(alphas, caps, a_, b_, d_);
  }
  bool any = false;
  for (int32_t x : k) any |= x > 0;
  if (any || k.empty()) {
    idle_steps_ = 0;
    return k;
  }
  if (++idle_steps_ >= kProbeEvery) {
    idle_steps_ = 0;
    const size_t s = static_cast<size_t>(probe_turn_++ % k.size());
    k[s] = caps[s];
  }
  return k;
}

}  // namespace troupe
