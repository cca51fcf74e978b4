// config: troupe's configuration: config.yaml and llm_config, read, validated and typed.
//
// Owns: the schemas of config.yaml (model_name, resources, trt_llm with inference_stack v2,
// build and runtime, llm_config, autoscaling_settings) and of the Management API's
// llm_config; validation that reports every error of a document at once, each naming its
// field path (the v2 rules and messages of the reference documents word for word, unknown
// fields with a did-you-mean); the typed settings the engine (engine_settings), router
// (routing_settings) and autoscaler read; locating checkpoints in the local Hugging Face cache
// (checkpoint.hpp); the v1 -> v2 migration (migrate.hpp); and the deployments that the
// Management API stores (deployment_store.hpp, management_api.hpp).
// Does not own: HTTP (the frontend wraps management_api), applying settings to running
// actors, or downloading anything: troupe reads checkpoints that are already on disk.
// A plain C++ library: no CAF, httplib, simdjson or prometheus here.
//
// Use:
//   auto cfg = troupe::config::load_config_file("config.yaml");
//   if (!cfg.ok()) { fputs(format_errors(cfg.errors, "config.yaml").c_str(), stderr); ... }
//   auto ckpt = resolve_checkpoint(cfg.value.build.checkpoint, hf_cache_from_environment());
//   engine(cfg.value.runtime.engine, ckpt.value.path); router(cfg.value.llm.routing); ...
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config_error.hpp"
#include "config/settings.hpp"

namespace troupe::config {

// Reads and validates a config.yaml text. Schema only: the checkpoint is not looked up
// (resolve_checkpoint does that), so a file can be checked on any machine.
checked<config_file> parse_config_yaml(std::string_view yaml);

// Reads the file at `path` (an unreadable file is one error) and parses it.
checked<config_file> load_config_file(const std::string& path);

// An llm_config object as JSON (the Management API's block). It may carry "runtime" with
// engine settings; those are returned in `runtime`.
struct llm_config_request {
  llm_config llm;
  runtime_settings runtime;
};
checked<llm_config_request> parse_llm_config_json(std::string_view json);

// An llm_config block in a file (`troupe serve --llm-config FILE`): JSON when it starts with
// "{", else YAML; either the block itself or a document whose one key is llm_config. The
// schema, validation and messages are POST /v1/llm_models's. `present` lists the block's
// top-level fields that the file sets (so a caller can refuse the ones not active yet).
struct llm_config_file {
  llm_config_request config;
  std::vector<std::string> present;
};
checked<llm_config_file> load_llm_config_file(const std::string& path);

// speculative_config's decoding types troupe runs: NGram, MTP (whose layer count the model is
// checked against when its engine is made), Eagle (eagle3_one_model either way: true is
// refused later, naming that field, on an executor other than the CPU's) and DraftTarget. For
// what is valid in the schema but not built (a decoding type without its drafter) the error
// that refuses it, naming the field: `troupe serve`, `troupe node` and the Management API
// refuse it rather than store it and ignore it.
std::optional<config_error> unbuilt_decoding_type(const speculative_settings& s,
                                                  const std::string& path = "llm_config.speculative_config");
// MTP against the model it would run on (a directory's config.json; a .gguf file carries no
// MTP layers): the error naming <path>.num_nextn_predict_layers when the model has fewer MTP
// layers than asked, or none. nullopt for other types, or when there is no config to read.
std::optional<config_error> mtp_layers_missing(const speculative_settings& s, const std::string& model_path,
                                               const std::string& path = "llm_config.speculative_config");
// Eagle against the model it would run on: the error naming <path>.speculative_model_dir when
// the head's directory is missing (as given, or relative to the folder above the model's), is
// not an Eagle-3 head (config.json architectures LlamaForCausalLMEagle3), or does not fit the
// model (target_hidden_size, vocabulary, an eagle_aux_hidden_state_layer_ids id beyond its
// layers). nullopt for other types.
std::optional<config_error> eagle_head_unfit(const speculative_settings& s, const std::string& model_path,
                                             const std::string& path = "llm_config.speculative_config");


}  // namespace troupe::config
