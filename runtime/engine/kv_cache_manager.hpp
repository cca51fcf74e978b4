// kv_cache_manager: the KV blocks of every sequence of one engine, over one block_pool.
//
// It owns each sequence's block table and hash chain (the chained hashes of its full blocks,
// computed once per block), finds a new sequence's cached prefix, grows a table for the tokens
// of a step plus lookahead slots for draft tokens, shrinks it when drafts are rejected, hands
// computed full blocks to the prefix cache (so drafts never enter it: only what the caller
// commits as computed does), and names the blocks to read or write when a sequence's KV moves
// between engines. It does not decide who runs (the scheduler), and it never touches the
// bytes of a block (the executor reads and writes them).
//
// Sequences are named by the engine's sequence number. Every call that can fail for want of
// blocks changes nothing when it fails.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "runtime/block_hash.hpp"
#include "runtime/engine/block_pool.hpp"
#include "runtime/kv_events.hpp"

namespace troupe {

// The blocks that hold a sequence's first n_tokens, for an engine that will continue it.
struct kv_export {
  int32_t n_tokens = 0;             // tokens whose keys and values the blocks hold
  std::vector<int32_t> blocks;      // ceil(n_tokens / block_size) block ids, in order
  std::vector<block_hash> hashes;   // chained hashes of the full ones (n_tokens / block_size)
};

// Where an importing engine wants a transferred sequence's blocks.
struct kv_import {
  int32_t first_block = 0;        // blocks [0, first_block) were in its prefix cache: not sent
  std::vector<int32_t> blocks;    // local ids for blocks first_block, first_block + 1, ...
};

class kv_cache_manager {
 public:
  // max_recycling_seqs: finished sequences that keep their cached blocks (< 0: no bound).
  kv_cache_manager(int32_t n_blocks, int32_t block_size, bool prefix_cache, int64_t max_recycling_seqs,
                   uint64_t hash_salt);
  kv_cache_manager(const kv_cache_manager&) = delete;
  kv_cache_manager& operator=(const kv_cache_manager&) = delete;

  int32_t block_size() const { return pool_.block_size(); }
  int32_t n_blocks() const { return pool_.n_blocks(); }
  int32_t n_available() const { return pool_.n_available(); }  // free, or cached and evictable
  int32_t n_pinned() const { return pool_.n_pinned(); }
  uint64_t salt() const { return salt_; }
  static int32_t blocks_for(int32_t n_tokens, int32_t block_size) { return (n_tokens + block_size - 1) / block_size; }

  // Admission, in two calls so the scheduler can look before it commits: how many leading
  // tokens of a waiting sequence the prefix cache holds (whole blocks, leaving at least one
  // token to compute), pinning nothing; then pin_prefix pins that many blocks (its table must
  // be empty) and returns how many tokens they cover.
  [[nodiscard]] int32_t count_cached_prefix(uint64_t seq, std::span<const token_id> tokens);
  int32_t pin_prefix(uint64_t seq, std::span<const token_id> tokens, int32_t n_blocks);

  // Makes seq's table cover n_computed + n_new + n_lookahead tokens (lookahead: slots for draft
  // tokens that may be rejected). False, and nothing allocated, if the pool lacks the blocks.
  [[nodiscard]] bool allocate_slots(uint64_t seq, int32_t n_computed, int32_t n_new, int32_t n_lookahead = 0);
  // Block ids added by the last allocate_slots of seq (for the step plan's "what changed").
  std::span<const int32_t> last_allocated(uint64_t seq) const;

  // tokens[0, n_computed) have their keys and values in the cache: the full blocks among them
  // join the prefix cache (a block may be swapped for an identical cached one).
  void commit(uint64_t seq, std::span<const token_id> tokens, int32_t n_computed);
  // Keeps only the blocks that n_tokens need (rejected drafts' slots go back to the pool).
  void truncate(uint64_t seq, int32_t n_tokens);

  // Preemption: releases seq's blocks, keeping its hash chain for when it comes back.
  void release(uint64_t seq);
  // A finished (or aborted) sequence: releases its blocks and retires its cached chain.
  void free(uint64_t seq);

  std::span<const int32_t> blocks(uint64_t seq) const;
  bool holds(uint64_t seq) const { return seqs_.count(seq) != 0; }

  // Transfer between engines. export_blocks names the blocks of seq's first n_tokens (they stay
  // pinned by seq). import_blocks starts a new sequence whose tokens[0, n_tokens) arrive from
  // elsewhere: the cached prefix is pinned, blocks for the rest are allocated, and the result
  // says which need bytes written; nothing if the pool lacks blocks. Commit the sequence once
  // they are written.
  kv_export export_blocks(uint64_t seq, std::span<const token_id> tokens, int32_t n_tokens);
  std::optional<kv_import> import_blocks(uint64_t seq, std::span<const token_id> tokens, int32_t n_tokens);

  std::vector<kv_event> drain_events() { return pool_.drain_events(); }
  std::vector<uint64_t> cached_hashes() const { return pool_.cached_hashes(); }

 private:
  struct entry {
    std::vector<int32_t> blocks;      // block table
    std::vector<block_hash> hashes;   // chained hashes of full blocks, as far as computed
    int32_t n_cached_blocks = 0;      // leading blocks handed to the prefix cache
    size_t n_last_allocated = 0;      // trailing blocks of the last allocate_slots
  };
  entry& at(uint64_t seq) { return seqs_[seq]; }
  void ensure_hashes(entry& e, std::span<const token_id> tokens, size_t n_blocks) const;

  block_pool pool_;
  uint64_t salt_;
  std::unordered_map<uint64_t, entry> seqs_;
};

}  // namespace troupe
