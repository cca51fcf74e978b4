// serve_config: what `troupe serve` and `troupe node` settle before anything starts: the model
// (--model, or config.yaml's checkpoint_repository, through config/model_source.hpp), the
// config file's effect on this machine (environment variables, device and threads from
// resources, the engine settings; one report line per field, config/config_effect.hpp), and
// the deployment's description for the status page.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cli/cluster.hpp"
#include "config/config_effect.hpp"
#include "config/model_source.hpp"
#include "config/settings.hpp"
#include "runtime/result.hpp"

namespace troupe {

// Which flags the command line gave (they win over the config file).
struct flags_given {
  bool model = false;
  bool served_name = false;
  bool kv_cache_memory = false;
  bool threads = false;
  bool device = false;
  bool strict_config = false;  // --strict-config: a field not applied here is an error
};

struct start_settings {
  config::resolved_model model;                // path "" when the node serves no model
  std::vector<config::field_effect> effects;   // empty without --config
  std::string status_json;                     // the deployment for /v1/status (JSON text)
  std::optional<config::autoscaling_settings> autoscaling;  // the config's autoscaling_settings, when set
  std::optional<config::routing_settings> routing;  // the config's b10_routing_config, when set
};

// Reads wf.config (when set), applies it to wf and the environment, resolves wf.model in place
// (setting wf.model_name), and prints the report of every config field to stderr. Errors: the
// config file's (all of them), the model's lookup, and with --strict-config every field that
// is not applied here.
[[nodiscard]] result<start_settings> settle_start(const std::string& what, worker_flags& wf, const flags_given& given);

// CUDA devices usable here: 0 without a GPU or in a build without the CUDA backend.
int cuda_device_count();

}  // namespace troupe
