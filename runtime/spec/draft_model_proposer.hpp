// draft_model_proposer: the DraftTarget drafter (troupe's extension, after MLC's small draft
// model): a smaller model with the target's tokenizer, run by its own executor over its own
// paged KV cache, drafts k tokens autoregressively.
//
// It owns the draft executor (made by runtime/engine/factory.cpp like the target's), a block
// pool for it (kv_cache_manager without prefix cache), and per sequence the tokens whose keys
// and values that cache holds. It keeps in step with the target lazily: before drafting for a
// sequence it keeps the longest common prefix of what it computed and the sequence's tokens now
// (accepted drafts stay, rejected ones are truncated away: the rollback to the accepted length),
// then computes the rest (the prompt, on the first draft) in the same forward as the other
// sequences' catch-up. Drafting is batched: one draft forward per draft position for every
// sequence still drafting. Drafts are the drafter's argmax at every temperature (probs empty:
// the output processor's rejection sampling treats them as deterministic, which keeps sampling
// lossless). It never touches the target's KV.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "runtime/engine/kv_cache_manager.hpp"
#include "runtime/engine/proposer.hpp"
#include "runtime/executor.hpp"
#include "runtime/result.hpp"

namespace troupe {

class draft_model_proposer final : public proposer {
 public:
  // ex: the draft model's executor (its KV cache is this drafter's alone). n_tokens: ids the
  // tokenizer knows (ids beyond are never drafted). max_batch_tokens: tokens per draft forward
  // at most (a sequence whose catch-up is longer gets no draft that step).
  [[nodiscard]] static result<std::unique_ptr<draft_model_proposer>> create(std::shared_ptr<executor> ex,
                                                                            int64_t n_tokens,
                                                                            int32_t max_batch_tokens);
  draft propose(const sequence& s, int32_t max_tokens) override;
  std::vector<draft> propose_batch(std::span<const sequence* const> seqs, std::span<const int32_t> max_tokens) override;
  void forget(const sequence& s) override;
  const char* name() const override { return "DraftTarget"; }
  // A tree (tree_width() > 1): the chain of argmaxes, and beside each chain token the next
  // tree_width() - 1 best tokens of the same logits row as leaves (no extra draft forward).
  bool drafts_trees() const override { return true; }
  double last_catch_up_seconds() const override { return catch_up_s_; }
  int64_t last_catch_up_rows() const override { return catch_up_rows_; }
  int32_t catch_up_rows(const sequence& s) const override;

  // Blocks of the drafter's cache in use (0 once every sequence is forgotten).
  int32_t kv_blocks_used() const { return kv_.n_blocks() - kv_.n_available(); }
  int32_t kv_blocks_total() const { return kv_.n_blocks(); }
  // A draft forward failed (the drafts of that step were dropped): why, else empty.
  const std::string& last_error() const { return last_error_; }

 private:
  draft_model_proposer(std::shared_ptr<executor> ex, int64_t n_tokens, int32_t max_batch_tokens);

  std::shared_ptr<executor> ex_;
  int64_t n_tokens_;
  int64_t n_vocab_;
  int32_t max_batch_tokens_;
  int32_t max_position_;
  kv_cache_manager kv_;
  std::unordered_map<uint64_t, std::vector<token_id>> computed_;  // seq -> tokens in the draft cache
  std::string last_error_;
  double catch_up_s_ = 0;  // of the last propose_batch: the catch-up forward beyond one token per sequence
  int64_t catch_up_rows_ = 0;
};

}  // namespace troupe
