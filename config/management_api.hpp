// management_api: the Management API's handlers as plain functions: body in, status + JSON out.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "config/deployment_store.hpp"

namespace troupe::config {

struct http_response {
  int status = 200;
  std::string body;  // JSON
};

// The HTTP layer maps routes to these and copies status and body into its response:
//   POST   /v1/llm_models       -> create(body)   201, or 400 with every field error,
//                                                  409 for a taken name, 500 for storage
//   GET    /v1/llm_models       -> list()         200
//   GET    /v1/llm_models/{id}  -> get(id)        200 or 404 (id or name)
//   DELETE /v1/llm_models/{id}  -> remove(id)     200 or 404
//   PATCH  /v1/llm_models/{id}  -> update(id, body)  200, 400 (field errors; only
//                                  {"autoscaling_settings": {...}} may change), 404
// Errors use OpenAI's body, {"error": {"message", "type", "param", "code"}}, plus
// "errors": [{"field", "message", "fix"?}, ...] listing every field error.
// A deployment's body says which of its settings are active and which are only stored
// (feature_status.hpp), with a warning for each stored one the request set.
class management_api {
 public:
  explicit management_api(deployment_store& store) : store_(store) {}

  http_response create(std::string_view body);
  http_response list() const;
  http_response get(std::string_view id_or_name) const;
  http_response remove(std::string_view id_or_name);
  // A running deployment's autoscaling_settings, replaced whole (unset fields take their
  // defaults); the caller hands the new settings to its autoscaler.
  http_response update(std::string_view id_or_name, std::string_view body);

 private:
  deployment_store& store_;
};

// PATCH /v1/llm_models/{name} of the model `troupe serve` started with (--model, --config,
// --llm-config): not a deployment, so nothing is stored (a restart starts with its flags
// again), but its running autoscaler takes the new settings. The body is checked as update()
// checks a deployment's ({"autoscaling_settings": {...}} only, the block validated as an
// llm_config's); `settings` is set when it is good, else `error` is the 400 response.
struct startup_update {
  std::optional<autoscaling_settings> settings;
  http_response error;
};
startup_update parse_startup_update(std::string_view body);
// The 200 response to such a PATCH: the model and its new autoscaling_settings.
http_response startup_update_response(const std::string& model, const autoscaling_settings& a);

// A deployment as the API shows it: its effective llm_config (defaults filled in) and the
// "settings" report.
nlohmann::json deployment_json(const deployment& d);

// The error body for field errors (also used by the frontend for llm_config errors). Its
// strings are valid UTF-8 even when the input was not.
nlohmann::json error_body(const error_list& errors, std::string_view type, std::string_view code);

}  // namespace troupe::config
