#include "runtime/spec/eagle3_proposer.hpp"

#include <filesystem>
#include <fstream>
#include <new>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/ops.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/safetensors.hpp"
#include "runtime/spec/head_chain.hpp"
#include "runtime/packed_weights.hpp"
#include "runtime/weight_matrix_of.hpp"

namespace troupe {

namespace {

const char* const kField = "llm_config.speculative_config.speculative_model_dir";

struct head_config {
  int64_t hidden = 0, target_hidden = 0, n_ff = 0, n_head = 0, n_head_kv = 0, head_dim = 0, vocab = 0,
          draft_vocab = 0;
  double eps = 1e-5;
  std::vector<int32_t> aux;
};

result<head_config> read_config(const std::string& dir, const model_config& t) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return make_error(fmt::format("{} {}: no such directory", kField, dir));
  const fs::path cp = fs::path(dir) / "config.json";
  std::ifstream in(cp);
  if (!in) return make_error(fmt::format("{} {}: no config.json there", kField, dir));
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error(fmt::format("{} {}: config.json is not a JSON object", kField, dir));
  const auto arch = j.value("architectures", nlohmann::json::array());
  if (!arch.is_array() || arch.empty() || !arch[0].is_string() || arch[0].get<std::string>() != "LlamaForCausalLMEagle3")
    return make_error(fmt::format("{} {}: config.json architectures is {}, not an Eagle-3 head "
                                  "(LlamaForCausalLMEagle3)",
                                  kField, dir, arch.dump()));
  head_config h;
  try {
    h.hidden = j.at("hidden_size").get<int64_t>();
    h.target_hidden = j.value("target_hidden_size", h.hidden);
    h.n_ff = j.at("intermediate_size").get<int64_t>();
    h.n_head = j.at("num_attention_heads").get<int64_t>();
    h.n_head_kv = j.value("num_key_value_heads", h.n_head);
    h.head_dim = j.value("head_dim", h.n_head > 0 ? h.hidden / h.n_head : 0);
    h.vocab = j.at("vocab_size").get<int64_t>();
    h.draft_vocab = j.value("draft_vocab_size", h.vocab);
    h.eps = j.value("rms_norm_eps", 1e-5);
    h.aux = j.at("eagle_aux_hidden_state_layer_ids").get<std::vector<int32_t>>();
  } catch (const nlohmann::json::exception& e) {
    return make_error(fmt::format("{} {}: config.json: {}", kField, dir, e.what()));
  }
  if (h.target_hidden != t.n_embd || h.hidden != t.n_embd)
    return make_error(fmt::format("{} {}: the head's hidden_size {} / target_hidden_size {} do not fit the target's "
                                  "hidden size {}",
                                  kField, dir, h.hidden, h.target_hidden, t.n_embd));
  if (h.vocab != t.n_vocab || h.draft_vocab != t.n_vocab)
    return make_error(fmt::format("{} {}: the head's vocab_size {} / draft_vocab_size {} differ from the target's "
                                  "vocabulary of {} (troupe runs heads over the target's whole vocabulary)",
                                  kField, dir, h.vocab, h.draft_vocab, t.n_vocab));
  if (h.head_dim != t.head_dim)
    return make_error(fmt::format("{} {}: the head's head_dim {} differs from the target's {} (the head shares its "
                                  "rotary embedding)",
                                  kField, dir, h.head_dim, t.head_dim));
  if (h.aux.size() != 3)
    return make_error(fmt::format("{} {}: eagle_aux_hidden_state_layer_ids has {} ids, an Eagle-3 head reads 3 (low, "
                                  "mid, high)",
                                  kField, dir, h.aux.size()));
  for (int32_t id : h.aux)
    if (id < 0 || id >= t.n_layer)
      return make_error(fmt::format("{} {}: eagle_aux_hidden_state_layer_ids holds {}, beyond the target's {} layers "
                                    "(ids 0 .. {})",
                                    kField, dir, id, t.n_layer, t.n_layer - 1));
  if (h.n_head <= 0 || h.n_head_kv <= 0 || h.n_head % h.n_head_kv != 0 || h.n_ff <= 0)
    return make_error(fmt::format("{} {}: config.json has {} heads, {} KV heads, intermediate_size {}", kField, dir,
                                  h.n_head, h.n_head_kv, h.n_ff));
  return h;
}

// A 1-D f32/bf16/f16 tensor as floats.
std::vector<float> floats_of(const tensor_view& t) {
  cpu::weight_matrix m = weight_matrix_of(tensor_view{t.type, {1, t.n_elements()}, t.data, t.n_bytes});
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  cpu::dequantize_rows(m, 0, 1, out.data());
  return out;
}

}  // namespace

// The head's inputs: step 0: x = fc(cat[low, mid, high]) (the target row's aux columns), chained
// steps: x = the previous output; a = cat[input_layernorm(embed(token)), hidden_norm(x)].
struct eagle3_proposer::impl final : head_inputs {
  std::shared_ptr<const checkpoint> target;
  safetensors_file file;
  head_config hc;
  cpu::precision prec = cpu::default_precision();
  packed_weights packed;  // the head's own matrices, packed at bind
  cpu::weight_matrix embd, fc;
  std::vector<float> hidden_norm, input_norm, post_norm, final_norm;
  std::vector<float> fc_in;
  std::unique_ptr<head_chain> chain;
  bool one_model = false;
  std::shared_ptr<fused_head> in_forward;  // one-model: what the target's forward runs

  impl(std::shared_ptr<const checkpoint> t, safetensors_file f, head_config h)
      : target(std::move(t)), file(std::move(f)), hc(std::move(h)) {}

  status bind(const eagle3_options& o) {
    const model_config& c = target->config();
    const int64_t H = hc.hidden;
    auto get = [&](const std::string& name, std::vector<int64_t> shape) -> result<const tensor_view*> {
      const tensor_view* tv = file.find(name);
      if (!tv) return make_error(fmt::format("{} {}: model.safetensors has no tensor {}", kField, o.dir, name));
      if (tv->shape != shape)
        return make_error(fmt::format("{} {}: tensor {} has shape {}, not {}", kField, o.dir, name, tv->shape_string(),
                                      tensor_view{tv->type, shape, nullptr, 0}.shape_string()));
      if (tv->type != dtype::f32 && tv->type != dtype::bf16 && tv->type != dtype::f16)
        return make_error(fmt::format("{} {}: tensor {} is {}, not f32, bf16 or f16", kField, o.dir, name,
                                      dtype_name(tv->type)));
      return tv;
    };
    const int64_t QD = hc.n_head * hc.head_dim, KVD = hc.n_head_kv * hc.head_dim;
    TROUPE_TRY(const tensor_view* fc_w, get("fc.weight", {H, 3 * hc.target_hidden}));
    TROUPE_TRY(const tensor_view* hn, get("midlayer.hidden_norm.weight", {H}));
    TROUPE_TRY(const tensor_view* inn, get("midlayer.input_layernorm.weight", {H}));
    TROUPE_TRY(const tensor_view* pn, get("midlayer.post_attention_layernorm.weight", {H}));
    TROUPE_TRY(const tensor_view* nw, get("norm.weight", {H}));
    TROUPE_TRY(const tensor_view* wq, get("midlayer.self_attn.q_proj.weight", {QD, 2 * H}));
    TROUPE_TRY(const tensor_view* wk, get("midlayer.self_attn.k_proj.weight", {KVD, 2 * H}));
    TROUPE_TRY(const tensor_view* wv, get("midlayer.self_attn.v_proj.weight", {KVD, 2 * H}));
    TROUPE_TRY(const tensor_view* wo, get("midlayer.self_attn.o_proj.weight", {H, QD}));
    TROUPE_TRY(const tensor_view* wg, get("midlayer.mlp.gate_proj.weight", {hc.n_ff, H}));
    TROUPE_TRY(const tensor_view* wu, get("midlayer.mlp.up_proj.weight", {hc.n_ff, H}));
    TROUPE_TRY(const tensor_view* wd, get("midlayer.mlp.down_proj.weight", {H, hc.n_ff}));
    TROUPE_TRY(const tensor_view* lm, get("lm_head.weight", {hc.draft_vocab, H}));
    embd = weight_matrix_of(target->weights().tok_embd);
    fc = packed.matrix(*fc_w, prec);
    hidden_norm = floats_of(*hn);
    input_norm = floats_of(*inn);
    post_norm = floats_of(*pn);
    final_norm = floats_of(*nw);
    head_layer L;
    L.n_embd = H;
    L.n_head = hc.n_head;
    L.n_head_kv = hc.n_head_kv;
    L.head_dim = hc.head_dim;
    L.n_ff = hc.n_ff;
    L.d_in = 2 * H;
    L.rms_eps = hc.eps;
    L.interleaved_rope = c.rope == rope_style::interleaved;
    L.inv_freq = c.rope_inv_freq();
    const model_weights& W = target->weights();
    if (!W.rope_freq_factors.empty())
      for (size_t i = 0; i < L.inv_freq.size(); ++i) L.inv_freq[i] /= W.rope_freq_factors[i];
    L.wq = packed.matrix(*wq, prec);
    L.wk = packed.matrix(*wk, prec);
    L.wv = packed.matrix(*wv, prec);
    L.wo = packed.matrix(*wo, prec);
    L.w_gate = packed.matrix(*wg, prec);
    L.w_up = packed.matrix(*wu, prec);
    L.w_down = packed.matrix(*wd, prec);
    L.ffn_norm = post_norm.data();
    L.final_norm = final_norm.data();
    L.head = packed.matrix(*lm, prec);
    head_chain_options ho;
    ho.draft_len = o.draft_len;
    ho.n_threads = o.n_threads;
    ho.block_size = o.block_size;
    ho.n_blocks = o.n_blocks;
    ho.one_model = one_model = o.one_model;
    ho.catch_up_window = o.catch_up_window;
    touch_weights(fc);
    chain = std::make_unique<head_chain>(std::move(L), *this, ho);
    return {};
  }

  columns target_columns(size_t W) const override {
    const auto H = static_cast<size_t>(hc.hidden);
    return W >= 4 * H ? columns{H, 3 * H} : columns{0, W};
  }

  void build(int64_t T, const token_id* toks, const float* const* hidden, bool from_target, float* x, float* a,
             cpu::thread_pool& pool) override {
    const int64_t H = hc.hidden;
    const float eps = static_cast<float>(hc.eps);
    if (from_target) {
      // A target row is [final, aux 0, aux 1, aux 2]; head_chain keeps its aux columns only
      // (target_columns): hidden[t] is [aux 0, aux 1, aux 2].
      if (fc_in.size() < static_cast<size_t>(T * 3 * H)) fc_in.resize(static_cast<size_t>(T * 3 * H));
      for (int64_t t = 0; t < T; ++t) std::copy_n(hidden[t], 3 * H, fc_in.data() + t * 3 * H);
      cpu::matmul(fc_in.data(), 3 * H, T, fc, x, H, pool, prec);
    } else {
      for (int64_t t = 0; t < T; ++t) std::copy_n(hidden[t], H, x + t * H);
    }
    for (int64_t t = 0; t < T; ++t) {
      float* row = a + t * 2 * H;
      cpu::dequantize_rows(embd, toks[t], toks[t] + 1, row);
      cpu::rms_norm(row, H, 1, H, input_norm.data(), eps, row, H);
      cpu::rms_norm(x + t * H, H, 1, H, hidden_norm.data(), eps, row + H, H);
    }
  }
};

namespace {

// One-model: inside the target's forward, g = fc(cat[low, mid, high]) of every hidden row into
// the row's second column (what observe() reads after the step: no aux columns leave the
// executor), then the planned catch-up rows' keys and values (head_chain::run_fused).
class eagle3_in_forward final : public fused_head {
 public:
  explicit eagle3_in_forward(eagle3_proposer::impl& p) : p_(p) {}
  void run(const forward_batch& b, const float* aux, int64_t ld_aux, float* hidden, int64_t ld_hidden,
           cpu::thread_pool& pool) override;

 private:
  eagle3_proposer::impl& p_;
};

}  // namespace

void eagle3_in_forward::run(const forward_batch& b, const float* aux, int64_t ld_aux, float* hidden, int64_t ld_hidden,
                            cpu::thread_pool& pool) {
  const int64_t n = b.n_hidden_rows(), H = p_.hc.hidden;
  if (n == 0) return;
  cpu::matmul(aux, ld_aux, n, p_.fc, hidden + H, ld_hidden, pool, p_.prec);
  p_.chain->run_fused(hidden, ld_hidden, H, pool);
}

eagle3_proposer::eagle3_proposer(std::unique_ptr<impl> p) : impl_(std::move(p)) {
  if (impl_->one_model) impl_->in_forward = std::make_shared<eagle3_in_forward>(*impl_);
}
eagle3_proposer::~eagle3_proposer() = default;

result<std::unique_ptr<eagle3_proposer>> eagle3_proposer::create(std::shared_ptr<const checkpoint> target,
                                                                 const eagle3_options& o) {
  if (!target) return make_error("Eagle: no target model");
  if (o.dir.empty()) return make_error(fmt::format("{}: required when decoding_type is Eagle", kField));
  if (o.draft_len < 1) return make_error("Eagle: max_draft_len must be at least 1");
  if (o.block_size < 1) return make_error("Eagle: the KV block size must be at least 1");
  TROUPE_TRY(head_config hc, read_config(o.dir, target->config()));
  const std::string weights = (std::filesystem::path(o.dir) / "model.safetensors").string();
  auto f = safetensors_file::open(weights);
  if (!f.ok()) return make_error(fmt::format("{} {}: {}", kField, o.dir, f.message()));
  auto p = std::make_unique<impl>(std::move(target), std::move(*f), std::move(hc));
  try {
    TROUPE_CHECK(p->bind(o));
  } catch (const std::bad_alloc&) {
    return make_error(fmt::format("Eagle: cannot reserve {} KV blocks", o.n_blocks));
  }
  return std::unique_ptr<eagle3_proposer>(new eagle3_proposer(std::move(p)));
}

draft eagle3_proposer::propose(const sequence& s, int32_t max_tokens) { return impl_->chain->propose(s, max_tokens, tree_width()); }
std::vector<draft> eagle3_proposer::propose_batch(std::span<const sequence* const> seqs,
                                                std::span<const int32_t> max_tokens) {
  return impl_->chain->propose_batch(seqs, max_tokens, tree_width());
}
void eagle3_proposer::forget(const sequence& s) { impl_->chain->forget(s); }
double eagle3_proposer::last_catch_up_seconds() const { return impl_->chain->last_catch_up_seconds(); }
int64_t eagle3_proposer::last_catch_up_rows() const { return impl_->chain->last_catch_up_rows(); }
int32_t eagle3_proposer::catch_up_rows(const sequence& s) const { return impl_->chain->pending_rows(s); }
void eagle3_proposer::observe(std::span<const kept_rows> rows, size_t W) {
  // Rows without the aux columns (or, one-model, without g) carry nothing for the head.
  const auto H = static_cast<size_t>(impl_->hc.hidden);
  if (impl_->one_model ? W != 2 * H : W < 4 * H) return;
  impl_->chain->observe(rows, W);
}
std::vector<int32_t> eagle3_proposer::aux_hidden_layers() const { return impl_->hc.aux; }
int32_t eagle3_proposer::kv_blocks_used() const { return impl_->chain->kv_blocks_used(); }
size_t eagle3_proposer::n_tracked() const { return impl_->chain->n_tracked(); }
int64_t eagle3_proposer::rows_run() const { return impl_->chain->rows_run(); }
int64_t eagle3_proposer::fused_rows_run() const { return impl_->chain->fused_rows_run(); }
int64_t eagle3_proposer::catch_up_rows_run() const { return impl_->chain->catch_up_rows_run(); }
const char* eagle3_proposer::mode() const { return impl_->one_model ? "one-model" : "two-model"; }
std::shared_ptr<fused_head> eagle3_proposer::fused() { return impl_->in_forward; }
void eagle3_proposer::plan_fused(const forward_batch& b, std::span<const sequence* const> seqs) {
  if (!impl_->one_model) return;
  std::vector<fused_seq_in> in(b.seqs.size());
  int32_t row = 0, hrow = 0;
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    const forward_batch::seq& bs = b.seqs[i];
    if (i < seqs.size() && seqs[i] && bs.n_hidden == bs.n_new) {
      fused_seq_in& f = in[i];
      f.s = seqs[i];
      f.n_past = bs.n_past;
      f.n_new = bs.n_new;
      f.tokens = b.tokens.data() + row;
      f.parents = bs.tree_offset >= 0 ? b.tree_parents.data() + bs.tree_offset : nullptr;
      f.hidden_row0 = hrow;
    }
    row += bs.n_new;
    hrow += bs.n_hidden;
  }
  impl_->chain->plan_fused(in);
}

}  // namespace troupe
