// mtp_proposer: the MTP drafter (speculative_config decoding_type MTP). It runs the target's own
// multi-token-prediction layer, stored in the target's checkpoint the way DeepSeek-V3 stores it
// (model.layers.<num_hidden_layers>.*, runtime/checkpoint.hpp's mtp_layer_weights), on the CPU:
//
//   entry at position p  = layer(eh_proj(cat[enorm(embed(token p + 1)), hnorm(h_p)]))
//   h_p                  = the target's final hidden state at p (after its final norm)
//   draft                = argmax head(shared_head.norm(out)), head = the target's
//
// The KV bookkeeping, catch-up, chained greedy drafts and rollback are head_chain's
// (runtime/spec/head_chain.hpp, shared with the Eagle-3 drafter); this file owns what is MTP's:
// the layer's weights (the target's checkpoint) and how a row's input is made from the
// embedding and the hidden state (eh_proj over the two norms). propose() makes the draft
// for the sequence's current length when the scheduler asks (as many tokens as it asks).
#pragma once

#include <cstdint>
#include <memory>

#include "runtime/engine/proposer.hpp"
#include "runtime/result.hpp"

namespace troupe {

class checkpoint;
struct model_config;

// speculative_config.num_nextn_predict_layers against the model: refused (naming the field)
// when the checkpoint has fewer MTP layers, or none.
[[nodiscard]] status check_mtp_layers(const model_config& c, int64_t num_nextn_predict_layers,
                                      const std::string& model_name);

struct mtp_options {
  int64_t num_nextn_predict_layers = 1;
  int32_t draft_len = 1;   // k: tokens drafted per step (the engine's max_draft_len)
  int n_threads = 0;       // 0: every core this process may run on
  int32_t block_size = 16;
  int32_t n_blocks = 0;    // the MTP layer's KV blocks; 0: enough for 1024 sequences of 1024
  int32_t max_pending = 512;  // rows kept for a paused sequence at most (head_chain_options)
  int32_t catch_up_window = 0;  // head_chain_options::catch_up_window (two-model)
};

class mtp_proposer final : public proposer {
 public:
  [[nodiscard]] static result<std::unique_ptr<mtp_proposer>> create(std::shared_ptr<const checkpoint> target,
                                                                    const mtp_options& o);
  ~mtp_proposer() override;

  draft propose(const sequence& s, int32_t max_tokens) override;
  std::vector<draft> propose_batch(std::span<const sequence* const> seqs, std::span<const int32_t> max_tokens) override;
  bool drafts_trees() const override { return true; }
  void forget(const sequence& s) override;
  double last_catch_up_seconds() const override;
  int64_t last_catch_up_rows() const override;
  int32_t catch_up_rows(const sequence& s) const override;
  double catch_up_rows_per_token() const override { return 1; }
  const char* name() const override { return "MTP"; }
  bool wants_hidden() const override { return true; }
  void observe(std::span<const kept_rows> rows, size_t H) override;

  // KV blocks of the MTP layer held by sequences (0 once every sequence is forgotten).
  int32_t kv_blocks_used() const;
  // Rows the MTP layer has run (catch-up and chain).
  int64_t rows_run() const;
  // Sequences it keeps state for.
  size_t n_tracked() const;

  struct impl;

 private:
  explicit mtp_proposer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
