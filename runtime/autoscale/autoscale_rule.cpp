#include "runtime/autoscale/autoscale_rule.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace troupe {

void load_window::observe(double now, double in_flight_tokens) {
  if (!samples_.empty() && now <= samples_.back().t) {
    samples_.back().value = in_flight_tokens;  // the same instant, or a clock that went back
    return;
  }
  samples_.push_back({now, std::max(0.0, in_flight_tokens)});
}

double load_window::mean(double now, double window) {
  if (samples_.empty()) return 0;
  const double start = now - std::max(0.0, window);
  // Keep the sample that holds at the window's start, drop the ones before it.
  while (samples_.size() > 1 && samples_[1].t <= start) samples_.pop_front();
  const double from = std::max(start, samples_.front().t);
  if (now <= from) return samples_.back().value;
  double area = 0;
  for (size_t i = 0; i < samples_.size(); ++i) {
    const double a = std::max(from, samples_[i].t);
    const double b = i + 1 < samples_.size() ? std::min(now, samples_[i + 1].t) : now;
    if (b > a) area += samples_[i].value * (b - a);
  }
  return area / (now - from);
}

autoscale_rule::autoscale_rule(autoscale_settings s, std::vector<int64_t> workers_per_unit)
    : settings_(s), workers_per_unit_(std::move(workers_per_unit)), groups_(workers_per_unit_.size()) {
  for (auto& w : workers_per_unit_) w = std::max<int64_t>(1, w);
}

void autoscale_rule::observe(double now, size_t group, double in_flight_tokens) {
  groups_.at(group).observe(now, in_flight_tokens);
}

int64_t autoscale_rule::clamp(int64_t units) const {
  const int64_t lo = std::max<int64_t>(0, settings_.min_replica);
  const int64_t hi = std::max(lo, settings_.max_replica);
  return std::clamp(units, lo, hi);
}

autoscale_decision autoscale_rule::decide(double now, int64_t current) {
  autoscale_decision d;
  d.current = current;
  const double target = static_cast<double>(std::max<int64_t>(1, settings_.target_in_flight_tokens));
  int64_t want = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const double load = groups_[g].mean(now, settings_.window_s);
    const auto units = static_cast<int64_t>(std::ceil(load / (target * static_cast<double>(workers_per_unit_[g])) - 1e-9));
    d.group_load.push_back(load);
    d.group_recommended.push_back(units);
    want = std::max(want, units);
  }
  d.recommended = clamp(want);
  if (!history_.empty() && history_.back().t >= now) history_.pop_back();
  history_.push_back({now, d.recommended});
  if (trusted_since_ < 0) trusted_since_ = now;
  const double keep = std::max(settings_.scale_up_delay_s, settings_.scale_down_delay_s);
  while (!history_.empty() && history_.front().t < now - keep) history_.pop_front();

  d.desired = current;
  // Bounds first: a count outside [min, max] (a settings change, a lost replica) moves at once.
  if (current != clamp(current)) {
    d.desired = clamp(current);
    d.reason = fmt::format("{} replicas is outside [{}, {}]: {}", current, settings_.min_replica,
                           settings_.max_replica, d.desired);
    return d;
  }
  auto extreme_since = [&](double delay, bool least) {
    int64_t v = least ? std::numeric_limits<int64_t>::max() : std::numeric_limits<int64_t>::min();
    for (const auto& r : history_)
      if (r.t >= now - delay) v = least ? std::min(v, r.units) : std::max(v, r.units);
    return v;
  };
  const double seen = now - trusted_since_;
  if (seen >= settings_.scale_up_delay_s) {
    const int64_t up = extreme_since(settings_.scale_up_delay_s, true);
    if (up > current) {
      d.desired = up;
      d.reason = fmt::format("up {} -> {}: at least {} units recommended for {}s (load {:.0f})", current, up, up,
                             settings_.scale_up_delay_s, fmt::join(d.group_load, "/"));
      return d;
    }
  }
  if (seen >= settings_.scale_down_delay_s) {
    const int64_t down = extreme_since(settings_.scale_down_delay_s, false);
    if (down < current) {
      d.desired = down;
      d.reason = fmt::format("down {} -> {}: at most {} units recommended for {}s (load {:.0f})", current, down, down,
                             settings_.scale_down_delay_s, fmt::join(d.group_load, "/"));
      return d;
    }
  }
  d.reason = d.recommended == current ? "steady" : "waiting for the delay";
  return d;
}

void autoscale_rule::scaled(double now) {
  history_.clear();
  trusted_since_ = now;
}

}  // namespace troupe
