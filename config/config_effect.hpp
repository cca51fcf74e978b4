// config_effect: what each field of a config.yaml does when `troupe serve --config` (or
// `troupe node --config`) starts on this machine: applied, stored but not yet active (its
// feature has not landed: feature_status.hpp), or not applied here (a warning). No field a
// file sets is dropped without a line naming it; --strict-config refuses the last two kinds.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/settings.hpp"

namespace troupe::config {

enum class effect_kind { applied, not_yet_active, not_applied };
std::string_view to_string(effect_kind k);  // "applied", "not_yet_active", "not_applied"

struct field_effect {
  std::string field;    // "trt_llm.runtime.tensor_parallel_size"
  effect_kind kind;
  std::string message;  // starts with the field: "<field>: <what happens>"
};

// What the machine and the command line decide.
struct start_facts {
  int gpus = 0;                        // CUDA devices this build can use here
  std::string model_flag;              // --model as given ("" = none: checkpoint_repository serves)
  bool served_name_flag = false;       // --served-model-name given
  bool kv_cache_memory_flag = false;   // --kv-cache-memory given
  bool threads_flag = false;           // --threads given
  bool device_flag = false;            // --device given
  int workers = 1;
};

// Every field the file set, in file order of the blocks, with its effect.
std::vector<field_effect> config_effects(const config_file& cfg, const start_facts& facts);

// resources.cpu ("4", "2.5", "500m") as whole CPU threads, at least 1; 0 when unset or unreadable.
int cpu_threads(const resources& r);

// Which device resources asks for, given the facts: "cuda" when it asks for a GPU and one is
// here, else "cpu".
std::string device_for(const resources& r, const start_facts& facts);

}  // namespace troupe::config
