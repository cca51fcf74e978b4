#include "runtime/kv_index.hpp"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

namespace troupe {

kv_index::kv_index(options o) : opt_(o) {}

kv_index::~kv_index() {
  for (size_t i = 0; i < capacity_; ++i)
    if (table_[i].cap) delete[] table_[i].many;
}

kv_index::kv_index(kv_index&& o) noexcept { *this = std::move(o); }

kv_index& kv_index::operator=(kv_index&& o) noexcept {
  if (this == &o) return *this;
  for (size_t i = 0; i < capacity_; ++i)
    if (table_[i].cap) delete[] table_[i].many;
  opt_ = o.opt_;
  table_ = std::move(o.table_);
  capacity_ = std::exchange(o.capacity_, 0);
  shift_ = std::exchange(o.shift_, 64);
  n_nodes_ = std::exchange(o.n_nodes_, 0);
  heap_holders_ = std::exchange(o.heap_holders_, 0);
  workers_ = std::move(o.workers_);
  free_slots_ = std::move(o.free_slots_);
  fifo_ = std::move(o.fifo_);
  stamp_ = o.stamp_;
  n_entries_ = std::exchange(o.n_entries_, 0);
  n_evicted_ = o.n_evicted_;
  return *this;
}

// ---- the table: open addressing, linear probing, backward-shift deletion -------------------

const kv_index::slot* kv_index::find(uint64_t h) const {
  if (capacity_ == 0) return nullptr;
  const size_t mask = capacity_ - 1;
  for (size_t i = home(h);; i = (i + 1) & mask) {
    const slot& s = table_[i];
    if (s.n == 0) return nullptr;
    if (s.key == h) return &s;
  }
}

kv_index::slot& kv_index::find_or_add(uint64_t h) {
  if (slot* s = find(h)) return *s;
  if (4 * (n_nodes_ + 1) > 3 * capacity_) grow();
  const size_t mask = capacity_ - 1;
  size_t i = home(h);
  while (table_[i].n != 0) i = (i + 1) & mask;
  table_[i].key = h;
  ++n_nodes_;
  return table_[i];  // the caller gives it its first holder at once
}

void kv_index::grow() { rebuild(std::max<size_t>(16, capacity_ * 2)); }

// Reinserts every node into a table of `cap` slots (holder arrays move with their nodes).
void kv_index::rebuild(size_t cap) {
  std::unique_ptr<slot[]> old = std::move(table_);
  const size_t old_cap = capacity_;
  table_ = std::make_unique<slot[]>(cap);
  capacity_ = cap;
  shift_ = 64 - __builtin_ctzll(cap);
  for (size_t j = 0; j < old_cap; ++j) {
    if (old[j].n == 0) continue;
    size_t i = home(old[j].key);
    while (table_[i].n != 0) i = (i + 1) & (cap - 1);
    std::memcpy(static_cast<void*>(&table_[i]), &old[j], sizeof(slot));
  }
}

void kv_index::erase(slot& s) {
  assert(s.n == 0);
  if (s.cap) {
    delete[] s.many;
    heap_holders_ -= s.cap;
    s.cap = 0;
  }
  --n_nodes_;
  const size_t mask = capacity_ - 1;
  size_t i = static_cast<size_t>(&s - table_.get());
  for (size_t j = (i + 1) & mask; table_[j].n != 0; j = (j + 1) & mask) {
    // Move j back into the hole unless its home lies cyclically in (i, j].
    const size_t k = home(table_[j].key);
    if (((j - k) & mask) >= ((j - i) & mask)) {
      std::memcpy(static_cast<void*>(&table_[i]), &table_[j], sizeof(slot));
      table_[j].n = 0;
      table_[j].cap = 0;
      i = j;
    }
  }
}

kv_index::holder* kv_index::holder_of(slot& s, worker_slot w) {
  holder* it = std::lower_bound(s.begin(), s.end(), w, [](const holder& x, worker_slot v) { return x.worker < v; });
  return it != s.end() && it->worker == w ? it : nullptr;
}

void kv_index::insert_holder(slot& s, holder x) {
  if (s.n == 0) {
    s.one = x;
    s.n = 1;
    return;
  }
  if (s.cap == 0 || s.n == s.cap) {  // to (a bigger) array of its own
    const uint32_t cap = s.cap ? 2 * s.cap : 4;
    holder* a = new holder[cap];
    std::copy(s.begin(), s.end(), a);
    if (s.cap) {
      delete[] s.many;
      heap_holders_ -= s.cap;
    }
    s.many = a;
    s.cap = cap;
    heap_holders_ += cap;
  }
  holder* at = std::lower_bound(s.begin(), s.end(), x.worker, [](const holder& h, worker_slot v) { return h.worker < v; });
  std::copy_backward(at, s.end(), s.end() + 1);
  *at = x;
  ++s.n;
}

void kv_index::erase_holder(slot& s, holder* at) {
  std::copy(at + 1, s.end(), at);
  --s.n;
  if (s.cap && s.n == 1) {  // back inline
    const holder h = s.many[0];
    delete[] s.many;
    heap_holders_ -= s.cap;
    s.cap = 0;
    s.one = h;
  }
}

// ---- workers and events --------------------------------------------------------------------

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
  slot& s = find_or_add(h);
  const uint64_t stamp = ++stamp_;
  if (holder* x = s.n ? holder_of(s, w) : nullptr) {
    if (opt_.counted) ++x->count;
    x->stamp = stamp;  // stored again: young again
  } else {
    insert_holder(s, holder{w, 1, stamp});
    ++workers_[w].n_entries;
    ++n_entries_;
  }
  fifo_.push_back({stamp, h, w});
}

void kv_index::remove_one(worker_slot w, uint64_t h, bool all_counts) {
  slot* s = find(h);
  if (!s) return;
  holder* x = holder_of(*s, w);
  if (!x) return;
  if (opt_.counted && !all_counts && --x->count > 0) return;
  erase_holder(*s, x);
  --workers_[w].n_entries;
  --n_entries_;
  if (s->n == 0) erase(*s);
}

void kv_index::drop_worker_entries(worker_slot w) {
  if (workers_[w].n_entries == 0) return;
  size_t emptied = 0;
  for (size_t i = 0; i < capacity_; ++i) {
    slot& s = table_[i];
    if (s.n == 0) continue;
    if (holder* x = holder_of(s, w)) {
      erase_holder(s, x);
      --n_entries_;
      emptied += s.n == 0;
    }
  }
  // Emptied slots would break other nodes' probe sequences: reinsert what is left.
  if (emptied) {
    n_nodes_ -= emptied;
    rebuild(capacity_);
  }
  workers_[w].n_entries = 0;
  compact_fifo();
}

void kv_index::evict_to_cap() {
  while (n_entries_ > opt_.max_entries && !fifo_.empty()) {
    const fifo_entry f = fifo_.front();
    fifo_.pop_front();
    slot* s = find(f.hash);
    if (!s) continue;
    holder* x = holder_of(*s, f.worker);
    if (!x || x->stamp != f.stamp) continue;  // stale
    remove_one(f.worker, f.hash, true);
    ++n_evicted_;
  }
  if (fifo_.size() > 2 * n_entries_ + 4096) compact_fifo();
}

// Drops the queue's stale entries (removed, or stored again later), keeping the order.
void kv_index::compact_fifo() {
  std::deque<fifo_entry> kept;
  for (const fifo_entry& f : fifo_) {
    slot* s = find(f.hash);
    if (!s) continue;
    const holder* x = holder_of(*s, f.worker);
    if (x && x->stamp == f.stamp) kept.push_back(f);
  }
  fifo_.swap(kept);
}

// ---- lookups -------------------------------------------------------------------------------

void kv_index::overlaps(std::span<const uint64_t> hashes, std::vector<uint32_t>& out) const {
  out.assign(workers_.size(), 0);
  active_.clear();
  if (capacity_ == 0) return;
  constexpr size_t ahead = 6;  // slots fetched ahead of the walk: their misses overlap
  for (size_t k = 0; k < ahead && k < hashes.size(); ++k) __builtin_prefetch(&table_[home(hashes[k])]);
  uint32_t depth = 0;
  for (; depth < hashes.size(); ++depth) {
    if (depth + ahead < hashes.size()) __builtin_prefetch(&table_[home(hashes[depth + ahead])]);
    const slot* s = find(hashes[depth]);
    if (!s) break;
    const holder* hs = s->begin();
    const uint32_t n = s->n;
    if (depth == 0) {
      for (uint32_t j = 0; j < n; ++j) active_.push_back(hs[j].worker);
    } else {
      // Workers that held every block so far and hold this one too; the others stop at depth.
      next_.clear();
      uint32_t j = 0;
      for (worker_slot w : active_) {
        while (j < n && hs[j].worker < w) ++j;
        if (j < n && hs[j].worker == w) next_.push_back(w);
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
  for (size_t i = 0; i < capacity_; ++i)
    for (const holder* x = table_[i].begin(); x != table_[i].end(); ++x) out[x->worker].push_back(table_[i].key);
  return out;
}

// What the containers hold: the table's slots (a node's one holder inline), the holder arrays
// of nodes with several holders, the eviction queue (compaction keeps it below twice the live
// entries).
size_t kv_index::bytes_per_entry() { return sizeof(fifo_entry) + sizeof(holder); }
size_t kv_index::bytes_per_node() { return sizeof(slot); }
size_t kv_index::memory_bytes() const {
  return capacity_ * sizeof(slot) + heap_holders_ * sizeof(holder) + fifo_.size() * sizeof(fifo_entry);
}

}  // namespace troupe
