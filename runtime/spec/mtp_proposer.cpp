#include "runtime/spec/mtp_proposer.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/spec/head_chain.hpp"
#include "runtime/packed_weights.hpp"
#include "runtime/weight_matrix_of.hpp"

namespace troupe {

status check_mtp_layers(const model_config& c, int64_t n, const std::string& model_name) {
  const std::string field = "llm_config.speculative_config.num_nextn_predict_layers";
  if (c.n_nextn_layers <= 0)
    return make_error(fmt::format("{}: the model {} has no MTP layers (no num_nextn_predict_layers in its "
                                  "config), so decoding_type MTP cannot run on it",
                                  field, model_name));
  if (n > c.n_nextn_layers)
    return make_error(fmt::format("{}: {} asked, but the model {} has {} MTP layer{}", field, n, model_name,
                                  c.n_nextn_layers, c.n_nextn_layers == 1 ? "" : "s"));
  if (n != 1)
    return make_error(fmt::format("{}: troupe runs one MTP layer (chained for max_draft_len drafts), not {}", field, n));
  return {};
}

// The MTP layer's inputs: x = eh_proj(cat[enorm(embed(token)), hnorm(hidden)]), a = its
// attention norm; hidden is the target's final state (the first n_embd of its row) or the
// layer's own previous output.
struct mtp_proposer::impl final : head_inputs {
  std::shared_ptr<const checkpoint> model;
  const model_config& c;
  const mtp_layer_weights& w;
  cpu::precision prec = cpu::default_precision();
  std::shared_ptr<packed_weights> packed;  // the target's, shared with its executor
  cpu::weight_matrix embd, eh;
  std::vector<float> eh_in;
  std::unique_ptr<head_chain> chain;

  impl(std::shared_ptr<const checkpoint> m, const mtp_options& o)
      : model(std::move(m)), c(model->config()), w(model->weights().mtp.front()) {
    const model_weights& W = model->weights();
    packed = packed_weights_of(model);
    embd = weight_matrix_of(W.tok_embd);
    eh = packed->matrix(w.eh_proj, prec);
    head_layer L;
    L.n_embd = c.n_embd;
    L.n_head = c.n_head;
    L.n_head_kv = c.n_head_kv;
    L.head_dim = c.head_dim;
    L.n_ff = c.n_ff;
    L.d_in = c.n_embd;
    L.rms_eps = c.rms_eps;
    L.interleaved_rope = c.rope == rope_style::interleaved;
    L.inv_freq = c.rope_inv_freq();
    if (!W.rope_freq_factors.empty())
      for (size_t i = 0; i < L.inv_freq.size(); ++i) L.inv_freq[i] /= W.rope_freq_factors[i];
    const layer_weights& B = w.block;
    L.wq = packed->matrix(B.wq, prec);
    L.wk = packed->matrix(B.wk, prec);
    L.wv = packed->matrix(B.wv, prec);
    L.wo = packed->matrix(B.wo, prec);
    L.w_gate = packed->matrix(B.w_gate, prec);
    L.w_up = packed->matrix(B.w_up, prec);
    L.w_down = packed->matrix(B.w_down, prec);
    if (c.qkv_bias) {
      L.bq = B.bq.data();
      L.bk = B.bk.data();
      L.bv = B.bv.data();
    }
    if (c.qk_norm) {
      L.q_norm = B.q_norm.data();
      L.k_norm = B.k_norm.data();
    }
    L.ffn_norm = B.ffn_norm.data();
    L.final_norm = w.shared_head_norm.data();
    L.head = packed->matrix(W.output, prec);
    head_chain_options ho;
    ho.draft_len = o.draft_len;
    ho.n_threads = o.n_threads;
    ho.block_size = o.block_size;
    ho.n_blocks = o.n_blocks;
    ho.max_pending = o.max_pending;
    ho.catch_up_window = o.catch_up_window;
    chain = std::make_unique<head_chain>(std::move(L), *this, ho);
  }

  columns target_columns(size_t /*W*/) const override { return {0, static_cast<size_t>(c.n_embd)}; }

  void build(int64_t T, const token_id* toks, const float* const* hidden, bool /*from_target*/, float* x, float* a,
             cpu::thread_pool& pool) override {
    const int64_t H = c.n_embd;
    const float eps = static_cast<float>(c.rms_eps);
    if (eh_in.size() < static_cast<size_t>(T * 2 * H)) eh_in.resize(static_cast<size_t>(T * 2 * H));
    for (int64_t t = 0; t < T; ++t) {
      float* row = eh_in.data() + t * 2 * H;
      cpu::dequantize_rows(embd, toks[t], toks[t] + 1, row);
      cpu::rms_norm(row, H, 1, H, w.enorm.data(), eps, row, H);
      cpu::rms_norm(hidden[t], H, 1, H, w.hnorm.data(), eps, row + H, H);
    }
    cpu::matmul(eh_in.data(), 2 * H, T, eh, x, H, pool, prec);  // [T, H]: the residual stream
    cpu::rms_norm(x, H, T, H, w.block.attn_norm.data(), eps, a, H);
  }
};

mtp_proposer::mtp_proposer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
mtp_proposer::~mtp_proposer() = default;

result<std::unique_ptr<mtp_proposer>> mtp_proposer::create(std::shared_ptr<const checkpoint> target,
                                                           const mtp_options& o) {
  if (!target) return make_error("MTP: no target model");
  const model_config& c = target->config();
  TROUPE_CHECK(check_mtp_layers(c, o.num_nextn_predict_layers, target->path()));
  if (target->weights().mtp.empty())
    return make_error(fmt::format("llm_config.speculative_config.num_nextn_predict_layers: {} carries no MTP layer "
                                  "weights (a GGUF file keeps none)",
                                  target->path()));
  if (o.draft_len < 1) return make_error("MTP: max_draft_len must be at least 1");
  if (o.block_size < 1) return make_error("MTP: the KV block size must be at least 1");
  try {
    return std::unique_ptr<mtp_proposer>(new mtp_proposer(std::make_unique<impl>(std::move(target), o)));
  } catch (const std::bad_alloc&) {
    return make_error(fmt::format("MTP: cannot reserve {} KV blocks", o.n_blocks));
  }
}

draft mtp_proposer::propose(const sequence& s, int32_t max_tokens) { return impl_->chain->propose(s, max_tokens, tree_width()); }
std::vector<draft> mtp_proposer::propose_batch(std::span<const sequence* const> seqs,
                                             std::span<const int32_t> max_tokens) {
  return impl_->chain->propose_batch(seqs, max_tokens, tree_width());
}
void mtp_proposer::forget(const sequence& s) { impl_->chain->forget(s); }
double mtp_proposer::last_catch_up_seconds() const { return impl_->chain->last_catch_up_seconds(); }
int64_t mtp_proposer::last_catch_up_rows() const { return impl_->chain->last_catch_up_rows(); }
int32_t mtp_proposer::catch_up_rows(const sequence& s) const { return impl_->chain->pending_rows(s); }
void mtp_proposer::observe(std::span<const kept_rows> rows, size_t W) { impl_->chain->observe(rows, W); }
int32_t mtp_proposer::kv_blocks_used() const { return impl_->chain->kv_blocks_used(); }
int64_t mtp_proposer::rows_run() const { return impl_->chain->rows_run(); }
size_t mtp_proposer::n_tracked() const { return impl_->chain->n_tracked(); }

}  // namespace troupe
