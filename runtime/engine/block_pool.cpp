#include "runtime/engine/block_pool.hpp"

#include <algorithm>
#include <cassert>

namespace troupe {

block_pool::block_pool(int32_t n_blocks, int32_t block_size, bool enable_caching,
                       int64_t max_recycling_seqs)
    : block_size_(block_size), caching_(enable_caching), max_recycling_(max_recycling_seqs),
      blocks_(static_cast<size_t>(n_blocks)) {
  free_.reserve(static_cast<size_t>(n_blocks));
  for (int32_t b = n_blocks - 1; b >= 0; --b) free_.push_back(b);  // hand out 0, 1, ... first
}

void block_pool::emit(kv_event e) {
  e.event_id = next_event_id_++;
  e.block_size = block_size_;
  events_.push_back(std::move(e));
}

std::vector<kv_event> block_pool::drain_events() {
  std::vector<kv_event> out;
  out.swap(events_);
  return out;
}

void block_pool::pin(int32_t b) {
  block& k = blocks_[static_cast<size_t>(b)];
  if (evictable(k)) evictable_.erase({k.last_used, b});
  if (k.cached && k.ref == 0) --n_unpinned_cached_;
  ++k.ref;
  k.last_used = ++tick_;
}

void block_pool::make_evictable_if(int32_t b) {
  block& k = blocks_[static_cast<size_t>(b)];
  if (evictable(k)) evictable_.insert({k.last_used, b});
}

void block_pool::uncache(int32_t b, std::vector<uint64_t>& removed) {
  block& k = blocks_[static_cast<size_t>(b)];
  assert(evictable(k));
  evictable_.erase({k.last_used, b});
  by_hash_.erase(k.hash);
  removed.push_back(k.hash.value);
  k.cached = false;
  --n_unpinned_cached_;
  if (k.parent >= 0) {
    --blocks_[static_cast<size_t>(k.parent)].n_children;
    make_evictable_if(k.parent);
  }
  k.parent = -1;
  free_.push_back(b);
}

std::optional<std::vector<int32_t>> block_pool::allocate(int32_t n) {
  if (n < 0 || n > n_available()) return std::nullopt;
  std::vector<int32_t> out;
  out.reserve(static_cast<size_t>(n));
  std::vector<uint64_t> removed;
  while (static_cast<int32_t>(out.size()) < n) {
    if (free_.empty()) {
      assert(!evictable_.empty());
      uncache(evictable_.begin()->second, removed);  // the least recently used leaf
    }
    const int32_t b = free_.back();
    free_.pop_back();
    block& k = blocks_[static_cast<size_t>(b)];
    k.ref = 1;
    k.last_used = ++tick_;
    out.push_back(b);
  }
  if (!removed.empty()) emit({0, kv_event::kind::block_removed, std::move(removed), std::nullopt, 0});
  return out;
}

std::vector<int32_t> block_pool::match(std::span<const block_hash> hashes) {
  std::vector<int32_t> out;
  if (!caching_) return out;
  for (const block_hash& h : hashes) {
    auto it = by_hash_.find(h);
    if (it == by_hash_.end()) break;
    pin(it->second);
    out.push_back(it->second);
  }
  return out;
}

size_t block_pool::count_cached_prefix(std::span<const block_hash> hashes) const {
  if (!caching_) return 0;
  size_t n = 0;
  while (n < hashes.size() && by_hash_.count(hashes[n])) ++n;
  return n;
}

void block_pool::cache_full_blocks(std::span<int32_t> ids, std::span<const block_hash> hashes,
                                   std::optional<block_hash> parent) {
  if (!caching_) return;
  kv_event stored{0, kv_event::kind::block_stored, {}, std::nullopt, 0};
  auto flush = [&] {
    if (!stored.block_hashes.empty()) emit(std::move(stored));
    stored = kv_event{0, kv_event::kind::block_stored, {}, std::nullopt, 0};
  };
  for (size_t i = 0; i < ids.size() && i < hashes.size(); ++i) {
    const int32_t b = ids[i];
    block& k = blocks_[static_cast<size_t>(b)];
    if (k.cached) continue;  // already (a matched prefix block)
    const std::optional<block_hash> par = i == 0 ? parent : std::optional<block_hash>(hashes[i - 1]);
    int32_t par_block = -1;
    if (par) {
      auto p = by_hash_.find(*par);
      if (p == by_hash_.end()) {  // the chain is broken: this block could never be matched
        flush();
        continue;
      }
      par_block = p->second;
    }
    if (auto dup = by_hash_.find(hashes[i]); dup != by_hash_.end()) {
      flush();
      pin(dup->second);
      ids[i] = dup->second;
      const int32_t mine[1] = {b};
      release(mine);
      continue;
    }
    k.cached = true;
    k.hash = hashes[i];
    k.parent = par_block;
    k.last_used = ++tick_;
    if (k.ref == 0) ++n_unpinned_cached_;
    by_hash_.emplace(hashes[i], b);
    if (par_block >= 0) {
      block& p = blocks_[static_cast<size_t>(par_block)];
      if (evictable(p)) evictable_.erase({p.last_used, par_block});
      ++p.n_children;
    }
    if (stored.block_hashes.empty() && par) stored.parent_hash = par->value;
    stored.block_hashes.push_back(hashes[i].value);
    make_evictable_if(b);
  }
  flush();
}

void block_pool::release(std::span<const int32_t> ids) {
  for (int32_t b : ids) {
    block& k = blocks_[static_cast<size_t>(b)];
    assert(k.ref > 0);
    if (--k.ref > 0) continue;
    k.last_used = ++tick_;
    if (k.cached) {
      ++n_unpinned_cached_;
      make_evictable_if(b);
    } else {
      free_.push_back(b);
    }
  }
}

void block_pool::retire_sequence(std::vector<block_hash> hashes) {
  if (!caching_ || hashes.empty() || max_recycling_ < 0) return;
  recycled_.push_back(std::move(hashes));
  std::vector<uint64_t> removed;
  while (static_cast<int64_t>(recycled_.size()) > max_recycling_) {
    const std::vector<block_hash> oldest = std::move(recycled_.front());
    recycled_.pop_front();
    // From its last block back: stop at the first one still in use or shared by a child.
    for (auto h = oldest.rbegin(); h != oldest.rend(); ++h) {
      auto it = by_hash_.find(*h);
      if (it == by_hash_.end()) continue;
      if (!evictable(blocks_[static_cast<size_t>(it->second)])) break;
      uncache(it->second, removed);
    }
  }
  if (!removed.empty()) emit({0, kv_event::kind::block_removed, std::move(removed), std::nullopt, 0});
}

void block_pool::clear_cache() {
  for (size_t b = 0; b < blocks_.size(); ++b) {
    block& k = blocks_[b];
    if (!k.cached) continue;
    k.cached = false;
    k.parent = -1;
    k.n_children = 0;
    if (k.ref == 0) free_.push_back(static_cast<int32_t>(b));
  }
  evictable_.clear();
  by_hash_.clear();
  recycled_.clear();
  n_unpinned_cached_ = 0;
  emit({0, kv_event::kind::all_blocks_cleared, {}, std::nullopt, 0});
}

std::vector<uint64_t> block_pool::cached_hashes() const {
  std::vector<uint64_t> out;
  out.reserve(by_hash_.size());
  for (auto& [h, b] : by_hash_) out.push_back(h.value);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace troupe
