// Proves the Prometheus rendering: every metric family DESIGN.md names is exported, finished
// requests move the token counters and histograms by what they carried, failed ones only the
// in-flight gauge, actor reports become labelled series, speculation_rate is the percentage of
// draft tokens accepted (per decoding type, over the workers that draft), and Prometheus's own
// promtool accepts the whole text.
#include "actors/metrics.hpp"

#include <cstdio>
#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "actors/protocol.hpp"

namespace troupe {
namespace {

std::string render_with_two_actors(metrics& m) {
  router_stats r;
  r.workers = {"n/w0", "n/w1"};
  r.models = {"m", "m"};
  r.alive = {1, 0};
  r.in_flight_tokens = {10, 0};
  r.worker_prompt_tokens = {100, 0};
  r.worker_cached_tokens = {40, 0};
  r.kv_events = {3, 0};
  r.kv_event_gaps = {0, 0};
  r.kv_cached_blocks = {5, 0};
  actor_stats a;
  a.node = "n";
  a.actor = "n/w0";
  a.role = "worker";
  a.mailbox_size = 7;
  a.messages_total = 42;
  a.handling_seconds = 1.5;
  actor_stats b = a;
  b.actor = "n/router";
  b.role = "router";
  b.mailbox_size = 0;
  return m.render(r, {a, b});
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

TEST(metrics, every_family_design_names_is_exported) {
  metrics m;
  m.request_started("m");
  m.request_finished("m", 10, 5, 0.5, true);
  const std::string text = render_with_two_actors(m);
  for (const char* name :
       {"tps_per_request", "input_tokens", "output_tokens", "input_tokens_per_request", "output_tokens_per_request",
        "concurrent_requests", "speculation_rate", "cpu_usage", "memory_usage", "gpu_usage", "gpu_memory_usage",
        "replica_count_by_status", "kv_cache_hit_rate", "kv_cache_hit_rate_skew", "kv_cache_best_prefix_hit_rate",
        "kv_cache_hit_rate_efficiency", "actor_mailbox_size", "actor_messages_total", "actor_message_seconds"})
    EXPECT_NE(text.find("# TYPE " + std::string(name) + " "), std::string::npos) << name;
}

TEST(metrics, finished_requests_move_the_counters_by_what_they_carried) {
  metrics m;
  m.request_started("m");
  m.request_started("m");
  m.request_started("m");
  m.request_finished("m", 10, 5, 0.5, true);
  m.request_finished("m", 20, 7, 1.0, true);
  m.request_finished("m", 1000, 1000, 1.0, false);  // failed: only the in-flight gauge moves
  const std::string text = render_with_two_actors(m);
  EXPECT_TRUE(has_line(text, "input_tokens_total{model=\"m\"} 30")) << text;
  EXPECT_TRUE(has_line(text, "output_tokens_total{model=\"m\"} 12")) << text;
  EXPECT_TRUE(has_line(text, "concurrent_requests{model=\"m\"} 0")) << text;
  EXPECT_TRUE(has_line(text, "tps_per_request_count{model=\"m\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "output_tokens_per_request_sum{model=\"m\"} 12")) << text;
}

TEST(metrics, actor_reports_become_labelled_series) {
  metrics m;
  const std::string text = render_with_two_actors(m);
  EXPECT_TRUE(has_line(text, "actor_mailbox_size{node=\"n\",actor=\"n/w0\",role=\"worker\"} 7")) << text;
  EXPECT_TRUE(has_line(text, "actor_messages_total{node=\"n\",actor=\"n/router\",role=\"router\"} 42")) << text;
  EXPECT_TRUE(has_line(text, "actor_message_seconds_sum{node=\"n\",actor=\"n/w0\",role=\"worker\"} 1.5")) << text;
  EXPECT_TRUE(has_line(text, "replica_count_by_status{model=\"m\",status=\"active\"} 1")) << text;
  EXPECT_TRUE(has_line(text, "replica_count_by_status{model=\"m\",status=\"lost\"} 1")) << text;
}

TEST(metrics, replica_lifecycle_and_the_autoscaler_become_labelled_series) {
  metrics m;
  router_stats r;
  r.workers = {"n/w0", "n/w1", "n/w2", "n/w3"};
  r.models = {"m", "m", "m", "m"};
  r.alive = {1, 1, 0, 0};
  r.status = {"active", "draining", "stopped", "lost"};
  autoscaler_report a;
  a.model = "m";
  a.settings.target_in_flight_tokens = 300;
  a.in_flight_tokens = 900;
  a.window_mean = 450;
  a.desired = 3;
  a.current = 3;
  a.starting = 2;
  a.starting_workers = 2;  // aggregated: one worker per replica
  a.scale_ups = 2;
  a.scale_downs = 1;
  r.autoscalers = {a};
  const std::string text = m.render(r, {});
  for (auto [status, n] : {std::pair{"starting", 2}, {"active", 1}, {"draining", 1}, {"stopped", 1}, {"lost", 1}})
    EXPECT_TRUE(has_line(text, fmt::format("replica_count_by_status{{model=\"m\",status=\"{}\"}} {}", status, n))) << text;
  const std::string l = "model=\"m\",group=\"aggregated\"";
  EXPECT_TRUE(has_line(text, "autoscaler_in_flight_tokens{" + l + "} 900")) << text;
  EXPECT_TRUE(has_line(text, "autoscaler_in_flight_tokens_windowed{" + l + "} 450")) << text;
  EXPECT_TRUE(has_line(text, "autoscaler_target_in_flight_tokens{" + l + "} 300")) << text;
  EXPECT_TRUE(has_line(text, "autoscaler_desired_replicas{" + l + "} 3")) << text;
  EXPECT_TRUE(has_line(text, "autoscaler_current_replicas{" + l + "} 3")) << text;
  EXPECT_TRUE(has_line(text, "autoscaler_scale_events_total{" + l + ",direction=\"up\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "autoscaler_scale_events_total{" + l + ",direction=\"down\"} 1")) << text;
}

TEST(metrics, speculation_rate_is_the_percentage_of_draft_tokens_accepted_per_decoding_type) {
  metrics m;
  EXPECT_TRUE(has_line(render_with_two_actors(m), "speculation_rate 0")) << "0 while no worker drafts";
  router_stats r;
  std::vector<actor_stats> workers(2);
  for (size_t i = 0; i < workers.size(); ++i) {
    actor_stats& a = workers[i];
    a.node = "n";
    a.actor = "n/w" + std::to_string(i);
    a.role = "worker";
    a.decoding_type = "NGram";
    a.draft_tokens = 40;
    a.accepted_draft_tokens = i == 0 ? 10 : 20;
    a.accepted_length = make_histogram({1, 2, 3});
    observe(a.accepted_length, 1);
    observe(a.accepted_length, 3);
  }
  const std::string text = m.render(r, workers);
  EXPECT_TRUE(has_line(text, "speculation_rate{decoding_type=\"NGram\"} 37.5")) << text;  // 30 of 80
  EXPECT_TRUE(has_line(text, "speculative_draft_tokens_total{decoding_type=\"NGram\"} 80")) << text;
  EXPECT_TRUE(has_line(text, "speculative_accepted_tokens_total{decoding_type=\"NGram\"} 30")) << text;
  EXPECT_TRUE(has_line(text, "speculative_accepted_length_count{decoding_type=\"NGram\"} 4")) << text;
  EXPECT_TRUE(has_line(text, "speculative_accepted_length_bucket{decoding_type=\"NGram\",le=\"1\"} 2")) << text;
  EXPECT_NE(text.find("# HELP speculation_rate The percentage of draft tokens accepted by the main model"), std::string::npos);
}

TEST(metrics, promtool_accepts_the_text) {
  metrics m;
  m.request_started("m");
  m.request_finished("m", 10, 5, 0.5, true);
  const std::string text = render_with_two_actors(m);
  const std::string path = ::testing::TempDir() + "/troupe_metrics.txt";
  std::ofstream(path) << text;
  FILE* p = popen(("promtool check metrics < '" + path + "' 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int rc = pclose(p);
  EXPECT_EQ(rc, 0) << out;
}

}  // namespace
}  // namespace troupe
