// router_queue: the requests a router holds while every worker of their model is saturated,
// bounded, in the order b10_routing_config.router_queue_policy names. Plain C++.
//
//   fcfs: arrival order with priority bumps: the key is arrival time + priority x
//         priority_step_s, so a request one priority level better (lower) goes ahead of
//         those that arrived up to priority_step_s seconds before it.
//   wspt: weighted shortest processing time: the key is the request's uncached prompt
//         tokens (on the worker that holds most of its prefix) x 2^priority, cheapest first;
//         equal keys in arrival order. It can starve costly requests, as the reference says.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>

namespace troupe {

enum class queue_order { fcfs, wspt };

class router_queue {
 public:
  struct item {
    std::string id;
    int32_t priority = 0;       // lower is more urgent (as the engine's)
    double arrival_s = 0;       // seconds on the router's clock
    int64_t uncached_tokens = 0;
  };

  router_queue(size_t capacity, queue_order order, double priority_step_s = 1.0)
      : capacity_(capacity), order_(order), step_(priority_step_s) {}

  size_t size() const { return by_id_.size(); }
  bool empty() const { return by_id_.empty(); }
  bool full() const { return by_id_.size() >= capacity_; }
  size_t capacity() const { return capacity_; }
  queue_order order() const { return order_; }

  // False when the queue is full or the id is queued already.
  bool push(item it);
  // The next request by the order, or nothing.
  std::optional<item> pop();
  const item* front() const;
  bool remove(const std::string& id);
  // Reorders what is queued (the policy was changed).
  void set_order(queue_order o);
  void set_capacity(size_t c) { capacity_ = c; }

 private:
  using key = std::tuple<double, double, uint64_t>;  // (order key, arrival, sequence)
  key key_of(const item& it, uint64_t seq) const;

  size_t capacity_;
  queue_order order_;
  double step_;
  uint64_t seq_ = 0;
  std::map<key, item> queue_;
  std::map<std::string, key> by_id_;
};

}  // namespace troupe
