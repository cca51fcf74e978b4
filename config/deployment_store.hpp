// deployment_store: the deployments created through the Management API, kept on disk.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/checkpoint.hpp"
#include "config/config_error.hpp"
#include "config/settings.hpp"
#include "runtime/result.hpp"

namespace troupe::config {

// What POST /v1/llm_models carries, validated.
//   {"name": "qwen3-4b",          optional; else derived from the model
//    "model": "Qwen/Qwen3-4B",    a hub id (org/name[@revision], from the local HF cache), a
//                                 directory or a .gguf file (model_source.hpp)
//    "revision": "main",          optional, HF only
//    "llm_config": {...}}         optional: runtime, b10_routing_config, is_disaggregated,
//                                 b10_disagg_config, speculative_config, autoscaling_settings
struct deployment_request {
  std::string name;
  std::string model;
  std::string revision = "main";
  llm_config llm;
  runtime_settings runtime;
  std::string llm_config_json = "{}";  // the llm_config block as received (compact JSON)
};

// Every field error of the body (unknown fields, types, the llm_config rules), all at once.
checked<deployment_request> parse_deployment_request(std::string_view json);

struct deployment {
  std::string id;    // "dpl-" + 16 hex digits, never reused
  std::string name;  // unique among deployments
  std::string model;
  std::string revision;
  std::string model_path;  // the checkpoint directory the model resolved to
  std::string commit;      // the HF snapshot's commit ("" for a directory)
  int64_t created_at = 0;  // unix seconds
  llm_config llm;
  runtime_settings runtime;
  std::string llm_config_json;  // as received; re-validated when the store is reopened
};

struct store_options {
  std::string state_dir;            // deployments live in <state_dir>/deployments/<id>.json
  hf_cache_location hf_cache;       // where HF repo ids are looked up
  std::string base_dir = ".";       // relative model directories start here
};

enum class store_failure { none, invalid, conflict, not_found, io };

// create() and remove() report what kind of failure it was, so the HTTP layer can map it to
// 400, 409, 404 or 500; `errors` name the fields.
struct store_outcome {
  store_failure failure = store_failure::none;
  error_list errors;
  bool ok() const { return failure == store_failure::none; }
};

// Deployments are one JSON file each, written with write_file_atomic: a create or remove is
// durable when it returns (acknowledged), and a crash at any point leaves every file either
// complete or absent. Temporary files a crash left behind are removed on open. Thread-safe:
// the HTTP server may call from its pool threads.
class deployment_store {
 public:
  // Creates the state directory if needed and loads the deployments in it. Records that no
  // longer validate are skipped and listed in load_warnings(), not deleted.
  static result<deployment_store> open(store_options options);

  deployment_store(deployment_store&& o) noexcept;
  deployment_store(const deployment_store&) = delete;
  deployment_store& operator=(const deployment_store&) = delete;

  // Resolves the model (its errors are field errors: the request is invalid), checks the name
  // is free, writes the record, and only then adds it.
  store_outcome create(const deployment_request& request, deployment* created = nullptr);
  std::vector<deployment> list() const;                         // oldest first
  std::optional<deployment> get(std::string_view id_or_name) const;
  store_outcome remove(std::string_view id_or_name);
  // Replaces a deployment's autoscaling_settings (validated with the rest of its llm_config,
  // as a new request's); the record is rewritten atomically.
  // `autoscaling_json` is the new block's JSON text.
  store_outcome set_autoscaling(std::string_view id_or_name, std::string_view autoscaling_json,
                                deployment* updated = nullptr);

  const std::vector<std::string>& load_warnings() const { return warnings_; }
  const std::string& dir() const { return dir_; }

 private:
  explicit deployment_store(store_options options);
  status load();
  const deployment* find(std::string_view id_or_name) const;  // caller holds mu_

  store_options options_;
  std::string dir_;
  mutable std::mutex mu_;
  std::vector<deployment> deployments_;  // guarded by mu_
  std::vector<std::string> warnings_;    // written by open() only
};

// The stored form of a deployment and back (the llm_config is re-validated on the way in).
std::string deployment_to_record(const deployment& d);
checked<deployment> deployment_from_record(std::string_view json);

}  // namespace troupe::config
