// management_api: JSON bodies and status codes over the deployment store.
#include "config/management_api.hpp"

#include <fmt/format.h>

#include "config/config.hpp"
#include "config/feature_status.hpp"
#include "config/node.hpp"
#include "config/settings_json.hpp"

namespace troupe::config {

using nlohmann::json;

namespace {

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// Which llm_config fields the request set explicitly.
bool was_set(const deployment& d, std::string_view field) {
  if (field == "runtime" || field == "b10_routing_config" || field == "is_disaggregated" ||
      field == "b10_disagg_config" || field == "autoscaling_settings" ||
      field == "speculative_config") {
    json received = json::parse(d.llm_config_json, nullptr, false);
    return received.is_object() && received.contains(std::string(field));
  }
  return false;
}

}  // namespace

json error_body(const error_list& errors, std::string_view type, std::string_view code) {
  json list = json::array();
  for (const auto& e : errors) {
    json item{{"field", to_valid_utf8(e.path)}, {"message", to_valid_utf8(e.message)}};
    if (!e.hint.empty()) item["fix"] = to_valid_utf8(e.hint);
    list.push_back(std::move(item));
  }
  std::string message;
  if (errors.size() == 1) message = errors[0].message;
  else {
    message = fmt::format("{} errors:", errors.size());
    for (const auto& e : errors) message += " " + e.message + ";";
    message.pop_back();
  }
  json param = errors.empty() || errors[0].path.empty() ? json(nullptr)
                                                       : json(to_valid_utf8(errors[0].path));
  return json{{"error",
               {{"message", to_valid_utf8(message)}, {"type", type}, {"param", param},
                {"code", code}}},
              {"errors", std::move(list)}};
}

json deployment_json(const deployment& d) {
  json active = json::array(), stored = json::array(), warnings = json::array();
  for (const auto& f : kFeatureStatus) {
    const bool set = was_set(d, f.field);
    if (f.state == feature_state::active) {
      active.push_back(f.field);
    } else if (set) {
      stored.push_back(f.field);
      warnings.push_back(not_yet_active_message(f, f.field));
    }
  }
  return json{{"object", "llm_model"},
              {"id", d.id},
              {"name", d.name},
              {"model", d.model},
              {"revision", d.revision},
              {"model_path", d.model_path},
              {"commit", d.commit},
              {"created_at", d.created_at},
              {"llm_config", to_json(d.llm, d.runtime)},
              {"settings", {{"active", active}, {"not_yet_active", stored}}},
              {"warnings", warnings}};
}

http_response management_api::create(std::string_view body) {
  auto req = parse_deployment_request(body);
  if (!req.ok())
    return {400, dump(error_body(req.errors, "invalid_request_error", "invalid_llm_config"))};
  // Valid in the schema, but a drafter troupe has not built: refused, never stored and ignored.
  if (req.value.llm.speculative)
    if (auto refused = unbuilt_decoding_type(*req.value.llm.speculative))
      return {400, dump(error_body({*refused}, "invalid_request_error", "not_supported"))};
  deployment created;
  store_outcome o = store_.create(req.value, &created);
  switch (o.failure) {
    case store_failure::none: return {201, dump(deployment_json(created))};
    case store_failure::invalid:
      return {400, dump(error_body(o.errors, "invalid_request_error", "invalid_llm_config"))};
    case store_failure::conflict:
      return {409, dump(error_body(o.errors, "invalid_request_error", "name_taken"))};
    case store_failure::not_found:
    case store_failure::io:
      break;
  }
  return {500, dump(error_body(o.errors, "server_error", "storage_error"))};
}

http_response management_api::list() const {
  json data = json::array();
  for (const auto& d : store_.list()) data.push_back(deployment_json(d));
  return {200, dump(json{{"object", "list"}, {"data", std::move(data)}})};
}

http_response management_api::get(std::string_view id_or_name) const {
  if (auto d = store_.get(id_or_name)) return {200, dump(deployment_json(*d))};
  return {404, dump(error_body({{"", fmt::format("no deployment with id or name \"{}\"",
                                                 id_or_name)}},
                               "not_found_error", "deployment_not_found"))};
}

http_response management_api::remove(std::string_view id_or_name) {
  auto d = store_.get(id_or_name);
  store_outcome o = store_.remove(id_or_name);
  if (o.ok()) return {200, dump(json{{"object", "llm_model"}, {"id", d ? d->id : ""},
                                     {"deleted", true}})};
  if (o.failure == store_failure::not_found)
    return {404, dump(error_body(o.errors, "not_found_error", "deployment_not_found"))};
  return {500, dump(error_body(o.errors, "server_error", "storage_error"))};
}

namespace {

// A PATCH body: an object of autoscaling_settings alone.
error_list check_update_body(const json& j, std::string_view rest) {
  error_list errors;
  if (!j.is_object()) {
    errors.push_back({"", "the request body must be a JSON object: {\"autoscaling_settings\": {...}}"});
  } else {
    for (auto& [k, v] : j.items())
      if (k != "autoscaling_settings")
        errors.push_back({k, fmt::format("{}: cannot change on a running deployment; only autoscaling_settings can "
                                         "({})", k, rest)});
    if (!j.contains("autoscaling_settings"))
      errors.push_back({"autoscaling_settings", "autoscaling_settings: required (the new settings)"});
  }
  return errors;
}

}  // namespace

startup_update parse_startup_update(std::string_view body) {
  startup_update out;
  json j = json::parse(body, nullptr, false);
  error_list errors = check_update_body(j, "restart troupe serve with other flags to change the rest");
  if (errors.empty()) {
    // The block alone as an llm_config: the same checks, paths and messages as a deployment's.
    auto r = parse_llm_config_json(dump(json{{"autoscaling_settings", j["autoscaling_settings"]}}));
    if (r.ok()) out.settings = r.value.llm.autoscaling;
    else errors = std::move(r.errors);
  }
  if (!errors.empty()) out.error = {400, dump(error_body(errors, "invalid_request_error", "invalid_llm_config"))};
  return out;
}

http_response startup_update_response(const std::string& model, const autoscaling_settings& a) {
  return {200, dump(json{{"object", "llm_model"},
                         {"id", model},
                         {"name", model},
                         {"startup_model", true},
                         {"stored", false},
                         {"llm_config", {{"autoscaling_settings", to_json(a)}}}})};
}

http_response management_api::update(std::string_view id_or_name, std::string_view body) {
  json j = json::parse(body, nullptr, false);
  error_list errors = check_update_body(j, "delete and create the deployment to change the rest");
  if (!errors.empty()) return {400, dump(error_body(errors, "invalid_request_error", "invalid_llm_config"))};
  store_outcome o = store_.set_autoscaling(id_or_name, j["autoscaling_settings"].dump());
  if (o.ok()) return get(id_or_name);
  if (o.failure == store_failure::not_found)
    return {404, dump(error_body(o.errors, "not_found_error", "deployment_not_found"))};
  if (o.failure == store_failure::invalid)
    return {400, dump(error_body(o.errors, "invalid_request_error", "invalid_llm_config"))};
  return {500, dump(error_body(o.errors, "server_error", "storage_error"))};
}

}  // namespace troupe::config
