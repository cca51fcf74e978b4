#include "runtime/engine/factory.hpp"

#include <algorithm>
#include <filesystem>
#include <map>
#include <utility>

#include <fmt/format.h>

#include "kernels/cuda/device_name.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/engine/proposer.hpp"
#include "runtime/sim_executor.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/model_config.hpp"
#include "runtime/spec/draft_model_proposer.hpp"
#include "runtime/spec/eagle3_proposer.hpp"
#include "runtime/spec/head_chain.hpp"
#include "runtime/spec/mtp_proposer.hpp"
#include "runtime/spec/ngram_proposer.hpp"
#include "runtime/text/tokenizer.hpp"
#if defined(TROUPE_HAVE_CUDA)
#include "kernels/cuda/cuda_executor.hpp"
#include "kernels/cuda/device.hpp"
#endif

namespace troupe {

engine_config engine_config_of(const engine_spec& s, std::string model_identity) {
  engine_config c;
  c.max_batch_size = s.max_batch_size;
  c.max_num_tokens = s.max_num_tokens;
  c.max_seq_len = s.max_seq_len;
  c.enable_chunked_prefill = s.enable_chunked_prefill;
  c.prefill = s.hybrid_prefill ? prefill_mode::hybrid : prefill_mode::chunked;
  c.prefix_cache = s.prefix_cache;
  c.prefix_cache_max_num_recycling_seqs = s.max_recycling_seqs;
  c.model_identity = std::move(model_identity);
  if (!s.decoding_type.empty()) {
    c.max_draft_len = s.max_draft_len > 0           ? s.max_draft_len
                      : s.decoding_type == "MTP" || s.decoding_type == "Eagle" ? kDefaultMtpMaxDraftLen
                                                 : kDefaultNgramMaxDraftLen;
    if (s.spec_draft_length > 0) c.max_draft_len = std::min(c.max_draft_len, s.spec_draft_length);
    if (s.spec_draft_length > 0 && s.max_draft_len <= 0) c.max_draft_len = s.spec_draft_length;
    c.adaptive_draft_len = s.spec_draft_length == 0;
    c.spec_tree_width = s.spec_tree_width;
  }
  return c;
}

struct executor_factory::impl {
#if defined(TROUPE_HAVE_CUDA)
  struct uploaded {
    std::shared_ptr<const cuda::device_weights> weights;
    size_t free_after = 0;  // device memory free once they were in place: the KV budget's base
  };
  std::map<std::pair<std::string, int>, uploaded> weights;  // by (model key, device)

  result<std::shared_ptr<executor>> make_cuda(const checkpoint& model, const std::string& key, int device,
                                              const engine_spec& spec) {
    uploaded& up = weights[{key, device}];
    if (!up.weights) {
      auto w = cuda::upload_weights(model, device, cuda::precision::bf16);
      if (!w.ok()) {
        weights.erase({key, device});
        return w.err();
      }
      up.weights = *w;
      auto info = cuda::probe_device(device);
      if (!info.ok()) return info.err();
      up.free_after = info->free_bytes;
    }
    cuda::executor_options o;
    o.kv_block_size = spec.kv_block_size;
    o.kv_n_blocks = spec.kv_n_blocks;
    // A fraction is of the memory free once the weights were in place, so that the workers
    // sharing a device get equal shares whatever order they start in.
    if (spec.kv_n_blocks <= 0)
      o.kv_cache_bytes = spec.kv_cache_bytes > 0
                             ? static_cast<size_t>(spec.kv_cache_bytes)
                             : static_cast<size_t>(static_cast<double>(up.free_after) *
                                                   (spec.kv_cache_fraction > 0 ? spec.kv_cache_fraction : 0.9));
    o.max_batch_tokens = std::max(spec.max_num_tokens, 1);
    o.max_seqs = std::max(spec.max_batch_size, 1);
    // Speculative decoding asks for several logit rows per sequence.
    o.max_logit_rows = std::min(o.max_batch_tokens, std::max(512, 4 * o.max_seqs));
    TROUPE_TRY(std::unique_ptr<cuda::cuda_executor> ex, cuda::make_cuda_executor(up.weights, o));
    return std::shared_ptr<executor>(std::move(ex));
  }
#endif
};

executor_factory::executor_factory() : impl_(std::make_unique<impl>()) {}
executor_factory::~executor_factory() = default;

result<std::shared_ptr<executor>> executor_factory::make_executor(std::shared_ptr<const checkpoint> model,
                                                                  const std::string& model_key,
                                                                  const engine_spec& spec) {
  if (!model) return make_error("no model to run");
  if (!spec.simulate.empty()) {
    TROUPE_TRY(sim_costs costs, parse_sim_costs(spec.simulate));
    const model_config& c = model->config();
    int64_t n = spec.kv_n_blocks;
    if (n <= 0)
      n = (spec.kv_cache_bytes > 0 ? spec.kv_cache_bytes : kDefaultCpuKvBytes) /
          static_cast<int64_t>(sim_executor::bytes_per_block(c, spec.kv_block_size));
    if (n < 1) return make_error("--simulate: the KV cache holds no block");
    return std::shared_ptr<executor>(
        std::make_shared<sim_executor>(c, std::move(costs), spec.kv_block_size, static_cast<int32_t>(std::min<int64_t>(n, INT32_MAX))));
  }
  TROUPE_TRY(const int device, cuda::device_index(spec.device));
  if (device < 0) {
    cpu_executor_options o;
    o.n_threads = spec.threads;
    o.kv_block_size = spec.kv_block_size;
    o.kv_n_blocks = spec.kv_n_blocks;
    o.kv_cache_bytes = static_cast<size_t>(spec.kv_cache_bytes > 0 ? spec.kv_cache_bytes : kDefaultCpuKvBytes);
    TROUPE_TRY(std::unique_ptr<executor> ex, make_cpu_executor(std::move(model), o));
    return std::shared_ptr<executor>(std::move(ex));
  }
#if defined(TROUPE_HAVE_CUDA)
  return impl_->make_cuda(*model, model_key, device, spec);
#else
  (void)model_key;
  return make_error("--device " + spec.device + ": this build of troupe has no CUDA backend");
#endif
}

namespace {

// The draft model's directory: as given, else (relative) from the project's root, the folder
// above the default model's.
result<std::string> find_draft_dir(const std::string& dir, const std::string& type = "DraftTarget") {
  namespace fs = std::filesystem;
  const std::string field = "speculative_config.speculative_model_dir";
  if (dir.empty()) return make_error(field + ": required when decoding_type is " + type);
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return dir;
  std::string tried = dir;
  if (fs::path(dir).is_relative()) {
    const fs::path root = fs::path(default_model_path()).parent_path().parent_path();
    const fs::path alt = root / dir;
    if (fs::is_directory(alt, ec)) return alt.string();
    tried += " nor " + alt.string();
  }
  return make_error(fmt::format("{} {}: no such directory (tried {})", field, dir, tried));
}

result<std::unique_ptr<proposer>> make_draft_model(const engine_spec& spec, const tokenizer* tok,
                                                   const engine_model_info* target) {
  const std::string field = "speculative_config.speculative_model_dir";
  TROUPE_TRY(const std::string dir, find_draft_dir(spec.speculative_model_dir));
  auto bundle = load_model(dir);
  if (!bundle.ok()) return make_error(fmt::format("{} {}: {}", field, dir, bundle.message()));
  const model_config& dc = bundle->weights->config();
  if (target && dc.n_vocab != target->n_vocab)
    return make_error(fmt::format("{} {}: the draft model's vocabulary has {} entries, the target's {}: a draft "
                                  "model must share the target's tokenizer",
                                  field, dir, dc.n_vocab, target->n_vocab));
  if (tok) {
    if (!bundle->tok)
      return make_error(fmt::format("{} {}: the draft model ships no tokenizer, so it cannot be checked against the "
                                    "target's",
                                    field, dir));
    const tokenizer& dt = *bundle->tok;
    if (dt.n_vocab() != tok->n_vocab())
      return make_error(fmt::format("{} {}: the draft model's tokenizer has {} tokens, the target's {}: a draft model "
                                    "must share the target's tokenizer",
                                    field, dir, dt.n_vocab(), tok->n_vocab()));
    for (token_id t = 0; t < tok->n_vocab(); ++t)
      if (dt.token_text(t) != tok->token_text(t))
        return make_error(fmt::format("{} {}: the draft model's tokenizer differs from the target's (token {} is "
                                      "'{}' there, '{}' in the target's)",
                                      field, dir, t, dt.token_text(t), tok->token_text(t)));
  }
  engine_spec ds = spec;
  ds.decoding_type.clear();
  if (target) {
    // As many tokens of KV as the target's cache holds: every sequence the target runs fits.
    ds.kv_block_size = target->kv_block_size;
    ds.kv_n_blocks = target->kv_n_blocks;
  }
  executor_factory f;
  auto ex = f.make_executor(bundle->weights, dir, ds);
  if (!ex.ok()) return make_error(fmt::format("{} {}: {}", field, dir, ex.message()));
  const int64_t n_tokens = bundle->tok ? bundle->tok->n_vocab() : dc.n_vocab;
  auto p = draft_model_proposer::create(*ex, n_tokens, spec.max_num_tokens);
  if (!p.ok()) return make_error(fmt::format("{} {}: {}", field, dir, p.message()));
  return std::unique_ptr<proposer>(std::move(*p));
}

}  // namespace

result<std::unique_ptr<proposer>> make_proposer(const engine_spec& spec, const tokenizer* tok,
                                                const engine_model_info* target,
                                                std::shared_ptr<const checkpoint> target_weights) {
  if (spec.decoding_type.empty()) return std::unique_ptr<proposer>();
  if (spec.decoding_type == "MTP") {
    if (!target_weights) return make_error("speculative_config.decoding_type MTP: the MTP drafter needs the target's checkpoint");
    mtp_options o;
    o.num_nextn_predict_layers = spec.num_nextn_predict_layers > 0 ? spec.num_nextn_predict_layers : 1;
    if (spec.spec_draft_length == 0) o.catch_up_window = kAdaptiveCatchUpWindow;
    o.draft_len = spec.max_draft_len > 0 ? spec.max_draft_len : kDefaultMtpMaxDraftLen;
    o.n_threads = spec.threads;
    o.block_size = spec.kv_block_size;
    // One entry per target position, and a chain's scratch slots per sequence.
    if (target && target->kv_n_blocks > 0) o.n_blocks = target->kv_n_blocks + std::max(1, spec.max_batch_size) * (o.draft_len / o.block_size + 2);
    TROUPE_TRY(std::unique_ptr<mtp_proposer> p, mtp_proposer::create(std::move(target_weights), o));
    return std::unique_ptr<proposer>(std::move(p));
  }
  if (spec.decoding_type == "Eagle") {
    if (!target_weights) return make_error("speculative_config.decoding_type Eagle: the Eagle-3 drafter needs the target's checkpoint");
    eagle3_options o;
    TROUPE_TRY(o.dir, find_draft_dir(spec.speculative_model_dir, "Eagle"));
    o.draft_len = spec.max_draft_len > 0 ? spec.max_draft_len : kDefaultMtpMaxDraftLen;
    o.n_threads = spec.threads;
    o.block_size = spec.kv_block_size;
    if (target && target->kv_n_blocks > 0) o.n_blocks = target->kv_n_blocks + std::max(1, spec.max_batch_size) * (o.draft_len / o.block_size + 2);
    o.one_model = spec.eagle3_one_model;
    if (spec.spec_draft_length == 0) o.catch_up_window = kAdaptiveCatchUpWindow;
    TROUPE_TRY(std::unique_ptr<eagle3_proposer> p, eagle3_proposer::create(std::move(target_weights), o));
    return std::unique_ptr<proposer>(std::move(p));
  }
  if (spec.decoding_type == "DraftTarget") return make_draft_model(spec, tok, target);
  if (spec.decoding_type != "NGram")
    return make_error(fmt::format("speculative_config.decoding_type {}: troupe has not built this drafter yet; NGram, "
                                  "MTP, Eagle and DraftTarget are the ones it runs",
                                  spec.decoding_type));
  ngram_options o;
  if (spec.max_matching_ngram_size > 0) o.max_matching_ngram_size = spec.max_matching_ngram_size;
  if (spec.min_matching_ngram_size > 0) o.min_matching_ngram_size = spec.min_matching_ngram_size;
  auto p = ngram_proposer::create(o);
  if (!p.ok()) return make_error("speculative_config: " + p.message());
  return std::unique_ptr<proposer>(std::move(*p));
}

result<std::unique_ptr<engine>> make_engine(const engine_spec& spec, const executor& ex, const tokenizer* tok,
                                            std::string model_identity, std::unique_ptr<proposer> prop,
                                            std::shared_ptr<const checkpoint> target) {
  const engine_model_info info = model_info_of(ex, tok);
  if (!prop) {
    TROUPE_TRY(prop, make_proposer(spec, tok, &info, std::move(target)));
  }
  if (prop && prop->fused() && !ex.runs_fused_head())
    return make_error(fmt::format("llm_config.speculative_config.eagle3_one_model: true runs the Eagle-3 head inside "
                                  "the target's forward, which only the CPU executor does, not this one ({}); set "
                                  "eagle3_one_model to false (the head then runs as its own model after each step)",
                                  ex.describe()));
  if (prop && prop->wants_hidden() && !ex.returns_hidden_states())
    return make_error(fmt::format("speculative_config.decoding_type {}: the drafter reads the target's hidden "
                                  "states, which this executor ({}) does not return",
                                  prop->name(), ex.describe()));
  if (prop && spec.spec_tree_width > 1 && !ex.verifies_trees())
    return make_error(fmt::format("llm_config.speculative_config.spec_tree_width: {}: tree verification is built "
                                  "for the CPU executor only, not this one ({}); set spec_tree_width to 1",
                                  spec.spec_tree_width, ex.describe()));
  if (prop && spec.spec_tree_width > 1 && ex.config().sliding_window > 0)
    return make_error(fmt::format("llm_config.speculative_config.spec_tree_width: {}: tree verification does not "
                                  "handle sliding-window attention (this model's window is {}); set "
                                  "spec_tree_width to 1",
                                  spec.spec_tree_width, ex.config().sliding_window));
  return engine::create(engine_config_of(spec, std::move(model_identity)), info, tok, std::move(prop));
}

}  // namespace troupe
