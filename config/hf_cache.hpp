// hf_cache: what the local Hugging Face hub cache holds: models--org--name/ with refs/,
// snapshots/<commit>/ (symlinks) and blobs/, read without changing anything.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/checkpoint.hpp"

namespace troupe::config {

struct cached_snapshot {
  std::string commit;
  std::string path;               // <hub>/models--org--name/snapshots/<commit>
  std::vector<std::string> refs;  // the refs/ names that point at it ("main", "v1.0"), sorted
  std::string format;             // "safetensors", "gguf", "pytorch" or "" (none of those)
  uint64_t size_bytes = 0;        // what its files point at, each blob counted once
  std::string architecture;       // config.json's architectures[0] (or model_type), else ""
};

struct cached_repo {
  std::string repo;  // "org/name" (or "name")
  std::string dir;   // <hub>/models--org--name
  std::vector<cached_snapshot> snapshots;  // those with a ref first, then by commit
};

// Every model repository of the cache, sorted by repo id; an absent or unreadable cache is
// an empty list. Dataset and space repositories are skipped.
std::vector<cached_repo> scan_hf_cache(const hf_cache_location& cache);

// "Qwen/Qwen3-0.6B, gpt2", or "none" when the cache holds no model: for messages.
std::string cached_model_names(const hf_cache_location& cache);

// "models--Qwen--Qwen3-0.6B" for "Qwen/Qwen3-0.6B".
std::string hf_cache_folder(const std::string& repo);

}  // namespace troupe::config
