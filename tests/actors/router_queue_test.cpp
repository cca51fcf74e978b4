// Proves the router's queue: bounded (a push beyond capacity is refused), fcfs in arrival
// order with priority bumps, wspt cheapest first weighted by priority, removal of an aborted
// request, and reordering when the policy changes.
#include "actors/router_queue.hpp"

#include <gtest/gtest.h>

namespace troupe {
namespace {

std::vector<std::string> drain(router_queue& q) {
  std::vector<std::string> out;
  while (auto it = q.pop()) out.push_back(it->id);
  return out;
}

TEST(router_queue, is_bounded) {
  router_queue q(2, queue_order::fcfs);
  EXPECT_TRUE(q.push({"a", 0, 0, 0}));
  EXPECT_FALSE(q.push({"a", 0, 1, 0})) << "an id once";
  EXPECT_TRUE(q.push({"b", 0, 1, 0}));
  EXPECT_TRUE(q.full());
  EXPECT_FALSE(q.push({"c", 0, 2, 0}));
  EXPECT_EQ(q.size(), 2u);
}

TEST(router_queue, fcfs_is_arrival_order_with_priority_bumps) {
  router_queue q(10, queue_order::fcfs, 1.0);
  q.push({"first", 0, 0.0, 900});
  q.push({"second", 0, 0.5, 10});
  q.push({"urgent", -1, 1.2, 500});   // one level better: ahead of what arrived up to 1 s before
  q.push({"late", 0, 3.0, 1});
  q.push({"relaxed", 2, 1.5, 1});     // two levels worse: behind what arrives within 2 s
  EXPECT_EQ(drain(q), (std::vector<std::string>{"first", "urgent", "second", "late", "relaxed"}));
}

TEST(router_queue, wspt_is_cheapest_first_weighted_by_priority) {
  router_queue q(10, queue_order::wspt);
  q.push({"long", 0, 0.0, 4000});
  q.push({"cached", 0, 1.0, 16});
  q.push({"medium", 0, 2.0, 500});
  q.push({"medium-urgent", -1, 3.0, 600});  // 600 x 2^-1 = 300
  q.push({"tie", 0, 4.0, 500});             // equal to medium: arrival order
  EXPECT_EQ(drain(q), (std::vector<std::string>{"cached", "medium-urgent", "medium", "tie", "long"}));
}

TEST(router_queue, removes_and_reorders) {
  router_queue q(10, queue_order::fcfs);
  q.push({"a", 0, 0.0, 300});
  q.push({"b", 0, 1.0, 200});
  q.push({"c", 0, 2.0, 100});
  EXPECT_TRUE(q.remove("b"));
  EXPECT_FALSE(q.remove("b"));
  q.set_order(queue_order::wspt);
  EXPECT_EQ(q.front()->id, "c");
  EXPECT_EQ(drain(q), (std::vector<std::string>{"c", "a"}));
}

}  // namespace
}  // namespace troupe
