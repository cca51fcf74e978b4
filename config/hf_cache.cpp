// hf_cache: listing the hub cache (repos, their refs and snapshots, sizes, formats).
#include "config/hf_cache.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

namespace troupe::config {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kPrefix = "models--";

std::string read_first_line(const fs::path& p) {
  std::ifstream in(p);
  std::string s;
  std::getline(in, s);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string architecture_of(const fs::path& config_json) {
  std::ifstream in(config_json);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  const auto j = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return "";
  if (auto a = j.find("architectures"); a != j.end() && a->is_array() && !a->empty() && a->front().is_string())
    return a->front().get<std::string>();
  if (auto t = j.find("model_type"); t != j.end() && t->is_string()) return t->get<std::string>();
  return "";
}

cached_snapshot read_snapshot(const fs::path& dir) {
  cached_snapshot s;
  s.commit = dir.filename().string();
  s.path = dir.string();
  std::set<std::string> blobs;  // a blob two files point at is counted once
  bool safetensors = false, gguf = false, pytorch = false;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code fe;
    if (!it->is_regular_file(fe)) continue;  // follows the symlink into blobs/
    const fs::path target = fs::canonical(it->path(), fe);
    const std::string key = fe ? it->path().string() : target.string();
    if (blobs.insert(key).second) s.size_bytes += fs::file_size(it->path(), fe);
    if (it.depth() != 0) continue;
    const std::string name = it->path().filename().string();
    safetensors |= ends_with(name, ".safetensors") || name == "model.safetensors.index.json";
    gguf |= ends_with(name, ".gguf");
    pytorch |= name.rfind("pytorch_model", 0) == 0 && ends_with(name, ".bin");
  }
  s.format = safetensors ? "safetensors" : gguf ? "gguf" : pytorch ? "pytorch" : "";
  s.architecture = architecture_of(dir / "config.json");
  return s;
}

}  // namespace

std::string hf_cache_folder(const std::string& repo) {
  std::string folder = std::string(kPrefix) + repo;
  for (size_t i = 0; (i = folder.find('/', i)) != std::string::npos;) folder.replace(i, 1, "--");
  return folder;
}

std::vector<cached_repo> scan_hf_cache(const hf_cache_location& cache) {
  std::vector<cached_repo> out;
  std::error_code ec;
  for (fs::directory_iterator it(cache.hub_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string folder = it->path().filename().string();
    std::error_code de;
    if (folder.rfind(kPrefix, 0) != 0 || !it->is_directory(de)) continue;
    cached_repo r;
    r.dir = it->path().string();
    r.repo = folder.substr(kPrefix.size());
    // The Hub forbids "--" in names, so the first one separates org from name.
    if (const size_t sep = r.repo.find("--"); sep != std::string::npos) r.repo.replace(sep, 2, "/");

    std::map<std::string, std::vector<std::string>> refs_of;  // commit -> ref names
    const fs::path refs = it->path() / "refs";
    for (fs::recursive_directory_iterator ri(refs, de), re; !de && ri != re; ri.increment(de)) {
      std::error_code fe;
      if (!ri->is_regular_file(fe)) continue;
      refs_of[read_first_line(ri->path())].push_back(fs::relative(ri->path(), refs, fe).string());
    }
    for (fs::directory_iterator si(it->path() / "snapshots", de), se; !de && si != se; si.increment(de)) {
      std::error_code fe;
      if (!si->is_directory(fe)) continue;
      cached_snapshot s = read_snapshot(si->path());
      if (auto f = refs_of.find(s.commit); f != refs_of.end()) s.refs = f->second;
      std::sort(s.refs.begin(), s.refs.end());
      r.snapshots.push_back(std::move(s));
    }
    std::sort(r.snapshots.begin(), r.snapshots.end(), [](const cached_snapshot& a, const cached_snapshot& b) {
      if (a.refs.empty() != b.refs.empty()) return !a.refs.empty();
      return a.commit < b.commit;
    });
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const cached_repo& a, const cached_repo& b) { return a.repo < b.repo; });
  return out;
}

std::string cached_model_names(const hf_cache_location& cache) {
  std::string out;
  for (const cached_repo& r : scan_hf_cache(cache)) {
    if (r.snapshots.empty()) continue;
    if (!out.empty()) out += ", ";
    out += r.repo;
  }
  return out.empty() ? "none" : out;
}

}  // namespace troupe::config
