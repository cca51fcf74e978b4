// checkpoint: Hugging Face cache lookup (refs and snapshots) and local directories.
#include "config/checkpoint.hpp"

#include "config/hf_cache.hpp"

#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>

namespace troupe::config {

namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : "";
}

bool valid_repo_id(const std::string& repo) {
  // "org/name" or "name"; the characters the Hub allows, and no path tricks.
  if (repo.empty() || repo.size() > 200 || repo.find("..") != std::string::npos) return false;
  int slashes = 0;
  for (char c : repo) {
    if (c == '/') ++slashes;
    else if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
      return false;
  }
  return slashes <= 1 && repo.front() != '/' && repo.back() != '/';
}

bool valid_revision(const std::string& rev) {
  if (rev.empty() || rev.size() > 200 || rev.front() == '/') return false;
  for (size_t start = 0; start <= rev.size();) {
    size_t end = rev.find('/', start);
    if (end == std::string::npos) end = rev.size();
    std::string part = rev.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  for (char c : rev)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
          c == '/'))
      return false;
  return true;
}

bool is_commit_hash(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

std::string list_snapshots(const fs::path& repo_dir) {
  std::error_code ec;
  std::string out;
  for (fs::directory_iterator it(repo_dir / "snapshots", ec), end; !ec && it != end;
       it.increment(ec)) {
    if (!out.empty()) out += ", ";
    out += it->path().filename().string();
  }
  return out.empty() ? "none" : out;
}

}  // namespace

hf_cache_location hf_cache_from_environment() {
  if (auto v = env("HF_HUB_CACHE"); !v.empty()) return {v, "HF_HUB_CACHE"};
  if (auto v = env("HUGGINGFACE_HUB_CACHE"); !v.empty()) return {v, "HUGGINGFACE_HUB_CACHE"};
  if (auto v = env("HF_HOME"); !v.empty()) return {(fs::path(v) / "hub").string(), "HF_HOME"};
  if (auto v = env("XDG_CACHE_HOME"); !v.empty())
    return {(fs::path(v) / "huggingface" / "hub").string(), "XDG_CACHE_HOME"};
  std::string home = env("HOME");
  return {(fs::path(home.empty() ? "/" : home) / ".cache" / "huggingface" / "hub").string(),
          "the default (~/.cache/huggingface/hub)"};
}

checked<resolved_checkpoint> resolve_checkpoint(const checkpoint_repository& ckpt,
                                                const hf_cache_location& cache,
                                                const std::string& base_dir,
                                                const checkpoint_fields& fields) {
  checked<resolved_checkpoint> out;
  const std::string& repo_field = fields.repo;
  auto fail = [&](std::string path, std::string message, std::string fix = "") {
    out.errors.push_back({std::move(path), std::move(message), 0, 0, std::move(fix)});
    return out;
  };

  if (ckpt.source == checkpoint_source::local) {
    fs::path p(ckpt.repo);
    if (p.is_relative()) p = fs::path(base_dir) / p;
    std::error_code ec;
    fs::path abs = fs::weakly_canonical(p, ec);
    if (ec) abs = p;
    std::error_code fe;
    const bool gguf_file = abs.extension() == ".gguf" && fs::is_regular_file(abs, fe);
    if (!is_dir(abs) && !gguf_file)
      return fail(repo_field,
                  fmt::format("{}: the local checkpoint directory {} does not exist (looked at "
                              "{})", repo_field, ckpt.repo, abs.string()));
    out.value.path = abs.string();
    return out;
  }
  if (ckpt.source != checkpoint_source::hf)
    return fail(fields.source,
                fmt::format("{}: troupe reads checkpoints that are on disk: the local "
                            "Hugging Face cache (source: HF) or a directory (source: LOCAL); "
                            "it cannot fetch from {}", fields.source, to_string(ckpt.source)),
                "download the checkpoint to a directory and use source: LOCAL with repo: "
                "that directory");

  if (!valid_repo_id(ckpt.repo))
    return fail(repo_field, fmt::format("{}: \"{}\" is not a Hugging Face repo id "
                                        "(org/name)", repo_field, ckpt.repo));
  if (!valid_revision(ckpt.revision))
    return fail(fields.revision,
                fmt::format("{}: \"{}\" is not a branch, tag or commit name", fields.revision,
                            ckpt.revision));

  const fs::path hub(cache.hub_dir);
  const fs::path repo_dir = hub / hf_cache_folder(ckpt.repo);
  const std::string fix = fmt::format(
      "troupe does not download checkpoints: fetch it first (huggingface-cli download {}), or "
      "set HF_HOME or HF_HUB_CACHE to a cache that has it",
      ckpt.repo);
  if (!is_dir(repo_dir))
    return fail(repo_field,
                fmt::format("{}: {} is not in the local Hugging Face cache: looked for {} "
                            "(hub cache {}, from {}); the cache holds: {}",
                            repo_field, ckpt.repo, repo_dir.string(), hub.string(),
                            cache.decided_by, cached_model_names(cache)),
                fix);

  std::string commit;
  if (is_commit_hash(ckpt.revision)) {
    commit = ckpt.revision;
  } else {
    const fs::path ref = repo_dir / "refs" / ckpt.revision;
    std::ifstream in(ref);
    if (in) std::getline(in, commit);
    while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back())))
      commit.pop_back();
    if (!is_commit_hash(commit))
      return fail(fields.revision,
                  fmt::format("{}: {} has no revision \"{}\" in the local Hugging Face "
                              "cache: looked for {} (snapshots there: {})",
                              fields.revision, ckpt.repo, ckpt.revision, ref.string(),
                              list_snapshots(repo_dir)),
                  fix);
  }
  const fs::path snapshot = repo_dir / "snapshots" / commit;
  if (!is_dir(snapshot))
    return fail(repo_field,
                fmt::format("{}: {} revision {} is not in the local Hugging Face cache: looked "
                            "for {} (snapshots there: {})",
                            repo_field, ckpt.repo, ckpt.revision, snapshot.string(),
                            list_snapshots(repo_dir)),
                fix);
  out.value.path = snapshot.string();
  out.value.commit = commit;
  return out;
}

}  // namespace troupe::config
