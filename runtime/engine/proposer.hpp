// proposer: where draft tokens come from (speculative decoding). The scheduler asks it, once
// per step, for a draft for each decoding sequence that may speculate; the target model then
// verifies the draft in the same batched forward as everything else, and the output processor
// keeps the longest prefix the target agrees with. A proposer never touches the target's KV.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runtime/engine/step.hpp"

namespace troupe {

struct sequence;

// What one step kept of a sequence, for a drafter that reads the target's hidden states: the
// keys and values of positions n_past .. n_computed - 1 are now the target's, and hidden holds
// the step's hidden rows from position n_past on ([n_new, W]; the first n_computed - n_past are
// the kept ones), each the final hidden state (after the final norm, n_embd wide) followed by
// the residual stream entering each layer of the proposer's aux_hidden_layers() (n_embd each):
// W = n_embd * (1 + aux_hidden_layers().size()). s.tokens holds every token up to n_computed.
struct kept_rows {
  const sequence* s = nullptr;
  int32_t n_past = 0;
  int32_t n_computed = 0;
  std::span<const float> hidden;
};

class proposer {
 public:
  virtual ~proposer() = default;
  // Up to max_tokens draft tokens to follow s.tokens (max_tokens >= 1). An empty draft is
  // plain decoding for this step.
  virtual draft propose(const sequence& s, int32_t max_tokens) = 0;
  // Drafts for several sequences at once (max_tokens[i] >= 1 for seqs[i]): a drafter that runs
  // a model drafts them all in one forward per draft position. By default, one propose each.
  virtual std::vector<draft> propose_batch(std::span<const sequence* const> seqs, std::span<const int32_t> max_tokens) {
    std::vector<draft> out;
    out.reserve(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) out.push_back(propose(*seqs[i], max_tokens[i]));
    return out;
  }
  // Seconds of the last propose/propose_batch spent catching up (computing tokens already
  // decided, e.g. a draft model's prefill of the prompt) rather than drafting: the adaptive draft
  // length charges drafts only for the rest.
  virtual double last_catch_up_seconds() const { return 0; }
  // Rows that catch-up computed (its cost per row is what the adaptive length charges).
  virtual int64_t last_catch_up_rows() const { return 0; }
  // Rows s would catch up before its next draft (0 where nothing is owed): the adaptive length
  // probes the sequence that owes least.
  virtual int32_t catch_up_rows(const sequence& /*s*/) const { return 0; }
  // Catch-up rows a drafting sequence owes per token it emits (a head drafter runs its layer
  // over every kept position: 1; a draft model computes accepted drafts while drafting: 0).
  virtual double catch_up_rows_per_token() const { return 0; }
  // s has finished or was aborted: drop what is kept for it.
  virtual void forget(const sequence& /*s*/) {}
  virtual const char* name() const = 0;
  // Tree drafts (spec_tree_width > 1): a drafter that can propose them says so; the engine then
  // sets the width, and propose returns a tree of at most that many children per node (step.hpp).
  virtual bool drafts_trees() const { return false; }
  void set_tree_width(int32_t w) { tree_width_ = w; }
  int32_t tree_width() const { return tree_width_; }
  // A drafter that reads the target's hidden states (MTP) says so: the scheduler then asks
  // for a hidden row at every position each generating sequence computes, and the engine
  // hands what each step kept to observe() once the step is applied (sequences that finished
  // in it left out: they were forgotten).
  // Eagle-3 also reads intermediate layers: the layers whose input residual stream each hidden
  // row carries after the final state (vLLM's eagle_aux_hidden_state_layer_ids; see
  // forward_batch::aux_layers). observe()'s W is the row width.
  virtual bool wants_hidden() const { return false; }
  virtual std::vector<int32_t> aux_hidden_layers() const { return {}; }
  virtual void observe(std::span<const kept_rows> /*rows*/, size_t /*W*/) {}
  // eagle3_one_model: the head the target's forward runs (forward_batch::head, executor.hpp), or
  // null (a drafter that runs after the step). With one, the scheduler sets it on every batch
  // that asks for hidden rows and calls plan_fused once the batch is built: seqs is parallel to
  // b.seqs, null where the drafter reads nothing (a sequence without a hidden row per new token).
  virtual std::shared_ptr<fused_head> fused() { return nullptr; }
  virtual void plan_fused(const forward_batch& /*b*/, std::span<const sequence* const> /*seqs*/) {}

 private:
  int32_t tree_width_ = 1;
};

}  // namespace troupe
