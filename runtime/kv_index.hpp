// kv_index: which worker holds which KV block, for the workers of one served model, built
// only from the KV events their engines publish. The router asks it, per request, how many
// leading blocks of the request each worker already holds.
//
// Owns: a radix tree of cached blocks and, per block, the workers holding it; each worker's
// event sequence number (the id of the next event it must apply) and whether its view is in
// sync; a cap on the entries held, with eviction of the oldest. Does not own: the workers
// themselves (callers name them by a dense slot they get from add_worker), the request's
// hashes (hash_full_blocks, once per request), load, or asking a worker for a dump (the
// router does that when apply() reports a gap).
//
// The tree: block hashes are chained (block_hash.hpp): a hash names its block *and every
// block before it*, so a node's key is its whole path from the root and the tree is stored
// flat, one slot of an open-addressing table per node, an edge being "is the next block of".
// A lookup walks the request's chain down from the root, one node per block (fetching the
// slots of the blocks ahead while it works on this one), and narrows the set of workers that
// still hold every block so far, as SGLang's radix cache and Dynamo's radix-tree indexer do.
// A node held by one worker keeps it in its slot; more holders live in an array of their own.
//
// Contract:
//   overlaps(hashes, out): out[w] = the number of leading blocks of `hashes` that worker w
//     holds (the longest prefix all of whose blocks it holds), for every slot w; 0 for a
//     worker that is gone. O(d + sum over the walked nodes of the workers holding them),
//     d = the depth reached (at most hashes.size()); no allocation once out has its size.
//   apply(w, event): O(blocks in the event) for stored and removed; an event that is not
//     the worker's next one is not applied: an older one is `stale` (the view has it
//     already), a later one is a `gap`, after which the worker is out of sync and applies
//     nothing until replace() gives it a full dump. cleared and replace() and remove_worker()
//     are O(indexed blocks) (they scan the tree): they happen on a gap, a restart or a lost
//     worker, not per request.
//   Memory: a 32-byte slot per distinct block at a load factor of 3/8 to 3/4 (43 to 85
//     bytes a block), its one holder inside; a block held by several workers adds an array of
//     16 bytes a holder (capacity doubling from 4); and 24 bytes an entry in the eviction
//     queue (compaction keeps it within twice the entries). memory_bytes() counts exactly
//     that; `troupe bench router` measures the heap. At most max_entries entries: a store
//     beyond the cap evicts the oldest stored entries first.
//
// Counted mode (options.counted) keeps a count per entry instead: store adds one, remove
// takes one away, and the entry goes at zero. The router uses an index in that mode for the
// blocks it predicts a worker will hold once the requests it was just given have prefilled.
// Not thread-safe: one actor owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "runtime/kv_events.hpp"

namespace troupe {

class kv_index {
 public:
  using worker_slot = uint32_t;

  struct options {
    size_t max_entries = size_t{8} << 20;  // (worker, block) entries at most
    bool counted = false;
  };

  enum class apply_outcome {
    applied,
    stale,        // an event the worker's view already reflects (id below the next expected)
    gap,          // events were lost: the view stays as it was until replace()
    out_of_sync,  // the worker awaits a dump: nothing is applied
  };

  explicit kv_index(options o);
  kv_index() : kv_index(options{}) {}
  ~kv_index();
  kv_index(kv_index&&) noexcept;
  kv_index& operator=(kv_index&&) noexcept;
  kv_index(const kv_index&) = delete;
  kv_index& operator=(const kv_index&) = delete;

  // A new worker with an empty view whose next event is `next_event`; its slot (slots of
  // removed workers are reused).
  worker_slot add_worker(uint64_t next_event = 0);
  // Drops every block of the worker at once and frees its slot.
  void remove_worker(worker_slot w);
  bool has_worker(worker_slot w) const { return w < workers_.size() && workers_[w].live; }
  // One past the highest slot ever handed out: the size overlaps() gives `out`.
  size_t n_slots() const { return workers_.size(); }

  // Applies one event of the worker's stream, checking its sequence number. A kind this
  // build does not know counts as a gap (the view can no longer be trusted).
  apply_outcome apply(worker_slot w, uint64_t event_id, kv_event::kind kind, std::span<const uint64_t> hashes);
  apply_outcome apply(worker_slot w, const kv_event& e) { return apply(w, e.event_id, e.type, e.block_hashes); }
  // The worker's whole cached set as of its event `next_event` (a dump, or a snapshot):
  // replaces its view and puts it back in sync.
  void replace(worker_slot w, std::span<const uint64_t> hashes, uint64_t next_event);
  // Unchecked changes (no sequence numbers): the counted index, and tests.
  void store(worker_slot w, std::span<const uint64_t> hashes);
  void remove(worker_slot w, std::span<const uint64_t> hashes);
  void clear(worker_slot w);

  void overlaps(std::span<const uint64_t> hashes, std::vector<uint32_t>& out) const;

  uint64_t next_event(worker_slot w) const { return workers_[w].next_event; }
  bool in_sync(worker_slot w) const { return workers_[w].in_sync; }
  // Marks the worker as awaiting a dump (a router that restarted without a snapshot of it).
  void mark_out_of_sync(worker_slot w) { workers_[w].in_sync = false; }
  size_t n_entries(worker_slot w) const { return workers_[w].n_entries; }
  size_t n_entries() const { return n_entries_; }
  size_t n_nodes() const { return n_nodes_; }
  uint64_t n_evicted() const { return n_evicted_; }
  // Every worker's hashes, by slot (one scan; for snapshots and tests).
  std::vector<std::vector<uint64_t>> hashes_by_worker() const;

  static size_t bytes_per_entry();
  static size_t bytes_per_node();
  size_t memory_bytes() const;

 private:
  struct holder {
    worker_slot worker;
    uint32_t count;  // counted mode; 1 otherwise
    uint64_t stamp;  // when it was stored (the eviction order)
  };
  // One node: its hash and its holders, sorted by worker. Empty when n == 0.
  struct slot {
    uint64_t key = 0;
    uint32_t n = 0;    // holders
    uint32_t cap = 0;  // of `many` (0: the one holder is inline)
    union {
      holder one;
      holder* many;
    };
    slot() : one{} {}
    holder* begin() { return cap ? many : &one; }
    const holder* begin() const { return cap ? many : &one; }
    holder* end() { return begin() + n; }
    const holder* end() const { return begin() + n; }
  };
  struct worker_state {
    bool live = false;
    bool in_sync = true;
    uint64_t next_event = 0;
    size_t n_entries = 0;
  };
  struct fifo_entry {
    uint64_t stamp;
    uint64_t hash;
    worker_slot worker;
  };

  size_t home(uint64_t h) const { return static_cast<size_t>(h * 0x9E3779B97F4A7C15ull >> shift_); }
  const slot* find(uint64_t h) const;
  slot* find(uint64_t h) { return const_cast<slot*>(static_cast<const kv_index*>(this)->find(h)); }
  slot& find_or_add(uint64_t h);
  void erase(slot& s);  // s must have no holders left
  void grow();
  void rebuild(size_t capacity);
  holder* holder_of(slot& s, worker_slot w);
  void insert_holder(slot& s, holder x);
  void erase_holder(slot& s, holder* at);

  void store_one(worker_slot w, uint64_t h);
  void remove_one(worker_slot w, uint64_t h, bool all_counts);
  void drop_worker_entries(worker_slot w);
  void evict_to_cap();
  void compact_fifo();

  options opt_;
  std::unique_ptr<slot[]> table_;
  size_t capacity_ = 0;  // a power of two
  int shift_ = 64;       // 64 - log2(capacity)
  size_t n_nodes_ = 0;
  size_t heap_holders_ = 0;  // capacity of the holder arrays
  std::vector<worker_state> workers_;
  std::vector<worker_slot> free_slots_;
  std::deque<fifo_entry> fifo_;  // stores in order; entries whose stamp no longer matches are stale
  uint64_t stamp_ = 0;
  size_t n_entries_ = 0;
  uint64_t n_evicted_ = 0;
  mutable std::vector<worker_slot> active_, next_;  // overlaps() scratch
};

}  // namespace troupe
