// autoscale_rule on a synthetic clock: the windowed load, the recommendation, the delays, the
// clamps and replication units.
#include "runtime/autoscale/autoscale_rule.hpp"

#include <gtest/gtest.h>

namespace troupe {
namespace {

autoscale_settings settings(int64_t target, int64_t lo, int64_t hi, double up, double down, double window) {
  autoscale_settings s;
  s.target_in_flight_tokens = target;
  s.min_replica = lo;
  s.max_replica = hi;
  s.scale_up_delay_s = up;
  s.scale_down_delay_s = down;
  s.window_s = window;
  return s;
}

TEST(load_window, is_the_time_weighted_mean_over_the_trailing_window) {
  load_window w;
  EXPECT_EQ(w.mean(5, 60), 0);
  w.observe(0, 100);
  EXPECT_EQ(w.mean(0, 60), 100);
  EXPECT_DOUBLE_EQ(w.mean(30, 60), 100);
  w.observe(30, 0);
  EXPECT_DOUBLE_EQ(w.mean(60, 60), 50);   // 30 s at 100, 30 s at 0
  EXPECT_DOUBLE_EQ(w.mean(75, 60), 25);   // [15, 75]: 15 s at 100, 45 s at 0
  EXPECT_DOUBLE_EQ(w.mean(200, 60), 0);   // the 100 has left the window
  w.observe(200, 300);
  w.observe(210, 600);
  EXPECT_DOUBLE_EQ(w.mean(220, 20), 450);  // 10 s at 300, 10 s at 600
  EXPECT_DOUBLE_EQ(w.mean(220, 0), 600);   // no window: the current value
}

TEST(load_window, a_repeated_or_backward_instant_replaces_the_last_sample_and_negatives_read_as_zero) {
  load_window w;
  w.observe(10, 100);
  w.observe(10, 200);
  w.observe(9, 300);
  EXPECT_EQ(w.last(), 300);
  w.observe(20, -5);
  EXPECT_EQ(w.last(), 0);
}

TEST(autoscale_rule, recommends_ceil_of_load_over_target_clamped) {
  autoscale_rule r(settings(1000, 1, 4, 0, 0, 0), {1});
  r.observe(0, 0, 0);
  EXPECT_EQ(r.decide(0, 1).recommended, 1);  // min_replica
  r.observe(1, 0, 2500);
  auto d = r.decide(1, 1);
  EXPECT_EQ(d.group_recommended.at(0), 3);
  EXPECT_EQ(d.recommended, 3);
  EXPECT_EQ(d.desired, 3);  // no delay: at once
  r.observe(2, 0, 1000);
  EXPECT_EQ(r.decide(2, 3).recommended, 1);  // exactly the target is one replica
  r.observe(3, 0, 9000);
  EXPECT_EQ(r.decide(3, 1).recommended, 4);  // max_replica
}

TEST(autoscale_rule, scales_up_only_after_the_demand_held_for_the_whole_delay) {
  autoscale_rule r(settings(1000, 1, 3, 10, 1e9, 0), {1});
  int64_t current = 1;
  // A 5-second burst does not scale.
  for (int t = 0; t <= 30; ++t) {
    r.observe(t, 0, t >= 12 && t < 17 ? 2500 : 100);
    auto d = r.decide(t, current);
    EXPECT_EQ(d.desired, 1) << "t=" << t;
  }
  // A burst that holds scales at its 10th second, to the least it asked for meanwhile.
  int64_t scaled_at = -1;
  for (int t = 31; t <= 60; ++t) {
    r.observe(t, 0, t < 35 ? 1500 : 2500);  // asks 2 from t=31, 3 from t=35
    auto d = r.decide(t, current);
    if (d.desired != current) {
      if (scaled_at < 0) {
        EXPECT_EQ(t, 41);
        EXPECT_EQ(d.desired, 2);  // t in [31, 41]: the least asked for is 2
      } else {
        EXPECT_EQ(t, 51);  // the second step waits a full delay after the first
        EXPECT_EQ(d.desired, 3);
      }
      current = d.desired;
      r.scaled(t);
      scaled_at = t;
    }
  }
  EXPECT_EQ(current, 3);
}

TEST(autoscale_rule, scales_down_after_the_delay_to_the_most_asked_for_meanwhile) {
  autoscale_rule r(settings(1000, 1, 4, 0, 100, 0), {1});
  int64_t current = 4;
  r.scaled(0);
  for (int t = 0; t <= 99; ++t) {
    r.observe(t, 0, t == 50 ? 2500 : 10);  // one spike asking for 3
    EXPECT_EQ(r.decide(t, current).desired, 4) << "t=" << t;
  }
  auto d = r.decide(100, current);
  EXPECT_EQ(d.desired, 3);  // the spike in the last 100 s still asks for 3
  current = 3;
  r.scaled(100);
  for (int t = 101; t < 200; ++t) {
    r.observe(t, 0, 10);
    EXPECT_EQ(r.decide(t, current).desired, 3) << "t=" << t;
  }
  r.observe(200, 0, 10);
  EXPECT_EQ(r.decide(200, current).desired, 1);
}

TEST(autoscale_rule, the_window_smooths_a_spike_before_the_rule_sees_it) {
  autoscale_rule r(settings(1000, 1, 4, 0, 0, 60), {1});
  for (int t = 0; t < 60; ++t) r.observe(t, 0, 0);
  r.observe(60, 0, 30000);  // 30 k tokens for one second of a 60-second window
  r.observe(61, 0, 0);
  EXPECT_EQ(r.decide(61, 1).recommended, 1);  // mean 500
  for (int t = 62; t <= 120; ++t) r.observe(t, 0, 3000);
  // [60, 120]: the spike's second, one at 0, 58 at 3000: mean 3400.
  EXPECT_EQ(r.decide(120, 1).recommended, 4);
  // [61, 121]: the spike has left: one second at 0, 59 at 3000: mean 2950.
  r.observe(121, 0, 3000);
  EXPECT_EQ(r.decide(121, 1).recommended, 3);
}

TEST(autoscale_rule, disaggregated_units_are_sized_by_the_phase_that_needs_more) {
  // A unit is 1 prefill and 2 decode workers; each phase is measured on its own.
  autoscale_rule r(settings(1000, 1, 8, 0, 0, 0), {1, 2});
  r.observe(0, 0, 1500);  // prefill: 2 units
  r.observe(0, 1, 3000);  // decode: 3000 / (1000 x 2) -> 2 units
  auto d = r.decide(0, 1);
  EXPECT_EQ(d.group_recommended, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(d.desired, 2);
  r.observe(1, 1, 5000);  // decode: 3 units
  d = r.decide(1, 2);
  EXPECT_EQ(d.group_recommended, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(d.desired, 3);
  r.observe(2, 0, 7200);  // prefill: 8 units
  EXPECT_EQ(r.decide(2, 3).desired, 8);
}

TEST(autoscale_rule, a_settings_change_takes_effect_at_the_next_decision) {
  autoscale_rule r(settings(1000, 1, 4, 0, 900, 0), {1});
  r.observe(0, 0, 3500);
  EXPECT_EQ(r.decide(0, 1).desired, 4);
  // max_replica lowered below the running count: down at once, whatever the delay.
  r.set_settings(settings(1000, 1, 2, 0, 900, 0));
  auto d = r.decide(1, 4);
  EXPECT_EQ(d.desired, 2);
  EXPECT_NE(d.reason.find("outside"), std::string::npos) << d.reason;
  // min_replica raised above it: up at once.
  r.set_settings(settings(1000, 3, 5, 0, 900, 0));
  EXPECT_EQ(r.decide(2, 2).desired, 3);
  // A larger target shrinks the recommendation; the down delay still applies.
  r.set_settings(settings(10000, 1, 5, 0, 900, 0));
  EXPECT_EQ(r.decide(3, 4).recommended, 1);
  EXPECT_EQ(r.decide(3, 4).desired, 4);
}

TEST(autoscale_rule, right_after_a_start_the_delay_passes_in_full) {
  autoscale_rule r(settings(1000, 1, 4, 30, 900, 0), {1});
  r.observe(1000, 0, 3500);
  for (int t = 1000; t < 1030; ++t) EXPECT_EQ(r.decide(t, 1).desired, 1) << "t=" << t;
  EXPECT_EQ(r.decide(1030, 1).desired, 4);
}

}  // namespace
}  // namespace troupe
