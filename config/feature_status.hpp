// feature_status: which llm_config settings take effect now and which are only stored.
#pragma once

#include <string>
#include <string_view>

namespace troupe::config {

enum class feature_state {
  active,  // the feature has landed: the setting takes effect
  stored,  // kept with the deployment, takes effect when the feature lands
};

struct feature_status {
  std::string_view field;    // the llm_config field
  std::string_view feature;  // what it configures, for messages
  feature_state state;
};

// Update a row when its feature lands. Engine settings, the router's settings (queue policy,
// overlap weight, temperature), speculative decoding (speculative_config with a decoding type
// whose drafter is not built is refused: config.hpp's unbuilt_decoding_type) and token-based
// autoscaling (aggregated serving) and disaggregated serving (actors/kv_transfer.hpp) are
// active. (No row is stored-only now; the state stays for features yet to come.)
inline constexpr feature_status kFeatureStatus[] = {
    {"runtime", "the serving engine", feature_state::active},
    {"b10_routing_config", "KV-aware routing", feature_state::active},
    {"speculative_config", "speculative decoding", feature_state::active},
    {"is_disaggregated", "disaggregated serving", feature_state::active},
    {"b10_disagg_config", "disaggregated serving", feature_state::active},
    {"autoscaling_settings", "token-based autoscaling", feature_state::active},
};

// What a deployment or `troupe serve --config` says about a setting that is only stored:
// "<path> is stored but not yet active: <feature> has not landed in troupe yet; it takes
// effect when it does". `path` is where it was set ("llm_config.speculative_config").
inline std::string not_yet_active_message(const feature_status& f, std::string_view path) {
  return std::string(path) + " is stored but not yet active: " + std::string(f.feature) +
         " has not landed in troupe yet; it takes effect when it does";
}

inline const feature_status* find_feature(std::string_view field) {
  for (const auto& f : kFeatureStatus)
    if (f.field == field) return &f;
  return nullptr;
}

}  // namespace troupe::config
