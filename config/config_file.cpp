// config_file: the config.yaml schema: model_name, resources, trt_llm (v2), llm_config.
#include <cctype>

#include <fmt/format.h>

#include "config/map_reader.hpp"
#include "config/readers.hpp"

namespace troupe::config {

namespace {

// The v1-only fields under build:, in the documents' order, with the fix the migration
// page gives for each.
struct v1_only_field {
  const char* name;
  const char* fix;
};
constexpr v1_only_field kV1OnlyBuildFields[] = {
    {"base_model", "Remove. v2 auto-detects from the checkpoint."},
    {"max_seq_len", "Move it to runtime:."},
    {"max_batch_size", "Move it to runtime:."},
    {"max_num_tokens", "Move it to runtime:."},
    {"tensor_parallel_count", "Move it to runtime: and rename it to tensor_parallel_size."},
    {"plugin_configuration",
     "Remove. v2 handles paged_kv_cache, use_paged_context_fmha, and use_fp8_context_fmha "
     "automatically."},
    {"speculator", "Remove. Use the Management API speculative_config block instead."},
};

void read_checkpoint(const node* n, const std::string& path, checkpoint_repository& out,
                     error_list& errors) {
  map_reader r(n, path, errors);
  if (!r.is_map()) return;
  if (auto v = r.choice("source", {"HF", "LOCAL", "GCS", "S3", "AZURE", "REMOTE_URL",
                                   "BASETEN_TRAINING"}, /*case_insensitive=*/true)) {
    static const std::pair<std::string_view, checkpoint_source> kSources[] = {
        {"HF", checkpoint_source::hf},       {"LOCAL", checkpoint_source::local},
        {"GCS", checkpoint_source::gcs},     {"S3", checkpoint_source::s3},
        {"AZURE", checkpoint_source::azure}, {"REMOTE_URL", checkpoint_source::remote_url},
        {"BASETEN_TRAINING", checkpoint_source::baseten_training}};
    for (const auto& [name, src] : kSources)
      if (*v == name) out.source = src;
  }
  if (auto v = r.string("repo")) out.repo = *v;
  else if (!r.has("repo"))
    r.error("repo", fmt::format("{}: required", r.path_of("repo")));
  if (auto v = r.string("revision")) {
    out.revision = *v;
    if (out.source != checkpoint_source::hf)
      r.error("revision", fmt::format("{}: only used when source is HF (source is {})",
                                      r.path_of("revision"), to_string(out.source)));
  }
  if (auto v = r.string("runtime_secret_name")) out.runtime_secret_name = *v;
  r.finish();
}

void read_resources(const node* n, const std::string& path, resources& out, error_list& errors) {
  map_reader r(n, path, errors);
  if (auto v = r.string("accelerator")) {
    std::string name = *v;
    int64_t count = 1;
    if (auto colon = name.find(':'); colon != std::string::npos) {
      std::string c = name.substr(colon + 1);
      name = name.substr(0, colon);
      bool digits = !c.empty() && c.size() <= 4 &&
                    c.find_first_not_of("0123456789") == std::string::npos;
      count = digits ? std::stoll(c) : 0;
    }
    if (name.empty() || count < 1)
      r.error("accelerator", fmt::format("{}: expected NAME or NAME:COUNT with COUNT >= 1 "
                                         "(\"H100\", \"B200:4\"), got \"{}\"",
                                         r.path_of("accelerator"), *v));
    else {
      out.accelerator = *v;
      out.accelerator_count = count;
    }
  }
  if (auto v = r.boolean("use_gpu")) out.use_gpu = *v;
  if (auto v = r.string("cpu")) out.cpu = *v;
  if (auto v = r.string("memory")) out.memory = *v;
  if (auto v = r.integer("node_count", 1)) out.node_count = *v;
  r.finish();
}

// Blocks of free-form content: the map node, or nullptr (absent, null, or not a map: an error).
const node* read_free_map(map_reader& r, std::string_view key) {
  const node* n = r.get(key);
  if (n && n->kind != node_kind::map && n->kind != node_kind::null)
    r.error(key, fmt::format("{}: expected a map, got {}", r.path_of(key), n->describe()));
  return n && n->kind == node_kind::map ? n : nullptr;
}

// environment_variables: NAME: scalar. The process gets them before the model loads.
void read_environment(const node* n, config_file& out, error_list& errors) {
  if (!n) return;
  for (const node_member& m : n->members) {
    const bool name_ok = !m.key.empty() && m.key.find('=') == std::string::npos &&
                         !std::isdigit(static_cast<unsigned char>(m.key[0]));
    if (!name_ok)
      errors.push_back({"environment_variables." + m.key,
                        fmt::format("environment_variables: \"{}\" is not a variable name", m.key), m.line,
                        m.column});
    else if (!m.value.is_scalar() && m.value.kind != node_kind::null)
      errors.push_back({"environment_variables." + m.key,
                        fmt::format("environment_variables.{}: expected a string, got {}", m.key,
                                    m.value.describe()),
                        m.line, m.column});
    else
      out.environment_variables.emplace_back(m.key, m.value.kind == node_kind::null ? "" : m.value.text);
  }
}

}  // namespace

void read_build(const node* n, const std::string& path, build_settings& out, error_list& errors) {
  map_reader r(n, path, errors);
  if (!r.is_map()) return;
  for (const auto& f : kV1OnlyBuildFields)
    r.reject(f.name,
             fmt::format("Field {} is not allowed to be set when using v2 inference stack",
                         r.path_of(f.name)),
             f.fix);

  const node* ckpt = r.map("checkpoint_repository");
  if (!ckpt || ckpt->kind == node_kind::null)
    r.error("checkpoint_repository",
            fmt::format("{}: required (where the model checkpoint is: source and repo)",
                        r.path_of("checkpoint_repository")));
  else
    read_checkpoint(ckpt, r.path_of("checkpoint_repository"), out.checkpoint, errors);

  if (auto v = r.choice("quantization_type",
                        {"no_quant", "fp8", "fp8_kv", "fp4", "fp4_kv", "fp4_mlp_only"})) {
    static const std::pair<std::string_view, quantization_type> kTypes[] = {
        {"no_quant", quantization_type::no_quant}, {"fp8", quantization_type::fp8},
        {"fp8_kv", quantization_type::fp8_kv},     {"fp4", quantization_type::fp4},
        {"fp4_kv", quantization_type::fp4_kv},     {"fp4_mlp_only", quantization_type::fp4_mlp_only}};
    for (const auto& [name, q] : kTypes)
      if (*v == name) out.quantization = q;
  }
  {
    map_reader q(r.map("quantization_config"), r.path_of("quantization_config"), errors);
    out.quantization_cfg.calib_size = q.integer("calib_size", 1);
    out.quantization_cfg.calib_dataset = q.string("calib_dataset");
    out.quantization_cfg.calib_max_seq_length = q.integer("calib_max_seq_length", 1);
    q.finish();
  }
  out.num_builder_gpus = r.integer("num_builder_gpus", 1);
  if (auto v = r.boolean("skip_build_result")) out.skip_build_result = *v;

  for (const char* k : {"tensor_parallel_size", "enable_chunked_prefill", "served_model_name",
                        "prefill_mode", "prefix_cache_mode", "prefix_cache_max_num_recycling_seqs",
                        "kv_block_size", "kv_cache_memory", "patch_kwargs"})
    r.hint(k, "it belongs under trt_llm.runtime");
  r.finish();
}

void read_config_file(const node& root, config_file& out, error_list& errors) {
  if (root.kind == node_kind::null) {
    errors.push_back({"", "the file is empty; expected a map with a trt_llm block"});
    return;
  }
  map_reader top(&root, "", errors);
  if (!top.is_map()) return;
  if (auto v = top.string("model_name")) out.model_name = *v;
  if (auto v = top.string("description")) out.description = *v;
  read_resources(top.map("resources"), "resources", out.res, errors);
  read_environment(read_free_map(top, "environment_variables"), out, errors);
  if (const node* n = read_free_map(top, "secrets"))
    for (const node_member& m : n->members) out.secrets.push_back(m.key);
  if (const node* n = read_free_map(top, "model_metadata")) out.model_metadata_json = to_json_text(*n);

  const node* trt = top.map("trt_llm");
  if (!trt || trt->kind == node_kind::null) {
    top.error("trt_llm", "trt_llm: required (the block that configures the build and runtime)");
  } else {
    map_reader t(trt, "trt_llm", errors);
    if (t.is_map()) {
      auto stack = t.choice("inference_stack", {"v1", "v2"});
      const char* fix = "add inference_stack: v2 at the top of trt_llm: and apply the other "
                        "migration steps; `troupe config migrate FILE` does it";
      if (!t.has("inference_stack"))
        t.error("inference_stack",
                "Field trt_llm.inference_stack is not set: troupe runs the v2 inference stack "
                "(BIS-LLM) only", fix);
      else if (stack && *stack == "v1")
        t.error("inference_stack",
                "Field trt_llm.inference_stack is v1 (Engine-Builder-LLM): troupe runs the v2 "
                "inference stack (BIS-LLM) only", fix);
      const node* build = t.map("build");
      if (!build || build->kind == node_kind::null)
        t.error("build", "trt_llm.build: required (it names the checkpoint_repository)");
      else
        read_build(build, "trt_llm.build", out.build, errors);
      read_runtime(t.map("runtime"), "trt_llm.runtime", out.runtime, errors);
      t.finish();
    }
  }

  read_llm_config(top.map("llm_config"), "llm_config", out.llm, nullptr, errors);
  if (const node* a = top.map("autoscaling_settings")) {
    if (out.llm.has_autoscaling) {
      top.error("autoscaling_settings",
                "autoscaling_settings: set both at the top level and in llm_config; keep one");
    } else {
      read_autoscaling(a, "autoscaling_settings", out.llm.autoscaling, errors);
      out.llm.has_autoscaling = true;
      out.autoscaling_at_top_level = true;
    }
  }
  top.finish();

  if (out.runtime.served_model_name.empty()) out.runtime.served_model_name = out.model_name;
  // Tensor parallelism splits the model over GPUs that the deployment must have.
  if (out.res.accelerator_count > 0 &&
      out.runtime.tensor_parallel_size > out.res.accelerator_count * out.res.node_count) {
    const node* tp = root.find("trt_llm");
    tp = tp ? tp->find("runtime") : nullptr;
    tp = tp ? tp->find("tensor_parallel_size") : nullptr;
    errors.push_back({"trt_llm.runtime.tensor_parallel_size",
                      fmt::format("trt_llm.runtime.tensor_parallel_size: {} is more than the {} "
                                  "GPU(s) of resources.accelerator ({}{})",
                                  out.runtime.tensor_parallel_size,
                                  out.res.accelerator_count * out.res.node_count,
                                  out.res.accelerator,
                                  out.res.node_count > 1
                                      ? fmt::format(" on {} nodes", out.res.node_count)
                                      : ""),
                      tp ? tp->line : 0, tp ? tp->column : 0});
  }
}

}  // namespace troupe::config
