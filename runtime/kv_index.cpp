#include "runtime/kv_index.hpp"

#include <algorithm>
#include <cassert>

namespace troupe {

kv_index::kv_index(options o) : opt_(o) {}

kv_index::worker_slot kv_index::add_worker(uint64_t next_event) {
  worker_slot w;
  if (!free_slots_.empty()) {
    w = free_slots_.back();
    free_slots_.pop_back();
  } else {
    w = static_cast<worker_slot>(workers_.size());
    workers_.emplace_back();
  }
  workers_[w] = worker_state{true, true, next_event, 0};
  return w;
}

void kv_index::remove_worker(worker_slot w) {
  if (!has_worker(w)) return;
  drop_worker_entries(w);
  workers_[w] = worker_state{};
  free_slots_.push_back(w);
}

kv_index::apply_outcome kv_index::apply(worker_slot w, uint64_t event_id, kv_event::kind kind,
                                        std::span<const uint64_t> hashes) {
  assert(has_worker(w));
  worker_state& ws = workers_[w];
  if (!ws.in_sync) return apply_outcome::out_of_sync;
  if (event_id < ws.next_event) return apply_outcome::stale;
  const bool known = kind == kv_event::kind::block_stored || kind == kv_event::kind::block_removed ||
                     kind == kv_event::kind::all_blocks_cleared;
  if (event_id > ws.next_event || !known) {
    ws.in_sync = false;
    return apply_outcome::gap;
  }
  ws.next_event = event_id + 1;
  switch (kind) {
    case kv_event::kind::block_stored: store(w, hashes); break;
    case kv_event::kind::block_removed: remove(w, hashes); break;
    case kv_event::kind::all_blocks_cleared: clear(w); break;
  }
  return apply_outcome::applied;
}

void kv_index::replace(worker_slot w, std::span<const uint64_t> hashes, uint64_t next_event) {
  assert(has_worker(w));
  drop_worker_entries(w);
  workers_[w].in_sync = true;
  workers_[w].next_event = next_event;
  store(w, hashes);
}

void kv_index::store(worker_slot w, std::span<const uint64_t> hashes) {
  for (uint64_t h : hashes) store_one(w, h);
  evict_to_cap();
}

void kv_index::remove(worker_slot w, std::span<const uint64_t> hashes) {
  for (uint64_t h : hashes) remove_one(w, h, false);
}

void kv_index::clear(worker_slot w) { drop_worker_entries(w); }

void kv_index::store_one(worker_slot w, uint64_t h) {
  node& n = nodes_[h];
  auto it = std::lower_bound(n.holders.begin(), n.holders.end(), w,
                             [](const holder& x, worker_slot v) { return x.worker < v; });
  const uint64_t stamp = ++stamp_;
  if (it != n.holders.end() && it->worker == w) {
    if (opt_.counted) ++it->count;
    it->stamp = stamp;  // stored again: young again
  } else {
    n.holders.insert(it, holder{w, 1, stamp});
    ++workers_[w].n_entries;
    ++n_entries_;
  }
  fifo_.push_back({stamp, h, w});
}

void kv_index::remove_one(worker_slot w, uint64_t h, bool all_counts) {
  auto nit = nodes_.find(h);
  if (nit == nodes_.end()) return;
  auto& hs = nit->second.holders;
  auto it = std::lower_bound(hs.begin(), hs.end(), w, [](const holder& x, worker_slot v) { return x.worker < v; });
  if (it == hs.end() || it->worker != w) return;
  if (opt_.counted && !all_counts && --it->count > 0) return;
  hs.erase(it);
  --workers_[w].n_entries;
  --n_entries_;
  if (hs.empty()) nodes_.erase(nit);
}

void kv_index::drop_worker_entries(worker_slot w) {
  if (workers_[w].n_entries == 0) return;
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    auto& hs = it->second.holders;
    auto h = std::lower_bound(hs.begin(), hs.end(), w, [](const holder& x, worker_slot v) { return x.worker < v; });
    if (h != hs.end() && h->worker == w) {
      hs.erase(h);
      --n_entries_;
    }
    it = hs.empty() ? nodes_.erase(it) : std::next(it);
  }
  workers_[w].n_entries = 0;
  compact_fifo();
}

void kv_index::evict_to_cap() {
  while (n_entries_ > opt_.max_entries && !fifo_.empty()) {
    const fifo_entry f = fifo_.front();
    fifo_.pop_front();
    auto nit = nodes_.find(f.hash);
    if (nit == nodes_.end()) continue;
    auto& hs = nit->second.holders;
    auto it = std::lower_bound(hs.begin(), hs.end(), f.worker,
                               [](const holder& x, worker_slot v) { return x.worker < v; });
    if (it == hs.end() || it->worker != f.worker || it->stamp != f.stamp) continue;  // stale
    remove_one(f.worker, f.hash, true);
    ++n_evicted_;
  }
  if (fifo_.size() > 2 * n_entries_ + 4096) compact_fifo();
}

// Drops the queue's stale entries (removed, or stored again later), keeping the order.
void kv_index::compact_fifo() {
  std::deque<fifo_entry> kept;
  for (const fifo_entry& f : fifo_) {
    auto nit = nodes_.find(f.hash);
    if (nit == nodes_.end()) continue;
    const auto& hs = nit->second.holders;
    auto it = std::lower_bound(hs.begin(), hs.end(), f.worker,
                               [](const holder& x, worker_slot v) { return x.worker < v; });
    if (it != hs.end() && it->worker == f.worker && it->stamp == f.stamp) kept.push_back(f);
  }
  fifo_.swap(kept);
}

void kv_index::overlaps(std::span<const uint64_t> hashes, std::vector<uint32_t>& out) const {
  out.assign(workers_.size(), 0);
  active_.clear();
  uint32_t depth = 0;
  for (; depth < hashes.size(); ++depth) {
    auto nit = nodes_.find(hashes[depth]);
    if (nit == nodes_.end()) break;
    const auto& hs = nit->second.holders;
    if (depth == 0) {
      for (const holder& h : hs) active_.push_back(h.worker);
    } else {
      // Workers that held every block so far and hold this one too; the others stop at depth.
      next_.clear();
      size_t j = 0;
      for (worker_slot w : active_) {
        while (j < hs.size() && hs[j].worker < w) ++j;
        if (j < hs.size() && hs[j].worker == w) next_.push_back(w);
        else out[w] = depth;
      }
      active_.swap(next_);
    }
    if (active_.empty()) return;
  }
  for (worker_slot w : active_) out[w] = depth;
}

std::vector<std::vector<uint64_t>> kv_index::hashes_by_worker() const {
  std::vector<std::vector<uint64_t>> out(workers_.size());
  for (worker_slot w = 0; w < workers_.size(); ++w) out[w].reserve(workers_[w].n_entries);
  for (const auto& [h, n] : nodes_)
    for (const holder& x : n.holders) out[x.worker].push_back(h);
  return out;
}

// libstdc++: an unordered_map node is {next, key, value} plus malloc's 16-byte header, and
// each element owns a bucket pointer at load factor 1; a vector's heap block has the same
// header. An entry is a holder in its node's vector plus its place in the eviction queue
// (which compaction keeps below twice the live entries; one place is counted here).
size_t kv_index::bytes_per_entry() { return sizeof(holder) + sizeof(fifo_entry); }
size_t kv_index::bytes_per_node() {
  return sizeof(void*) + sizeof(uint64_t) + sizeof(node) + 16 /* malloc header */ + sizeof(void*) /* bucket */ +
         16 /* the holders' heap block header */;
}
size_t kv_index::memory_bytes() const {
  return n_entries_ * bytes_per_entry() + nodes_.size() * bytes_per_node() +
         (fifo_.size() > n_entries_ ? (fifo_.size() - n_entries_) * sizeof(fifo_entry) : 0);
}

}  // namespace troupe
