// migrate: rewrites a v1 (Engine-Builder-LLM) config.yaml as a v2 (BIS-LLM) one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config_error.hpp"

namespace troupe::config {

// The request averages that turn a v1 concurrency_target into target_in_flight_tokens.
// The migration page's example: 10 at 4K input and 1K output tokens is about 50,000.
struct migrate_options {
  int64_t avg_input_tokens = 4000;
  int64_t avg_output_tokens = 1000;
};

struct migration {
  std::string text;                // the v2 file
  std::vector<std::string> notes;  // each step and what it did or assumed, one line each
  bool comments_kept = true;       // false: the file was re-emitted and lost its comments
};

// Applies the seven documented steps: (1) inference_stack: v2 first in trt_llm, (2) remove
// base_model, (3) move max_seq_len, max_batch_size and max_num_tokens from build to runtime,
// (4) tensor_parallel_count -> runtime.tensor_parallel_size, (5) remove plugin_configuration,
// (6) remove speculator, (7) enable_chunked_context -> enable_chunked_prefill. Also:
// autoscaling_settings.concurrency_target -> target_in_flight_tokens = concurrency_target x
// (avg input + avg output tokens), target_utilization_percentage removed; the v1 runtime
// fields that v2 has no place for (kv_cache_free_gpu_mem_fraction, which becomes
// kv_cache_memory unless it is v2's default 0.9; batch_scheduler_policy; total_token_limit).
//
// Comments and layout are kept: the original text is edited line by line, guided by the
// parsed tree (each entry's span is its key line, the comment lines right above it, and the
// lines indented under it). The edited text is parsed again and must give the same tree as
// the migration applied to the parsed document; when it does not (flow-style blocks such
// as `build: {...}`, unusual layouts) the migrated tree is emitted instead, without comments,
// and comments_kept is false. Errors: unreadable YAML, no trt_llm map.
checked<migration> migrate_to_v2(std::string_view v1_yaml, const migrate_options& options = {});

}  // namespace troupe::config
