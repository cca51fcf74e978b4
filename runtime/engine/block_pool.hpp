// block_pool: the KV blocks of one engine and the radix tree of cached prefix blocks over
// them. It owns which blocks are free, which hold a cached full block (named by its chained
// hash, linked to its parent block), and how many running sequences pin each. Unpinned
// cached leaves are evicted least recently used first. Every change to the cached set is
// queued as a kv_event for the owner to drain. It does not know about requests: the
// scheduler pins, fills and releases blocks on their behalf.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <set>
#include <span>
#include <unordered_map>
#include <vector>

#include "runtime/block_hash.hpp"
#include "runtime/kv_events.hpp"

namespace troupe {

class block_pool {
 public:
  // max_recycling_seqs: how many finished sequences keep their cached blocks (< 0: no bound).
  block_pool(int32_t n_blocks, int32_t block_size, bool enable_caching, int64_t max_recycling_seqs);

  int32_t n_blocks() const { return static_cast<int32_t>(blocks_.size()); }
  int32_t block_size() const { return block_size_; }
  bool caching() const { return caching_; }
  // Blocks allocate() can hand out: free ones plus cached ones that nobody pins. (Every
  // unpinned cached block can be evicted leaf first: a sequence pins its whole prefix.)
  int32_t n_available() const { return static_cast<int32_t>(free_.size()) + n_unpinned_cached_; }
  int32_t n_pinned() const { return n_blocks() - n_available(); }
  int32_t n_cached() const { return static_cast<int32_t>(by_hash_.size()); }

  // n blocks with no content, each pinned once, evicting unpinned cached leaves (least
  // recently used first) when no free block is left; nothing if fewer than n are available.
  std::optional<std::vector<int32_t>> allocate(int32_t n);
  // The cached blocks of the longest cached prefix of `hashes`, each pinned once more.
  std::vector<int32_t> match(std::span<const block_hash> hashes);
  // How many leading hashes are cached, pinning nothing.
  size_t count_cached_prefix(std::span<const block_hash> hashes) const;
  // A sequence has filled `blocks`, whose chained hashes are `hashes`; parent names the block
  // before the first (none at the start of a sequence). They join the cache. Where a hash
  // is already cached under another block (two sequences computed the same prefix at once),
  // the sequence adopts that block: the entry in `blocks` is replaced by it, pinned, and
  // the duplicate is released. Blocks whose parent is not cached stay private.
  void cache_full_blocks(std::span<int32_t> blocks, std::span<const block_hash> hashes,
                         std::optional<block_hash> parent);
  // Drops one pin of each block; an unpinned block is freed, or kept while it is cached.
  void release(std::span<const int32_t> blocks);
  // A sequence finished whose cached chain is `hashes`. Once more than max_recycling_seqs
  // finished sequences keep blocks, the oldest one's unpinned blocks are evicted.
  void retire_sequence(std::vector<block_hash> hashes);
  // Forgets every cached block (pinned ones stay with their sequences, uncached).
  void clear_cache();

  std::vector<kv_event> drain_events();
  uint64_t next_event_id() const { return next_event_id_; }
  // The cached hashes (for tests and snapshots).
  std::vector<uint64_t> cached_hashes() const;

 private:
  struct block {
    int32_t ref = 0;
    bool cached = false;
    block_hash hash;
    int32_t parent = -1;  // cached parent block, or -1
    int32_t n_children = 0;
    uint64_t last_used = 0;
  };
  void pin(int32_t b);
  bool evictable(const block& b) const { return b.cached && b.ref == 0 && b.n_children == 0; }
  void make_evictable_if(int32_t b);
  void uncache(int32_t b, std::vector<uint64_t>& removed);  // b must be an evictable leaf
  void emit(kv_event e);

  int32_t block_size_;
  bool caching_;
  int64_t max_recycling_;
  std::vector<block> blocks_;
  std::vector<int32_t> free_;                             // unpinned, uncached
  std::set<std::pair<uint64_t, int32_t>> evictable_;      // (last_used, block): unpinned leaves
  std::unordered_map<block_hash, int32_t> by_hash_;
  std::deque<std::vector<block_hash>> recycled_;
  int32_t n_unpinned_cached_ = 0;
  uint64_t tick_ = 0;
  uint64_t next_event_id_ = 0;
  std::vector<kv_event> events_;
};

}  // namespace troupe
