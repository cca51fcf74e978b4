// checkpoint: finds a checkpoint_repository on disk: the local Hugging Face cache or a directory.
#pragma once

#include <string>
#include <vector>

#include "config/config_error.hpp"
#include "config/settings.hpp"

namespace troupe::config {

// Where the Hugging Face hub cache is, the way huggingface_hub decides it: HF_HUB_CACHE
// (or the older HUGGINGFACE_HUB_CACHE), else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
struct hf_cache_location {
  std::string hub_dir;
  std::string decided_by;  // "HF_HUB_CACHE", "HF_HOME", ... for messages
};
hf_cache_location hf_cache_from_environment();

struct resolved_checkpoint {
  std::string path;    // the snapshot (or local) directory the engine loads
  std::string commit;  // HF: the snapshot's commit hash; "" for a local directory
};

// The field paths that resolution errors name.
struct checkpoint_fields {
  std::string source = "trt_llm.build.checkpoint_repository.source";
  std::string repo = "trt_llm.build.checkpoint_repository.repo";
  std::string revision = "trt_llm.build.checkpoint_repository.revision";
};

// Cache layout: <hub>/models--<org>--<name>/refs/<revision> holds a commit hash, and
// <hub>/models--<org>--<name>/snapshots/<commit>/ the files. A revision of 40 hex digits
// names the snapshot directly. LOCAL repos are directories (or .gguf files), relative ones
// taken from `base_dir` (the config file's directory). Errors name the field and every path
// looked at, and a repo the cache lacks lists the ones it has; nothing is downloaded.
checked<resolved_checkpoint> resolve_checkpoint(const checkpoint_repository& ckpt,
                                                const hf_cache_location& cache,
                                                const std::string& base_dir = ".",
                                                const checkpoint_fields& fields = {});

}  // namespace troupe::config
