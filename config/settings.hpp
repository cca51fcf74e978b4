// settings: the typed configuration that the engine, router, autoscaler and frontend read.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe::config {

// ---- trt_llm.runtime: the serving engine ------------------------------------------------

enum class prefill_mode { chunked, hybrid };       // hybrid = split-fuse
enum class prefix_cache_mode { radix, disable };

// kv_cache_memory: bytes, or a fraction of the memory that is free once weights are loaded.
struct kv_cache_memory {
  enum class unit { fraction, bytes };
  unit kind = unit::fraction;
  double fraction = 0.9;  // when kind == fraction, in (0, 1]
  uint64_t bytes = 0;     // when kind == bytes
};

// The engine's settings, with the names the serving-engine issue uses. Defaults: the v2
// reference config's values for the first four, the MLC-style engine defaults for the rest.
struct engine_settings {
  int64_t max_batch_size = 256;   // running sequences at most
  int64_t max_num_tokens = 8192;  // token budget of one step
  int64_t max_seq_len = 32768;    // prompt + completion tokens of one sequence
  bool enable_chunked_prefill = true;
  // Hybrid by default ("Enable (default) for production workloads"); chunked when chunked
  // prefill is off and prefill_mode is not set.
  prefill_mode prefill = prefill_mode::hybrid;
  prefix_cache_mode prefix_cache = prefix_cache_mode::radix;  // "recommended as the default"
  // Finished sequences that keep their KV blocks for reuse; defaults to max_batch_size.
  int64_t prefix_cache_max_num_recycling_seqs = 256;
  int64_t kv_block_size = 16;  // tokens per KV block, a power of two
  kv_cache_memory kv_memory;
};

// trt_llm.runtime as a whole: the engine settings plus deployment-level runtime fields.
struct runtime_settings {
  engine_settings engine;
  int64_t tensor_parallel_size = 1;
  std::string served_model_name;  // "" = the model_name, else the checkpoint's name
  std::string patch_kwargs_json;  // patch_kwargs as JSON text, "" when absent (stored only)
};

// ---- trt_llm.build --------------------------------------------------------------------

enum class checkpoint_source { hf, local, gcs, s3, azure, remote_url, baseten_training };

struct checkpoint_repository {
  checkpoint_source source = checkpoint_source::hf;
  std::string repo;                 // "org/name" for HF, a directory for LOCAL
  std::string revision = "main";    // HF only: a branch/tag under refs/, or a commit hash
  std::string runtime_secret_name;  // kept for compatibility; a local cache needs no token
};

enum class quantization_type { no_quant, fp8, fp8_kv, fp4, fp4_kv, fp4_mlp_only };

struct quantization_config {
  std::optional<int64_t> calib_size;
  std::optional<std::string> calib_dataset;
  std::optional<int64_t> calib_max_seq_length;
};

struct build_settings {
  checkpoint_repository checkpoint;
  quantization_type quantization = quantization_type::no_quant;
  quantization_config quantization_cfg;
  std::optional<int64_t> num_builder_gpus;
  bool skip_build_result = false;
};

// ---- llm_config (Management API, or the llm_config block of config.yaml) ---------------

enum class queue_policy { fcfs, wspt };

// b10_routing_config: KV-aware routing. Defaults "match production Model APIs".
struct routing_settings {
  queue_policy router_queue_policy = queue_policy::fcfs;
  double router_overlap_score_weight = 3.5;  // bias toward cache hits vs load balance
  double router_temperature = 0.05;          // randomness in worker selection
};

// is_disaggregated + b10_disagg_config. The two counts define one replication unit; they
// are >= 1 when is_disaggregated, 0 otherwise.
struct disaggregation_settings {
  bool is_disaggregated = false;
  int64_t prefill_workers_per_replica = 0;
  int64_t decode_workers_per_replica = 0;
};

// draft_target: troupe's extension (MLC's small draft model), with speculative_model_dir.
enum class decoding_type { eagle, mtp, ngram, draft_target };

// max_draft_len's ceiling (a verification computes 1 + max_draft_len rows per sequence).
inline constexpr int64_t kMaxDraftLen = 32;
// spec_tree_width's ceiling (runtime/engine/draft_tree.hpp's kMaxSpecTreeWidth).
inline constexpr int64_t kMaxSpecTreeWidth = 8;

struct speculative_settings {
  decoding_type type = decoding_type::ngram;
  std::string speculative_model_dir;               // Eagle: the Eagle head's weights; DraftTarget: the draft model
  std::optional<int64_t> num_nextn_predict_layers;  // MTP: set for MTP, unset otherwise
  std::optional<int64_t> max_draft_len;             // unset: the engine's choice
  // MLC's spec_draft_length (troupe's extension): 0 adaptive (each step's length chosen from
  // measured acceptance and step cost, up to max_draft_len); n > 0 always n; unset: always
  // max_draft_len.
  std::optional<int64_t> spec_draft_length;
  // MLC's spec_tree_width (troupe's extension): children per node of a tree draft, verified in
  // one forward with a tree attention mask; 1 (or unset) a chain. NGram and DraftTarget only,
  // with a fixed draft length, on the CPU executor.
  std::optional<int64_t> spec_tree_width;
  std::optional<bool> eagle3_one_model;             // Eagle only
  // NGram only (troupe's names, after TensorRT-LLM's NGram config): the longest and shortest
  // suffix of the output looked up in the prompt and output; unset: 4 and 1.
  std::optional<int64_t> max_matching_ngram_size;
  std::optional<int64_t> min_matching_ngram_size;
};

// Token-based autoscaling. target_in_flight_tokens defaults to the low end of the documented
// 50,000-150,000 starting range; delays are in seconds.
struct autoscaling_settings {
  int64_t target_in_flight_tokens = 50000;
  int64_t min_replica = 1;
  int64_t max_replica = 1;
  int64_t scale_up_delay = 0;
  int64_t scale_down_delay = 900;
  int64_t autoscaling_window = 60;
};

struct llm_config {
  routing_settings routing;
  disaggregation_settings disaggregation;
  std::optional<speculative_settings> speculative;
  autoscaling_settings autoscaling;
  // Which blocks the input set explicitly (for "active / stored, not yet active" reports).
  bool has_routing = false;
  bool has_disaggregation = false;  // is_disaggregated or b10_disagg_config present
  bool has_autoscaling = false;
};

// ---- config.yaml ----------------------------------------------------------------------

struct resources {
  std::string accelerator;       // "H100", "B200:4"; "" = none
  int64_t accelerator_count = 0;  // the ":N" of accelerator (1 when only a name is given)
  bool use_gpu = false;
  std::string cpu;
  std::string memory;
  int64_t node_count = 1;
};

struct config_file {
  std::string model_name;
  std::string description;
  resources res;
  build_settings build;
  runtime_settings runtime;
  llm_config llm;  // from llm_config: and the top-level autoscaling_settings:
  bool autoscaling_at_top_level = false;  // it came from autoscaling_settings:, not llm_config:
  // environment_variables: NAME: value (scalars as written), in file order.
  std::vector<std::pair<std::string, std::string>> environment_variables;
  std::vector<std::string> secrets;  // the names under secrets: (their values are not kept)
  std::string model_metadata_json;   // model_metadata as compact JSON, "" when absent
};

// Names as written in config files.
std::string_view to_string(prefill_mode m);
std::string_view to_string(prefix_cache_mode m);
std::string_view to_string(checkpoint_source s);
std::string_view to_string(quantization_type q);
std::string_view to_string(queue_policy p);
std::string_view to_string(decoding_type t);

}  // namespace troupe::config
