// Proves the routing policies on synthetic worker views: least loaded picks the fewest
// in-flight tokens (ties: requests, then turns); the KV-aware cost is the stated formula, the
// overlap weight and the temperature change the choice as it says, ties go to fewer active
// blocks, and a burst of requests with one new prefix spreads once each decision counts at
// once; round robin and random spread evenly.
#include "actors/routing_policy.hpp"

#include <cmath>
#include <map>

#include <gtest/gtest.h>

namespace troupe {
namespace {

TEST(routing_policy, least_loaded_picks_fewest_in_flight_tokens) {
  auto p = make_least_loaded_policy();
  std::vector<worker_view> w = {{"a", 500, 2, 100}, {"b", 120, 9, 100}, {"c", 300, 1, 100}};
  std::vector<int32_t> prompt = {1, 2, 3};
  EXPECT_EQ(p->choose({prompt, 16}, w), 1u);
  w[1].in_flight_tokens = 300;  // tie with c on tokens: fewer requests wins
  EXPECT_EQ(p->choose({prompt, 16}, w), 2u);
}

TEST(routing_policy, equal_workers_take_turns) {
  auto p = make_least_loaded_policy();
  std::vector<worker_view> w = {{"a", 0, 0, 1}, {"b", 0, 0, 1}, {"c", 0, 0, 1}};
  std::map<size_t, int> seen;
  for (int i = 0; i < 9; ++i) ++seen[p->choose({{}, 1}, w)];
  EXPECT_EQ(seen, (std::map<size_t, int>{{0, 3}, {1, 3}, {2, 3}}));
}

worker_view kv_view(std::string_view name, int32_t overlap, int64_t active, int64_t queued) {
  worker_view v;
  v.name = name;
  v.kv_blocks_total = 1000;
  v.overlap_blocks = overlap;
  v.active_blocks = active;
  v.queued_prefill_blocks = queued;
  return v;
}

TEST(routing_policy, kv_cost_is_the_stated_formula) {
  route_request_view r{{}, 16, 10};
  // prefill = (10 - 8) + 5 = 7, decode = 30 + 10 = 40
  EXPECT_DOUBLE_EQ(kv_cost(r, kv_view("a", 8, 30, 5), 3.5), 3.5 * 7 + 40);
  // An overlap beyond the request counts as the whole request.
  EXPECT_DOUBLE_EQ(kv_cost(r, kv_view("a", 12, 0, 0), 2.0), 2.0 * 0 + 10);
}

TEST(routing_policy, the_overlap_weight_trades_cache_hits_for_balance) {
  // a holds 8 of the request's 10 blocks but is busy; b holds nothing and is idle.
  std::vector<worker_view> w = {kv_view("a", 8, 30, 0), kv_view("b", 0, 0, 0)};
  route_request_view r{{}, 16, 10};
  kv_policy_options o;
  o.temperature = 0;
  o.overlap_score_weight = 3.5;  // a: 3.5 x 2 + 40 = 47, b: 3.5 x 10 + 10 = 45
  EXPECT_EQ(make_kv_policy(o)->choose(r, w), 1u);
  o.overlap_score_weight = 5;  // a: 50, b: 60
  EXPECT_EQ(make_kv_policy(o)->choose(r, w), 0u);
  o.overlap_score_weight = 0;  // pure balance
  EXPECT_EQ(make_kv_policy(o)->choose(r, w), 1u);
}

TEST(routing_policy, temperature_samples_by_the_softmax_of_costs_in_units_of_the_cold_cost) {
  std::vector<worker_view> w = {kv_view("best", 10, 0, 0), kv_view("worst", 0, 0, 0), kv_view("mid", 5, 0, 0)};
  route_request_view r{{}, 16, 10};
  for (double t : {0.0, 0.05, 0.5, 2.0}) {
    kv_policy_options o;
    o.temperature = t;
    o.seed = 3;
    auto p = make_kv_policy(o);
    std::map<size_t, int> seen;
    const int n = 30000;
    for (int i = 0; i < n; ++i) ++seen[p->choose(r, w)];
    // Costs 10, 45 and 27.5; the cold cost is (3.5 + 1) x 10 = 45.
    const double cold = 45, w1 = t > 0 ? std::exp(-(45 - 10) / cold / t) : 0,
                 w2 = t > 0 ? std::exp(-(27.5 - 10) / cold / t) : 0, sum = 1 + w1 + w2;
    EXPECT_NEAR(seen[0] / double(n), 1 / sum, 0.015) << "t " << t;
    EXPECT_NEAR(seen[1] / double(n), w1 / sum, 0.015) << "t " << t;
    EXPECT_NEAR(seen[2] / double(n), w2 / sum, 0.015) << "t " << t;
  }
  // Equal costs at any temperature above 0: uniform.
  std::vector<worker_view> same = {kv_view("a", 0, 0, 0), kv_view("b", 0, 0, 0)};
  kv_policy_options o;
  auto p = make_kv_policy(o);
  int first = 0;
  for (int i = 0; i < 10000; ++i) first += p->choose(r, same) == 0;
  EXPECT_NEAR(first / 10000.0, 0.5, 0.03);
}

TEST(routing_policy, the_worker_holding_the_prefix_keeps_its_share_among_many_cold_idle_workers) {
  // 256 workers: one holds 24 of the request's 32 blocks, 255 hold nothing and are idle. At the
  // default temperature the holder is chosen nearly always, as with 4 workers; once it is busy
  // enough to cost more than a cold prefill, the idle workers take the request.
  route_request_view r{{}, 16, 32};
  for (size_t n_workers : {4u, 256u}) {
    std::vector<worker_view> w;
    w.push_back(kv_view("holder", 24, 0, 0));
    for (size_t i = 1; i < n_workers; ++i) w.push_back(kv_view("cold", 0, 0, 0));
    kv_policy_options o;
    o.seed = 5;
    auto p = make_kv_policy(o);
    int holder = 0;
    for (int i = 0; i < 4000; ++i) holder += p->choose(r, w) == 0;
    EXPECT_GT(holder, 3960) << n_workers << " workers";
    w[0].active_blocks = 200;  // 3.5 x 8 + 232 = 260 against a cold worker's 3.5 x 32 + 32 = 144
    holder = 0;
    for (int i = 0; i < 4000; ++i) holder += p->choose(r, w) == 0;
    EXPECT_LT(holder, 40) << n_workers << " workers";
  }
}

TEST(routing_policy, ties_go_to_fewer_active_blocks_then_at_random) {
  route_request_view r{{}, 16, 10};
  kv_policy_options o;
  o.temperature = 0;
  o.overlap_score_weight = 1;
  // a: 1 x (10 - 4) + 4 + 10 = 20; b: 1 x 10 + 0 + 10 = 20; c: 1 x 10 + 0 + 10 = 20.
  std::vector<worker_view> w = {kv_view("a", 4, 4, 0), kv_view("b", 0, 0, 0), kv_view("c", 0, 0, 0)};
  auto p = make_kv_policy(o);
  std::map<size_t, int> seen;
  for (int i = 0; i < 2000; ++i) ++seen[p->choose(r, w)];
  EXPECT_EQ(seen.count(0), 0u) << "a has more blocks in use";
  EXPECT_GT(seen[1], 800);
  EXPECT_GT(seen[2], 800);
}

TEST(routing_policy, a_burst_with_one_new_prefix_spreads_when_decisions_count_at_once) {
  // What the router does per decision: the chosen worker's active and queued-prefill blocks
  // grow by the request's, and it is predicted to hold the prefix.
  for (double t : {0.0, 0.05}) {
    kv_policy_options o;
    o.temperature = t;
    auto p = make_kv_policy(o);
    std::vector<worker_view> w = {kv_view("a", 0, 0, 0), kv_view("b", 0, 0, 0), kv_view("c", 0, 0, 0),
                                  kv_view("d", 0, 0, 0)};
    std::vector<bool> holds(4, false);
    route_request_view r{{}, 16, 32};
    std::map<size_t, int> per;
    for (int i = 0; i < 8; ++i) {
      for (size_t k = 0; k < w.size(); ++k) w[k].overlap_blocks = holds[k] ? 32 : 0;
      const size_t k = p->choose(r, w);
      ++per[k];
      w[k].active_blocks += 32;
      w[k].queued_prefill_blocks += 32 - w[k].overlap_blocks;
      holds[k] = true;
    }
    EXPECT_EQ(per.size(), 4u) << "t " << t;
    for (auto& [k, n] : per) EXPECT_LE(n, 3) << "t " << t;
    // Once the prefills are done, a request with that prefix goes where it is cached.
    for (auto& v : w) v.queued_prefill_blocks = 0;
    w[2].active_blocks = 0;  // c finished its requests; the prefix stays cached there
    for (size_t k = 0; k < w.size(); ++k) w[k].overlap_blocks = k == 2 ? 32 : 0;
    EXPECT_EQ(p->choose(r, w), 2u);
  }
}

TEST(routing_policy, round_robin_and_random_spread_evenly) {
  std::vector<worker_view> w = {kv_view("a", 9, 0, 0), kv_view("b", 0, 50, 0), kv_view("c", 0, 0, 0)};
  auto rr = make_round_robin_policy();
  std::map<size_t, int> seen;
  for (int i = 0; i < 9; ++i) ++seen[rr->choose({{}, 1, 10}, w)];
  EXPECT_EQ(seen, (std::map<size_t, int>{{0, 3}, {1, 3}, {2, 3}}));
  auto rnd = make_random_policy(5);
  seen.clear();
  for (int i = 0; i < 9000; ++i) ++seen[rnd->choose({{}, 1, 10}, w)];
  for (auto& [k, n] : seen) EXPECT_NEAR(n, 3000, 200);
  EXPECT_EQ(to_string(*parse_routing_kind("least-loaded")), "least-loaded");
  EXPECT_FALSE(parse_routing_kind("kv-aware").ok());
}

}  // namespace
}  // namespace troupe
