// config_effect: the start-up report of a config.yaml: one line per field the file set.
#include "config/config_effect.hpp"

#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "config/config.hpp"
#include "config/feature_status.hpp"

namespace troupe::config {

std::string_view to_string(effect_kind k) {
  switch (k) {
    case effect_kind::applied: return "applied";
    case effect_kind::not_yet_active: return "not_yet_active";
    case effect_kind::not_applied: return "not_applied";
  }
  return "applied";
}

int cpu_threads(const resources& r) {
  if (r.cpu.empty()) return 0;
  char* end = nullptr;
  double v = std::strtod(r.cpu.c_str(), &end);
  if (end == r.cpu.c_str() || !(v > 0)) return 0;
  if (std::string(end) == "m") v /= 1000.0;  // Kubernetes millicores
  else if (*end) return 0;
  return std::max(1, static_cast<int>(std::floor(v)));
}

std::string device_for(const resources& r, const start_facts& facts) {
  const bool wants_gpu = r.use_gpu || r.accelerator_count > 0;
  return wants_gpu && facts.gpus > 0 ? "cuda" : "cpu";
}

namespace {

std::string memory_text(const kv_cache_memory& m) {
  if (m.kind == kv_cache_memory::unit::bytes) {
    if (m.bytes % (1ull << 30) == 0) return fmt::format("{} GiB", m.bytes >> 30);
    if (m.bytes % (1ull << 20) == 0) return fmt::format("{} MiB", m.bytes >> 20);
    return fmt::format("{} bytes", m.bytes);
  }
  return fmt::format("{} of the free memory", m.fraction);
}

// What a speculative_config does, with the settings it names (unset ones: the drafter's
// defaults, README "Speculative decoding").
std::string speculative_text(const speculative_settings& s) {
  std::string what =
      s.type == decoding_type::mtp
          ? fmt::format("applied to every engine: MTP drafting (the model's own MTP layer, "
                        "num_nextn_predict_layers {})",
                        s.num_nextn_predict_layers.value_or(1))
      : s.type == decoding_type::draft_target
          ? "applied to every engine: DraftTarget drafting (draft model " + s.speculative_model_dir + ")"
      : s.type == decoding_type::eagle
          ? "applied to every engine: Eagle drafting (Eagle-3 head " + s.speculative_model_dir +
                (s.eagle3_one_model.value_or(false) ? ", its catch-up run inside the target's forward: one-model)"
                                                    : ", run as its own model after each step)")
          : std::string("applied to every engine: NGram drafting (prompt lookup)");
  if (s.max_draft_len) what += fmt::format(", max_draft_len {}", *s.max_draft_len);
  if (s.spec_tree_width && *s.spec_tree_width > 1) what += fmt::format(", spec_tree_width {}", *s.spec_tree_width);
  if (s.spec_draft_length)
    what += *s.spec_draft_length == 0 ? std::string(", spec_draft_length 0 (adaptive)")
                                      : fmt::format(", spec_draft_length {}", *s.spec_draft_length);
  if (s.max_matching_ngram_size) what += fmt::format(", max_matching_ngram_size {}", *s.max_matching_ngram_size);
  if (s.min_matching_ngram_size) what += fmt::format(", min_matching_ngram_size {}", *s.min_matching_ngram_size);
  return what;
}

class report {
 public:
  void applied(std::string field, std::string what) { add(std::move(field), effect_kind::applied, std::move(what)); }
  void not_applied(std::string field, std::string what) {
    add(std::move(field), effect_kind::not_applied, std::move(what));
  }
  void feature(std::string_view row, std::string path) {
    const feature_status* f = find_feature(row);
    if (f && f->state == feature_state::stored)
      out.push_back({path, effect_kind::not_yet_active, not_yet_active_message(*f, path)});
    else
      applied(std::move(path), fmt::format("applied ({})", f ? f->feature : row));
  }
  std::vector<field_effect> out;

 private:
  void add(std::string field, effect_kind k, std::string what) {
    std::string message = field + ": " + what;
    out.push_back({std::move(field), k, std::move(message)});
  }
};

}  // namespace

std::vector<field_effect> config_effects(const config_file& c, const start_facts& f) {
  report r;
  if (!c.model_name.empty())
    r.applied("model_name", "the deployment's name on the status page, and the served model name unless "
                            "trt_llm.runtime.served_model_name or --served-model-name gives one");
  if (!c.description.empty()) r.applied("description", "shown on the status page");
  if (!c.model_metadata_json.empty()) r.applied("model_metadata", "shown on the status page (/v1/status)");
  if (!c.environment_variables.empty())
    r.applied("environment_variables",
              fmt::format("{} variable(s) set in this process's environment before the model loads",
                          c.environment_variables.size()));
  if (!c.secrets.empty())
    r.not_applied("secrets", "not applied: troupe has no secret store; give the values to the process as "
                             "environment variables (environment_variables: or the shell)");

  // resources
  const resources& res = c.res;
  const bool wants_gpu = res.use_gpu || res.accelerator_count > 0;
  const std::string asked = !res.accelerator.empty() ? "resources.accelerator" : "resources.use_gpu";
  if (wants_gpu) {
    const int64_t n = std::max<int64_t>(1, res.accelerator_count);
    if (f.device_flag)
      r.not_applied(asked, "not applied: --device decides where the engines run");
    else if (f.gpus == 0)
      r.not_applied(asked, fmt::format("not applied: it asks for {} GPU(s) and this machine (or this build of "
                                       "troupe) has none; the engines run on the CPU",
                                       n));
    else if (n > 1)
      r.not_applied(asked, fmt::format("not applied in full: it asks for {} GPUs; troupe runs a process's "
                                       "engines on one GPU (cuda:0); start one `troupe node` per GPU to use more",
                                       n));
    else
      r.applied(asked, "the engines run on the GPU (cuda:0)");
  }
  if (!res.cpu.empty()) {
    const int t = cpu_threads(res);
    if (f.threads_flag) r.not_applied("resources.cpu", "not applied: --threads decides the CPU threads");
    else if (t == 0) r.not_applied("resources.cpu", fmt::format("not applied: \"{}\" is not a CPU count", res.cpu));
    else
      r.applied("resources.cpu", fmt::format("the engines use {} CPU thread(s) in all ({} per engine)", t,
                                             std::max(1, t / std::max(1, f.workers))));
  }
  if (!res.memory.empty())
    r.not_applied("resources.memory", "not applied: it is a container's memory request and troupe does not cap its "
                                      "own memory; size the KV cache with trt_llm.runtime.kv_cache_memory");
  if (res.node_count > 1)
    r.not_applied("resources.node_count",
                  fmt::format("not applied: `troupe serve` runs one process; for {} nodes run `troupe node --role "
                              "control` here and `troupe node --role worker --join ...` on each node",
                              res.node_count));

  // trt_llm.build
  const build_settings& b = c.build;
  if (!f.model_flag.empty())
    r.not_applied("trt_llm.build.checkpoint_repository",
                  fmt::format("not applied: --model {} overrides it", f.model_flag));
  else
    r.applied("trt_llm.build.checkpoint_repository",
              b.checkpoint.source == checkpoint_source::hf
                  ? fmt::format("serves {} (revision {}) from the local Hugging Face cache", b.checkpoint.repo,
                                b.checkpoint.revision)
                  : fmt::format("serves the checkpoint at {}", b.checkpoint.repo));
  if (!b.checkpoint.runtime_secret_name.empty())
    r.not_applied("trt_llm.build.checkpoint_repository.runtime_secret_name",
                  "not used: troupe reads checkpoints already on disk, which need no access token");
  if (b.quantization != quantization_type::no_quant)
    r.not_applied("trt_llm.build.quantization_type",
                  fmt::format("not applied: troupe does not quantize at start ({}); the weights serve in the "
                              "checkpoint's own type (f32, f16, bf16 or q8_0: a q8_0 GGUF is quantized ahead of time)",
                              to_string(b.quantization)));
  const quantization_config& q = b.quantization_cfg;
  if (q.calib_size || q.calib_dataset || q.calib_max_seq_length)
    r.not_applied("trt_llm.build.quantization_config", "not applied: troupe does not calibrate or quantize at start");
  if (b.num_builder_gpus)
    r.not_applied("trt_llm.build.num_builder_gpus", "not applied: troupe has no engine build step");
  if (b.skip_build_result)
    r.not_applied("trt_llm.build.skip_build_result", "not applied: troupe has no engine build step");

  // trt_llm.runtime: the engine settings take effect (feature row "runtime").
  const engine_settings& e = c.runtime.engine;
  {
    std::string what = fmt::format(
        "applied to every engine: max_batch_size {}, max_num_tokens {}, max_seq_len {}, chunked prefill {}, "
        "prefill_mode {}, prefix_cache_mode {}, kv_block_size {}, kv_cache_memory {}",
        e.max_batch_size, e.max_num_tokens, e.max_seq_len, e.enable_chunked_prefill ? "on" : "off",
        to_string(e.prefill), to_string(e.prefix_cache), e.kv_block_size, memory_text(e.kv_memory));
    if (f.kv_cache_memory_flag) what += " (--kv-cache-memory overrides kv_cache_memory)";
    const feature_status* rt = find_feature("runtime");
    if (rt && rt->state == feature_state::stored) r.feature("runtime", "trt_llm.runtime");
    else r.applied("trt_llm.runtime", what);
  }
  if (c.runtime.tensor_parallel_size > 1)
    r.not_applied("trt_llm.runtime.tensor_parallel_size",
                  fmt::format("not applied: {} asks to split the model over {} GPUs; troupe runs each engine on one "
                              "device ({} GPU(s) here)",
                              c.runtime.tensor_parallel_size, c.runtime.tensor_parallel_size, f.gpus));
  if (!c.runtime.served_model_name.empty() && c.runtime.served_model_name != c.model_name) {
    if (f.served_name_flag)
      r.not_applied("trt_llm.runtime.served_model_name", "not applied: --served-model-name overrides it");
    else
      r.applied("trt_llm.runtime.served_model_name", fmt::format("the model serves as {}", c.runtime.served_model_name));
  }
  if (!c.runtime.patch_kwargs_json.empty())
    r.not_applied("trt_llm.runtime.patch_kwargs", "not applied: troupe's engine takes no patch_kwargs");

  // llm_config: each block by its feature's state (feature_status.hpp).
  const llm_config& l = c.llm;
  if (l.has_routing) r.feature("b10_routing_config", "llm_config.b10_routing_config");
  if (l.speculative) {
    const speculative_settings& s = *l.speculative;
    if (auto refused = unbuilt_decoding_type(s))
      r.not_applied("llm_config.speculative_config", "not applied: " + refused->message);
    else
      r.applied("llm_config.speculative_config", speculative_text(s));
  }
  if (l.has_disaggregation)
    r.feature(l.disaggregation.is_disaggregated ? "is_disaggregated" : "b10_disagg_config",
              l.disaggregation.is_disaggregated ? "llm_config.is_disaggregated" : "llm_config.b10_disagg_config");
  if (l.has_autoscaling)
    r.feature("autoscaling_settings",
              c.autoscaling_at_top_level ? "autoscaling_settings" : "llm_config.autoscaling_settings");
  return std::move(r.out);
}

}  // namespace troupe::config
