// autoscale_rule: token-based autoscaling's decision rule, on a clock the caller supplies.
//
// What it owns: the load history of each replica group (in-flight tokens: prompt + expected
// output tokens of admitted, unfinished requests), the history of its own recommendations,
// and the rule that turns them into a replica count. What it does not own: reading the load
// (the autoscaler actor asks the router), starting or draining replicas (node agents), time
// (every call takes `now` in seconds, so tests run on a synthetic clock), or CAF.
//
// The rule (autoscaling_settings of the reference; README "Autoscaling"):
// - load: the time-weighted mean of a group's in-flight tokens over the last
//   `autoscaling_window` seconds (each sample holds until the next one).
// - recommendation: ceil(load / (target_in_flight_tokens x workers of the group per unit)),
//   the most any group asks for, clamped to [min_replica, max_replica]. Aggregated serving has
//   one group of one worker per unit; disaggregated serving has a prefill and a decode group
//   whose worker counts make up one replication unit, and the rule scales whole units
//   (the reference: "the autoscaler scales the number of units, not individual pods"), sized
//   by whichever phase needs more of them.
// - scale up to the least recommendation of the last `scale_up_delay` seconds when that is
//   above the current count (the demand has held for the whole delay); scale down to the
//   greatest recommendation of the last `scale_down_delay` seconds when that is below it.
//   A delay of 0 acts on the current recommendation. Recommendations are only trusted over
//   a span the rule has seen: right after a start or a scale event, a delay must pass in full.
// - a settings change takes effect at the next decision; history is kept.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace troupe {

struct autoscale_settings {
  int64_t target_in_flight_tokens = 50000;
  int64_t min_replica = 1;
  int64_t max_replica = 1;
  double scale_up_delay_s = 0;
  double scale_down_delay_s = 900;
  double window_s = 60;
};

// One group's in-flight tokens over time, averaged over a trailing window.
class load_window {
 public:
  void observe(double now, double in_flight_tokens);
  // The time-weighted mean over [now - window, now]; before any sample, 0. Samples older than
  // the window (except the one that holds at its start) are dropped.
  double mean(double now, double window);
  double last() const { return samples_.empty() ? 0 : samples_.back().value; }

 private:
  struct sample {
    double t, value;
  };
  std::deque<sample> samples_;
};

struct autoscale_decision {
  int64_t current = 0;
  int64_t recommended = 0;  // this instant's recommendation, clamped
  int64_t desired = 0;      // what the delays allow: current, or the count to move to
  std::vector<double> group_load;             // each group's windowed mean, in tokens
  std::vector<int64_t> group_recommended;     // each group's own ceil(load / (target x workers))
  std::string reason;                         // one line for the decision log
};

class autoscale_rule {
 public:
  // workers_per_unit: one entry per group (aggregated: {1}; disaggregated: {prefill, decode}).
  autoscale_rule(autoscale_settings s, std::vector<int64_t> workers_per_unit);

  void set_settings(const autoscale_settings& s) { settings_ = s; }
  const autoscale_settings& settings() const { return settings_; }
  size_t groups() const { return groups_.size(); }

  void observe(double now, size_t group, double in_flight_tokens);
  // What to do with `current` units now. The caller carries out desired != current and then
  // calls scaled(now) so that the next move waits for its delay again.
  autoscale_decision decide(double now, int64_t current);
  void scaled(double now);

 private:
  struct recommendation {
    double t;
    int64_t units;
  };
  int64_t clamp(int64_t units) const;

  autoscale_settings settings_;
  std::vector<int64_t> workers_per_unit_;
  std::vector<load_window> groups_;
  std::deque<recommendation> history_;
  double trusted_since_ = -1;  // start of the span whose recommendations count; -1: none yet
};

}  // namespace troupe
