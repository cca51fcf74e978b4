// head_chain: what the MTP and Eagle-3 drafters share. Both run one decoder layer (a "head")
// on the CPU beside the target, fed at position i with the embedding of token i + 1 and a
// hidden state tied to position i, and predict token i + 2:
//
//   step 0 (catch-up)  the hidden state is the target's (kept_rows: its hidden row at i)
//   step j >= 1        the hidden state is the head's own pre-norm output of step j - 1, and the
//                      token is the draft of step j - 1 (a greedy chain, k drafts per step)
//   layer              a_in -> q/k/v (rope at the row's position) -> paged attention over the
//                      head's own KV -> x + o_proj; x + mlp(post_norm(x)) = out
//   draft              argmax head(final_norm(out))
//
// How a row's residual x and attention input a_in are made from (token, hidden) is the
// drafter's part (head_inputs): MTP: x = eh_proj(cat[enorm(e), hnorm(h)]), a_in = norm(x);
// Eagle-3: x = fc(cat[low, mid, high]) at step 0, else out; a_in = cat[norm(e), norm(x)].
//
// It owns: the head layer's paged KV (blocks, each sequence's table of them), the catch-up
// (an entry for every position the target kept; two-model, the rows are kept after each engine
// step and run lazily, when the sequence is next asked for drafts, all sequences asked in one
// batch: a sequence the adaptive draft length pauses costs no head layer; one-model, inside the
// target's forward, see below), the chained drafts and their rollback: the kept count never
// moves past the target's, so a rejected draft leaves nothing behind (the next step truncates to
// the target's n_past). It does not own the head's weights (the drafter's, borrowed) nor the
// target's KV, verification or sampling. Positions whose target hidden state it never saw (a
// prefix-cache hit, an imported request) are left out of the head's attention: a sequence's
// entries start at the first position it is given.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kernels/cpu/matmul.hpp"
#include "runtime/engine/proposer.hpp"

namespace troupe {

namespace cpu {
class thread_pool;
}

// The head's decoder layer as the kernels see it (views into checkpoint bytes, not owned).
struct head_layer {
  int64_t n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0;
  int64_t d_in = 0;  // width of the attention input a_in (MTP: n_embd; Eagle-3: 2 n_embd)
  double rms_eps = 1e-5;
  bool interleaved_rope = false;
  std::vector<double> inv_freq;  // [head_dim / 2], scaling applied
  cpu::weight_matrix wq, wk, wv, wo, w_gate, w_up, w_down;
  const float* bq = nullptr;  // q/k/v biases, or null
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* q_norm = nullptr;  // per-head q/k norms, or null
  const float* k_norm = nullptr;
  const float* ffn_norm = nullptr;    // post_attention_layernorm
  const float* final_norm = nullptr;  // before the draft head
  cpu::weight_matrix head;            // [n_vocab, n_embd]
};

// Pages in now the bytes matmul will read of w: a byte of every page of its mapped original,
// and nothing where w is packed (the packed copy was written at load; the original is not read).
void touch_weights(const cpu::weight_matrix& w);

// The drafter's part: a step's rows from (token, hidden) pairs.
class head_inputs {
 public:
  virtual ~head_inputs() = default;
  // For rows t < T: x[t] ([T, n_embd], the residual) and a[t] ([T, d_in], the attention input)
  // from token toks[t] and hidden row hidden[t]: the target's row (W wide: its final state then
  // the aux layers', proposer.hpp's kept_rows) when from_target, else the head's previous
  // output (n_embd wide).
  // from_target rows hold only target_columns(W) of the target's row (what the drafter reads).
  virtual void build(int64_t T, const token_id* toks, const float* const* hidden, bool from_target, float* x,
                     float* a, cpu::thread_pool& pool) = 0;
  // The columns [first, first + count) of a target row W wide that build() reads (two-model
  // keeps only these while a sequence's rows wait for the catch-up: MTP the final state, Eagle-3
  // the three aux layers' residuals, not the final state).
  struct columns {
    size_t first = 0, count = 0;
  };
  virtual columns target_columns(size_t W) const { return {0, W}; }
};

struct head_chain_options {
  int32_t draft_len = 1;  // k: tokens drafted per step
  // eagle3_one_model: the catch-up's rows whose next token the batch holds run inside the
  // target's forward (plan_fused, run_fused); observe() then gets rows [final, g] (2 n_embd:
  // g is the drafter's hidden input, made in the forward) and runs only the rest.
  bool one_model = false;
  int n_threads = 0;      // 0: every core this process may run on
  int32_t block_size = 16;
  int32_t n_blocks = 0;   // the head layer's KV blocks; 0: enough for 1024 sequences of 1024
  // Rows a sequence may keep pending (kept by the target, not yet run through the head) while
  // it is not asked for drafts; at that many the head's layer runs over them at once.
  int32_t max_pending = 512;
  // Two-model, above 0 (the adaptive draft length sets it: kAdaptiveCatchUpWindow): a catch-up
  // runs at most this many of a sequence's pending rows, the latest; its entries restart there
  // (older ones dropped, as if never seen), and a paused sequence at max_pending drops its
  // oldest rows instead of running them. A sequence the chooser probes after a long pause (or
  // whose first draft follows a long prompt) then pays for a window, not for every row since;
  // one that drafts step after step owes a few rows a step and loses nothing. 0: every row.
  int32_t catch_up_window = 0;
};

// The catch-up window the adaptive draft length gives a head drafter (head_chain_options). The
// shipped heads barely read far back: with fixed k = 3 at batch 1 (troupe bench spec) MTP's
// mean accepted length was 2.01 with every row, 2.00 with a window of 48 and 2.01 with 16;
// Eagle-3's 1.96, 1.97 and 1.93.
inline constexpr int32_t kAdaptiveCatchUpWindow = 32;

// One sequence of a batch, for plan_fused.
struct fused_seq_in {
  const sequence* s = nullptr;       // null: the head does not read this sequence this step
  int32_t n_past = 0, n_new = 0;
  const token_id* tokens = nullptr;  // the batch's n_new tokens of this sequence
  const int32_t* parents = nullptr;  // a tree verification's n_new parents, or null: a chain
  int32_t hidden_row0 = 0;           // its first hidden row in the batch (it has n_new)
};

class head_chain {
 public:
  // Reserves the KV (lazily: pages cost nothing until written); throws std::bad_alloc.
  head_chain(head_layer layer, head_inputs& in, const head_chain_options& o);
  ~head_chain();
  head_chain(const head_chain&) = delete;
  head_chain& operator=(const head_chain&) = delete;

  // After an engine step: what the target kept (W: the hidden rows' width). Two-model: copied;
  // the head's layer runs over those rows (the catch-up) and the drafts are made when the
  // sequence is next asked for drafts, as many as asked (up to draft_len), so that a sequence
  // the adaptive draft length leaves plain costs a copy of its rows, not the layer nor the head
  // over the vocabulary; the catch-up of every sequence asked runs in one batch. One-model: the
  // rows the forward did not run are caught up now (the drafts still wait to be asked).
  void observe(std::span<const kept_rows> rows, size_t W);
  // width > 1 (spec_tree_width): the chain with the head's width - 1 next-best tokens at each
  // position as leaves beside it (draft_tree_with_siblings).
  draft propose(const sequence& s, int32_t max_tokens, int32_t width = 1);
  std::vector<draft> propose_batch(std::span<const sequence* const> seqs, std::span<const int32_t> max_tokens,
                                   int32_t width = 1);
  void forget(const sequence& s);

  // eagle3_one_model. plan_fused, when a batch is scheduled: for each sequence, the leading
  // rows whose next token is already known (a chain's rows but its last; a prompt chunk's every
  // row when the prompt goes on after it; a tree's spine, which is laid out first) get head KV
  // slots and are remembered with the token each reads. run_fused, inside that batch's forward
  // (on the executor's pool): those rows' keys and values only (their outputs are never read:
  // only the last kept row's output starts a chain, and its next token is sampled after the
  // forward), from g = hidden row (hidden_row0 + j) columns [g_col, g_col + n_embd). observe()
  // then keeps the planned rows whose token the step confirmed and runs the rest (one row a
  // sequence when its drafts were all accepted or the first one rejected on a chain).
  void plan_fused(std::span<const fused_seq_in> seqs);
  void run_fused(const float* hidden, int64_t ld, int64_t g_col, cpu::thread_pool& pool);
  // Rows run inside the target's forward (run_fused), and rows observe() ran after it.
  int64_t fused_rows_run() const;
  int64_t catch_up_rows_run() const;

  int32_t kv_blocks_used() const;
  size_t n_tracked() const;
  // Rows of s kept by the target and not yet run through the head.
  int32_t pending_rows(const sequence& s) const;
  // The catch-up within the last propose_batch: seconds and rows.
  double last_catch_up_seconds() const;
  int64_t last_catch_up_rows() const;
  // Rows the head has run (catch-up and chain): proof that it acts.
  int64_t rows_run() const;
  cpu::thread_pool& pool();

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
