// model_source: the one way a model is named and found: `--model`, config.yaml's
// checkpoint_repository and the Management API's "model" all resolve through here.
#pragma once

#include <string>
#include <string_view>

#include "config/checkpoint.hpp"
#include "config/config_error.hpp"

namespace troupe::config {

struct resolved_model {
  std::string path;         // the directory or .gguf file to load
  std::string repo;         // the hub id ("Qwen/Qwen3-0.6B") when it came from the HF cache
  std::string revision;     // HF: the revision asked for ("main", a tag or a commit)
  std::string commit;       // HF: the snapshot's commit
  std::string served_name;  // the name it serves under unless configured: the hub id, else
                            // the directory name or the .gguf file's stem
};

// spec: a local directory or .gguf file (relative ones from base_dir), or a hub id
// "org/name" with an optional "@revision" (else `revision`, else "main") looked up offline in
// the Hugging Face cache. A path that exists wins over a hub id of the same spelling; a spec
// that starts with "/", "./", "../" or "~" or ends in ".gguf" is only ever a path. Errors
// name `field` ("--model", "model"; `revision_field` for the revision, when it is another
// field) and say what was looked for where; a hub id the cache
// lacks lists the models it holds.
checked<resolved_model> resolve_model(std::string_view spec, const hf_cache_location& cache,
                                      const std::string& base_dir = ".",
                                      std::string_view revision = "",
                                      std::string_view field = "--model",
                                      std::string_view revision_field = "");

// config.yaml's trt_llm.build.checkpoint_repository, through the same lookup.
checked<resolved_model> resolve_model(const checkpoint_repository& ckpt,
                                      const hf_cache_location& cache,
                                      const std::string& base_dir = ".",
                                      const checkpoint_fields& fields = {});

}  // namespace troupe::config
