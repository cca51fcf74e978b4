// eagle3_proposer: the Eagle-3 drafter (speculative_config decoding_type Eagle, with
// speculative_model_dir: the head's directory, config.json architectures
// LlamaForCausalLMEagle3, model.safetensors with the public checkpoint's names). The head reads
// the target's residual stream at three layers of the same forward (low, mid, high:
// eagle_aux_hidden_state_layer_ids, vLLM's convention: id j is the stream entering layer j):
//
//   g_i    = fc(cat[low_i, mid_i, high_i])                       step 0: the target's states
//   a_in   = cat[input_layernorm(embed(x_{i+1})), hidden_norm(g_i)]   (q/k/v read 2 * hidden)
//   r      = g_i + o_proj(attn(a_in));  out = r + mlp(post_attention_layernorm(r))
//   draft  = argmax lm_head(norm(out));  chained steps feed out back as g
//
// embed_tokens is the target's. The scheduler asks the target's executor for those layers'
// residuals (proposer::aux_hidden_layers, forward_batch::aux_layers). Two modes:
//
// two-model (eagle3_one_model false): the forward hands out, per position, [final, low, mid,
//   high]; after the step the head runs as its own model (its own thread pool): the whole layer
//   over every kept position (the catch-up), then the chain of k drafts when asked.
// one-model (true; the CPU executor only: executor::runs_fused_head, refused elsewhere naming
//   the field): the head is a layer of the target's forward (fused_head, executor.hpp). The
//   row at position i reads embed(x_{i+1}); x_{i+1} is known before the forward for every row
//   but a sequence's last (a chain's drafts, a prompt chunk that the prompt goes on after, a
//   tree's spine): plan_fused, when the batch is scheduled, gives those rows head KV slots.
//   Inside the forward, right after the target's last layer and on its pool: g = fc(aux) for
//   every row (the aux residuals stay in the executor; a hidden row is [final, g]) and the
//   planned rows' keys and values, nothing more (only the last kept row's output feeds the
//   chain, and its x_{i+1} is sampled after the forward). After the step, observe() keeps the
//   planned rows whose x_{i+1} the step confirmed (a chain: all but the last kept one) and runs
//   the rest (a chain: that one row, whose token was just sampled; a tree whose path left the
//   spine: from where it left) as two-model does; rejected rows' head KV is overwritten, as
//   head_chain rolls back. The drafts are two-model's, token for token. It saves the aux rows'
//   copy out of the forward (3 n_embd per position) and the head's q, attention, o_proj and MLP
//   for every kept position but the last; it costs the keys and values of planned rows whose
//   draft is rejected, and adds the head to the target's step time.
//
// It owns: the head's weights (mapped from its directory) and how a row's input is made. The
// head layer's paged KV, the catch-up after each step, the chained greedy drafts and their
// rollback are head_chain's (runtime/spec/head_chain.hpp, shared with MTP). It does not own
// the target's KV, verification or sampling (the engine does).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine/proposer.hpp"
#include "runtime/result.hpp"

namespace troupe {

class checkpoint;

struct eagle3_options {
  std::string dir;         // the head's directory (config.json, model.safetensors)
  int32_t draft_len = 1;   // k: tokens drafted per step (the engine's max_draft_len)
  int n_threads = 0;       // 0: every core this process may run on
  int32_t block_size = 16;
  int32_t n_blocks = 0;    // the head layer's KV blocks; 0: enough for 1024 sequences of 1024
  bool one_model = false;  // eagle3_one_model: the head's catch-up inside the target's forward
  int32_t catch_up_window = 0;  // head_chain_options::catch_up_window (two-model)
};

class eagle3_proposer final : public proposer {
 public:
  // Refused, naming speculative_config.speculative_model_dir: a missing directory or file, an
  // architecture other than LlamaForCausalLMEagle3, a target_hidden_size, vocabulary or head
  // dimension that does not fit the target, an aux layer id outside the target's layers.
  [[nodiscard]] static result<std::unique_ptr<eagle3_proposer>> create(std::shared_ptr<const checkpoint> target,
                                                                       const eagle3_options& o);
  ~eagle3_proposer() override;

  draft propose(const sequence& s, int32_t max_tokens) override;
  std::vector<draft> propose_batch(std::span<const sequence* const> seqs, std::span<const int32_t> max_tokens) override;
  bool drafts_trees() const override { return true; }
  void forget(const sequence& s) override;
  double last_catch_up_seconds() const override;
  int64_t last_catch_up_rows() const override;
  int32_t catch_up_rows(const sequence& s) const override;
  double catch_up_rows_per_token() const override { return 1; }
  const char* name() const override { return "Eagle"; }
  bool wants_hidden() const override { return true; }
  std::vector<int32_t> aux_hidden_layers() const override;
  void observe(std::span<const kept_rows> rows, size_t W) override;
  std::shared_ptr<fused_head> fused() override;
  void plan_fused(const forward_batch& b, std::span<const sequence* const> seqs) override;

  // KV blocks of the head layer held by sequences (0 once every sequence is forgotten).
  int32_t kv_blocks_used() const;
  size_t n_tracked() const;
  // Rows the head has run: catch-up rows (from the target's states) and chained rows, and
  // (one-model) the rows it ran inside the target's forward.
  int64_t rows_run() const;
  // One-model: rows run inside the target's forward (keys and values only), and catch-up rows
  // run after it; two-model: 0, and every catch-up row.
  int64_t fused_rows_run() const;
  int64_t catch_up_rows_run() const;
  // "one-model" (eagle3_one_model true) or "two-model".
  const char* mode() const;

  struct impl;

 private:
  explicit eagle3_proposer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
