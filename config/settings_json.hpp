// settings_json: the typed settings as JSON, every default filled in (for API responses).
#pragma once

#include <nlohmann/json.hpp>

#include "config/settings.hpp"

namespace troupe::config {

nlohmann::json to_json(const engine_settings& e);
nlohmann::json to_json(const runtime_settings& r);
nlohmann::json to_json(const routing_settings& r);
nlohmann::json to_json(const speculative_settings& s);
nlohmann::json to_json(const autoscaling_settings& a);
// llm_config with runtime: the effective configuration of a deployment.
nlohmann::json to_json(const llm_config& l, const runtime_settings& r);

}  // namespace troupe::config
