#include "runtime/engine/draft_chooser.hpp"

#include <algorithm>
#include <cmath>

namespace troupe {

void draft_chooser::observe_step(int32_t n_tokens, double seconds, int32_t n_drafts) {
  if (seconds <= 0 || n_tokens <= 0) return;
  const double x = n_tokens;
  if (n_drafts == 0) {
    // A plain step's seconds per token, an outlier (a descheduled step) counted as kOutlier
    // times the mean so far.
    const double per = seconds / x;
    const double mean = plain_token_s();
    plain_tok_s_ = kForget * plain_tok_s_ + (mean > 0 ? std::min(per, kOutlier * mean) : per);
    plain_tok_w_ = kForget * plain_tok_w_ + 1;
  }
  // A step that took more than kOutlier times the fit's prediction (the process was descheduled
  // on a loaded machine) counts as that much only.
  const double y = fitted_ && a_ + b_ * x > 0 ? std::min(seconds, kOutlier * (a_ + b_ * x)) : seconds;
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

void draft_chooser::observe_catch_up(int64_t rows, double seconds) {
  if (rows <= 0 || seconds < 0) return;
  catch_up_s_ = kForget * catch_up_s_ + seconds;
  catch_up_rows_ = kForget * catch_up_rows_ + static_cast<double>(rows);
  c_ = catch_up_s_ / catch_up_rows_;
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

bool draft_chooser::may_pay(double alpha) const {
  const double tp = plain_token_s();
  if (drafter_tokens_ <= 0 || tp <= 0) return true;
  const double c_e = c_ * catch_up_per_token_;
  return alpha * tp > d_ + c_e * alpha;
}

std::vector<int32_t> draft_chooser::allocate(std::span<const double> alphas, std::span<const int32_t> caps, double a,
                                             double b, double d, double c_e, double margin) {
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
  std::vector<bool> done(B, false);  // its next draft did not pay: none further either
  double tokens = static_cast<double>(B), time = a + b * static_cast<double>(B);
  for (const cand& c : all) {
    if (done[c.s]) continue;
    const double cost = delta + c_e * (c.g + (k[c.s] == 0 ? 1.0 : 0.0));
    // Add iff g > R(n) cost, i.e. g * time > tokens * cost (no division by a zero time).
    if (!(c.g * time > margin * tokens * cost)) {
      done[c.s] = true;
      if (c_e <= 0) break;  // every later candidate gains less at the same cost
      continue;
    }
    ++k[c.s];
    tokens += c.g;
    time += cost;
  }
  return k;
}

std::vector<int32_t> draft_chooser::choose(std::span<const double> alphas, std::span<const int32_t> caps,
                                           std::span<const int32_t> owed) {
  std::vector<int32_t> k(caps.size(), 0);
  if (k.empty()) return k;
  // The sequence that would draft at least cost: room to draft, the least catch-up owed.
  // Among equals, in turn from one probe to the next.
  auto owes = [&](size_t s) { return owed.size() == caps.size() ? owed[s] : 0; };
  auto cheapest = [&]() -> size_t {
    size_t best = caps.size();
    for (size_t i = 0; i < caps.size(); ++i) {
      const size_t s = (i + probe_turn_) % caps.size();
      if (caps[s] > 0 && (best == caps.size() || owes(s) < owes(best))) best = s;
    }
    return best;
  };
  // A step that drafts nothing: counted idle; after kProbeEvery of them in a row, the cheapest
  // sequence drafts at the ceiling if that costs at most kProbeShare of their time.
  auto idle = [&](double step_s) {
    ++idle_steps_;
    idle_s_ += step_s;
    if (idle_steps_ < kProbeEvery) return k;
    const size_t s = cheapest();
    if (s == caps.size()) return k;
    const double probe_s = c_ * owes(s) + static_cast<double>(caps[s]) * (b_ + d_);
    if (probe_s > kProbeShare * idle_s_) return k;
    idle_steps_ = 0;
    idle_s_ = 0;
    ++probe_turn_;
    k[s] = caps[s];
    return k;
  };
  if (!fitted_ || unfitted_steps_ < kFitSteps) {
    // Alternately one sequence at the ceiling and nothing: two step sizes to fit a and b from
    // (a model drafter always fills its drafts, so drafting alone would time one size only);
    // nothing, probes aside, while that sequence's draft cannot pay whatever the fit (may_pay).
    const bool turn = unfitted_steps_++ % 2 == 0;
    const size_t s = cheapest();
    if (s == caps.size()) return k;
    if (!may_pay(alphas[s])) return idle(plain_token_s() * static_cast<double>(caps.size()));
    if (turn) {
      k[s] = caps[s];
      idle_steps_ = 0;
      idle_s_ = 0;
    }
    return k;
  }
  k = allocate(alphas, caps, a_, b_, d_, c_ * catch_up_per_token_, kMargin);
  bool any = false;
  for (size_t s = 0; s < k.size(); ++s) {
    if (!may_pay(alphas[s])) k[s] = 0;
    any |= k[s] > 0;
  }
  if (any) {
    idle_steps_ = 0;
    idle_s_ = 0;
    return k;
  }
  return idle(a_ + b_ * static_cast<double>(caps.size()));
}

}  // namespace troupe
