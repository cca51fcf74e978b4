// readers: the schema of each configuration block, read from a node with every error kept.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "config/config_error.hpp"
#include "config/node.hpp"
#include "config/settings.hpp"

namespace troupe::config {

// Each reader takes the block's node (null when the block is absent: defaults stay), the
// block's field path for messages ("trt_llm.runtime", "llm_config.speculative_config"), the
// struct to fill and the error list to append to.

// trt_llm.runtime: max_seq_len, max_batch_size, max_num_tokens, tensor_parallel_size,
// enable_chunked_prefill, served_model_name, patch_kwargs and the engine settings.
void read_runtime(const node* n, const std::string& path, runtime_settings& out,
                  error_list& errors);

// kv_cache_memory: 0.9 or "90%" (a fraction of free memory), or bytes: an integer of at
// least 1 MiB, or a size with a unit ("512MiB", "16GiB", "16GB").
void read_kv_cache_memory(const node& n, const std::string& path, kv_cache_memory& out,
                          error_list& errors);

// kv_cache_memory as text, as `--kv-cache-memory` gives it: the same forms and limits, where a
// bare integer is bytes and any other number a fraction. nullopt when it is none of them.
std::optional<kv_cache_memory> parse_kv_cache_memory(std::string_view text);
// What kv_cache_memory accepts, for messages: "a fraction of free memory in (0, 1] such as ...".
extern const std::string_view kv_cache_memory_forms;

// trt_llm.build under v2: the five v2 fields; the v1-only ones get the documented message.
void read_build(const node* n, const std::string& path, build_settings& out, error_list& errors);

// llm_config: b10_routing_config, is_disaggregated, b10_disagg_config, speculative_config,
// autoscaling_settings. When `runtime` is not null the block may also carry "runtime" (the
// Management API's way to set engine settings); in config.yaml they live in trt_llm.runtime.
void read_llm_config(const node* n, const std::string& path, llm_config& out,
                     runtime_settings* runtime, error_list& errors);

void read_routing(const node* n, const std::string& path, routing_settings& out,
                  error_list& errors);
void read_speculative(const node* n, const std::string& path, speculative_settings& out,
                      error_list& errors);
// Token-based autoscaling; concurrency_target and target_utilization_percentage (v1) are
// rejected with a message pointing to target_in_flight_tokens.
void read_autoscaling(const node* n, const std::string& path, autoscaling_settings& out,
                      error_list& errors);

// The whole config.yaml document.
void read_config_file(const node& root, config_file& out, error_list& errors);

}  // namespace troupe::config
