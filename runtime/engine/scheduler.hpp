// scheduler: decides what each step of one engine computes.
//
// It owns the waiting and running queues (by sequence number) and the policy over them:
// continuous batching inside max_batch_size and the max_num_tokens budget; chunked prefill;
// hybrid split-fuse (prefill chunks beside decodes, capped from measured step times) or chunked
// alternation of prefill and decode steps; priorities with aging; preemption by recompute
// under block pressure (the lowest-priority, latest sequence goes first); and, for decoding
// sequences, draft tokens from the proposer to verify. It classifies every scheduled sequence
// explicitly (prefill, decode, verify) and writes a step_plan.
//
// It does not own the sequences (the engine does, and passes its table), the blocks (it asks
// the KV cache manager for slots), sampling, or the device.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "runtime/engine/draft_chooser.hpp"
#include "runtime/engine/step.hpp"

namespace troupe {

struct engine_config;
struct sequence;
class kv_cache_manager;
class proposer;

using sequence_table = std::unordered_map<uint64_t, std::unique_ptr<sequence>>;

class scheduler {
 public:
  // All references must outlive the scheduler; prop may be null (no speculation).
  scheduler(const engine_config& cfg, sequence_table& seqs, kv_cache_manager& kv, proposer* prop);
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;

  void add_waiting(uint64_t seq);  // a new request
  void add_running(uint64_t seq);  // a request whose KV is in place already (imported)
  void remove(uint64_t seq);       // from whichever queue holds it

  step_plan schedule();
  // A step's forward took `seconds` (< 0: unknown): it tunes the hybrid chunk cap.
  void observe(const step_stats& st, double seconds);
  // A sequence verified the draft d and accepted `accepted` of it (a tree: along accepted_nodes,
  // the accepted path's node indices); the adaptive draft length learns from it.
  void observe_verify(sequence& s, const draft& d, int32_t accepted, std::span<const int32_t> accepted_nodes);
  const draft_chooser& chooser() const { return chooser_; }

  bool has_work() const { return !running_.empty() || !waiting_.empty(); }
  size_t n_running() const { return running_.size(); }
  size_t n_waiting() const { return waiting_.size(); }
  uint64_t step_no() const { return step_no_; }

 private:
  sequence& get(uint64_t s) const { return *seqs_.at(s); }
  void insert_running(uint64_t seq);
  void preempt(uint64_t seq);
  size_t best_waiting() const;
  int32_t hybrid_cap();
  // How many draft tokens s may verify this step (0: decode plainly).
  int32_t draft_room(const sequence& s, int32_t budget, int32_t ceiling) const;
  // How many nodes a tree draft of s may hold this step (INT32_MAX: chains, no tree).
  int32_t tree_nodes(const sequence& s, int32_t budget) const;
  // Each decoding sequence's draft length this step (adaptive: the chooser's; else the ceiling).
  std::unordered_map<uint64_t, int32_t> draft_lengths(bool allow_decode);
  // Trees with the adaptive length: each sequence's depth (the chooser's choose_tree), and
  // whether a tree or its spine, kept in s.acceptance.tree.
  std::vector<int32_t> tree_depths(std::span<const uint64_t> ids, std::span<const int32_t> caps);
  // Drafts are asked as trees, but some sequences were given a chain this step.
  bool adaptive_trees() const;
  // Tokens s may compute this step at most, for its own sake (INT32_MAX: no limit of its own).
  int32_t row_cap(const sequence& s) const;

  const engine_config& cfg_;
  sequence_table& seqs_;
  kv_cache_manager& kv_;
  proposer* prop_;
  std::vector<uint64_t> running_;  // ordered by (priority, arrival)
  std::vector<uint64_t> waiting_;
  uint64_t step_no_ = 0;
  bool last_was_prefill_ = false;
  // Step-cost model for the hybrid chunk cap: decode-only step time, its cost per decoding
  // sequence, and the extra time per prefill token in a fused step (exponential moving
  // averages of measured forwards).
  double decode_step_s_ = 0;
  double decode_row_s_ = 0;
  double prefill_token_s_ = 0;
  int32_t last_cap_ = 0;
  draft_chooser chooser_;  // the cap of the last fused step (the cap at most doubles per step)
};

}  // namespace troupe
