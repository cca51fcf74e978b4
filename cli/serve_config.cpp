#include "cli/serve_config.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#if defined(TROUPE_HAVE_CUDA)
#include "kernels/cuda/device.hpp"
#endif

namespace troupe {

int cuda_device_count() {
#if defined(TROUPE_HAVE_CUDA)
  auto n = cuda::device_count();
  return n.ok() ? *n : 0;
#else
  return 0;
#endif
}

namespace {

std::string dir_of(const std::string& file) {
  const std::filesystem::path p = std::filesystem::absolute(file).parent_path();
  return p.empty() ? "." : p.string();
}

std::string trimmed(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

}  // namespace

result<start_settings> settle_start(const std::string& what, worker_flags& wf, const flags_given& given) {
  start_settings out;
  nlohmann::json status = nlohmann::json::object();
  const std::string spec = wf.model;
  std::optional<config::config_file> cfg;
  if (!wf.config.empty()) {
    auto c = config::load_config_file(wf.config);
    if (!c.ok()) return make_error(trimmed(config::format_errors(c.errors, wf.config)));
    cfg = std::move(c.value);
    // Before the model is looked up: HF_HOME and the like may come from the file.
    for (const auto& [name, value] : cfg->environment_variables) ::setenv(name.c_str(), value.c_str(), 1);
  }

  const config::hf_cache_location cache = config::hf_cache_from_environment();
  if (cfg && !given.model) {
    auto m = config::resolve_model(cfg->build.checkpoint, cache, dir_of(wf.config));
    if (!m.ok()) return make_error(trimmed(config::format_errors(m.errors, wf.config)));
    out.model = std::move(m.value);
  } else if (!wf.model.empty()) {
    auto m = config::resolve_model(wf.model, cache, ".", "", "--model");
    if (!m.ok()) return make_error(trimmed(config::format_errors(m.errors)));
    out.model = std::move(m.value);
  }
  wf.model = out.model.path;
  wf.model_name = out.model.served_name;

  if (cfg) {
    config::start_facts facts;
    facts.gpus = cuda_device_count();
    facts.model_flag = given.model ? spec : "";
    facts.served_name_flag = given.served_name;
    facts.kv_cache_memory_flag = given.kv_cache_memory;
    facts.threads_flag = given.threads;
    facts.device_flag = given.device;
    facts.workers = wf.workers;
    if (!given.device) wf.device = config::device_for(cfg->res, facts);
    if (const int t = config::cpu_threads(cfg->res); t > 0 && !given.threads) wf.threads = std::max(1, t / std::max(1, wf.workers));
    out.effects = config::config_effects(*cfg, facts);
    if (cfg->llm.has_autoscaling) out.autoscaling = cfg->llm.autoscaling;
    if (cfg->llm.has_routing) out.routing = cfg->llm.routing;
    // Its llm_config.speculative_config drives the engines (unless --llm-config has one); a
    // decoding type whose drafter is not built is refused, not warned about and ignored.
    if (cfg->llm.speculative) {
      if (auto refused = config::unbuilt_decoding_type(*cfg->llm.speculative))
        return make_error(wf.config + ": " + refused->message);
      if (!wf.speculative) wf.speculative = std::make_shared<const config::speculative_settings>(*cfg->llm.speculative);
    }

    std::vector<std::string> refused;
    for (const auto& e : out.effects) {
      const bool ok = e.kind == config::effect_kind::applied;
      std::fprintf(stderr, "troupe %s: %s: %s\n", what.c_str(), ok ? "config" : "warning", e.message.c_str());
      if (!ok) refused.push_back(e.message);
    }
    if (given.strict_config && !refused.empty()) {
      std::string msg = fmt::format("--strict-config: {} field(s) of {} would not take effect here:", refused.size(), wf.config);
      for (const auto& r : refused) msg += "\n  " + r;
      return make_error(msg);
    }
    status["config_file"] = std::filesystem::absolute(wf.config).string();
    status["model_name"] = cfg->model_name;
    status["description"] = cfg->description;
    if (!cfg->model_metadata_json.empty())
      status["model_metadata"] = nlohmann::json::parse(cfg->model_metadata_json, nullptr, false);
    nlohmann::json effects = nlohmann::json::array();
    for (const auto& e : out.effects)
      effects.push_back({{"field", e.field}, {"effect", config::to_string(e.kind)}, {"message", e.message}});
    status["config"] = std::move(effects);
  }
  status["model"] = {{"spec", given.model || !cfg ? spec : cfg->build.checkpoint.repo},
                     {"path", out.model.path},
                     {"repo", out.model.repo},
                     {"revision", out.model.revision},
                     {"commit", out.model.commit}};
  status["device"] = wf.device;
  status["workers"] = wf.workers;
  status["threads_per_worker"] = wf.threads;
  out.status_json = status.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return out;
}

}  // namespace troupe
