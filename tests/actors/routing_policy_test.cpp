// Proves the least-loaded policy picks the worker with the fewest in-flight tokens, breaks
// ties by requests and then takes turns among equals.
#include "actors/routing_policy.hpp"

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

}  // namespace
}  // namespace troupe
