// model_source: a model spec (path or hub id) to a checkpoint on disk, through resolve_checkpoint.
#include "config/model_source.hpp"

#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

namespace troupe::config {

namespace fs = std::filesystem;

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// A spec that can only mean a path: never looked up in the cache.
bool path_only(std::string_view spec) {
  return starts_with(spec, "/") || starts_with(spec, "./") || starts_with(spec, "../") ||
         starts_with(spec, "~") || spec == "." || spec == ".." ||
         (spec.size() > 5 && spec.substr(spec.size() - 5) == ".gguf");
}

std::string local_name(const fs::path& p) {
  fs::path q = p;
  if (q.filename().empty()) q = q.parent_path();
  return q.extension() == ".gguf" ? q.stem().string() : q.filename().string();
}

resolved_model from_checkpoint(const resolved_checkpoint& r, const checkpoint_repository& c) {
  resolved_model m;
  m.path = r.path;
  m.commit = r.commit;
  if (c.source == checkpoint_source::hf) {
    m.repo = c.repo;
    m.revision = c.revision;
    m.served_name = c.repo;
  } else {
    m.served_name = local_name(c.repo);  // as written: a symlink's name, not its target's
  }
  return m;
}

}  // namespace

checked<resolved_model> resolve_model(std::string_view spec_in, const hf_cache_location& cache,
                                      const std::string& base_dir, std::string_view revision,
                                      std::string_view field_in, std::string_view revision_field_in) {
  checked<resolved_model> out;
  const std::string field(field_in);
  const std::string revision_field(revision_field_in.empty() ? field_in : revision_field_in);
  std::string spec(spec_in);
  auto fail = [&](std::string message, std::string fix = "") {
    out.errors.push_back({field, std::move(message), 0, 0, std::move(fix)});
    return out;
  };
  if (spec.empty()) return fail(field + ": empty; give a model directory, a .gguf file or a Hugging Face repo id");
  if (starts_with(spec, "~")) {
    const char* home = std::getenv("HOME");
    spec = std::string(home ? home : "") + spec.substr(1);
  }
  fs::path local(spec);
  if (local.is_relative()) local = fs::path(base_dir) / local;
  std::error_code ec;
  const bool exists = fs::exists(local, ec);
  if (exists || path_only(spec)) {
    if (!exists)
      return fail(fmt::format("{}: {}: no such file or directory (looked at {})", field, spec_in,
                              fs::weakly_canonical(local, ec).string()));
    if (!revision.empty() && revision != "main") {
      out.errors.push_back({revision_field,
                            fmt::format("{}: only used with a Hugging Face repo id, and {} is a path on "
                                        "disk",
                                        revision_field, spec_in)});
      return out;
    }
    checkpoint_repository c;
    c.source = checkpoint_source::local;
    c.repo = spec;
    auto r = resolve_checkpoint(c, cache, base_dir, {field, field, field});
    if (!r.ok()) {
      out.errors = std::move(r.errors);
      return out;
    }
    out.value = from_checkpoint(r.value, c);
    return out;
  }

  checkpoint_repository c;
  c.repo = spec;
  c.revision = revision.empty() ? "main" : std::string(revision);
  if (const size_t at = spec.rfind('@'); at != std::string::npos) {
    c.repo = spec.substr(0, at);
    const std::string rev = spec.substr(at + 1);
    if (!revision.empty() && revision != rev)
      return fail(fmt::format("{}: {} names revision {}, and revision says {}; give one", field,
                              spec_in, rev, revision));
    c.revision = rev;
  }
  auto r = resolve_checkpoint(c, cache, base_dir, {field, field, revision_field});
  if (!r.ok()) {
    // Neither a path here nor a repo the cache has: say both.
    for (auto& e : r.errors)
      if (e.message.find("is not a Hugging Face repo id") != std::string::npos)
        e.message = fmt::format("{}: {} is neither a file or directory (looked at {}) nor a Hugging "
                                "Face repo id (org/name[@revision])",
                                field, spec_in, fs::weakly_canonical(local, ec).string());
    out.errors = std::move(r.errors);
    return out;
  }
  out.value = from_checkpoint(r.value, c);
  return out;
}

checked<resolved_model> resolve_model(const checkpoint_repository& ckpt, const hf_cache_location& cache,
                                      const std::string& base_dir, const checkpoint_fields& fields) {
  checked<resolved_model> out;
  auto r = resolve_checkpoint(ckpt, cache, base_dir, fields);
  if (!r.ok()) {
    out.errors = std::move(r.errors);
    return out;
  }
  out.value = from_checkpoint(r.value, ckpt);
  return out;
}

}  // namespace troupe::config
