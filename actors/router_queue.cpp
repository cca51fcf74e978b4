#include "actors/router_queue.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace troupe {

router_queue::key router_queue::key_of(const item& it, uint64_t seq) const {
  if (order_ == queue_order::wspt) {
    const double weight = std::ldexp(1.0, std::clamp(it.priority, -60, 60));
    return {static_cast<double>(it.uncached_tokens) * weight, it.arrival_s, seq};
  }
  return {it.arrival_s + static_cast<double>(it.priority) * step_, it.arrival_s, seq};
}

bool router_queue::push(item it) {
  if (full() || by_id_.count(it.id)) return false;
  const key k = key_of(it, seq_++);
  by_id_[it.id] = k;
  queue_.emplace(k, std::move(it));
  return true;
}

std::optional<router_queue::item> router_queue::pop() {
  if (queue_.empty()) return std::nullopt;
  auto it = queue_.begin();
  item out = std::move(it->second);
  queue_.erase(it);
  by_id_.erase(out.id);
  return out;
}

const router_queue::item* router_queue::front() const { return queue_.empty() ? nullptr : &queue_.begin()->second; }

bool router_queue::remove(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  queue_.erase(it->second);
  by_id_.erase(it);
  return true;
}

void router_queue::set_order(queue_order o) {
  if (o == order_) return;
  order_ = o;
  std::vector<std::pair<key, item>> all(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
  queue_.clear();
  by_id_.clear();
  for (auto& [k, it] : all) {
    const key nk = key_of(it, std::get<2>(k));
    by_id_[it.id] = nk;
    queue_.emplace(nk, std::move(it));
  }
}

}  // namespace troupe
