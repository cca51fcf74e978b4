#include "cli/cmd_models.hpp"

#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/command_line.hpp"
#include "config/hf_cache.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/model_bundle.hpp"

namespace {

using namespace troupe;

std::string human_bytes(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", b) : fmt::format("{:.1f} {}", v, units[u]);
}

// Whether troupe can serve the snapshot: it loads it as `troupe serve` would (the weights are
// mapped, not read), so the answer is the server's own, with its reason.
struct verdict {
  bool servable = false;
  std::string reason;
  std::string architecture;
};

verdict check(const config::cached_snapshot& s) {
  verdict v;
  v.architecture = s.architecture;
  auto b = load_model(s.path);
  if (!b.ok()) {
    v.reason = b.message();
    return v;
  }
  if (v.architecture.empty()) v.architecture = b->weights->config().arch_name;
  if (!b->tok) {
    v.reason = "it ships no tokenizer";
    return v;
  }
  v.servable = true;
  return v;
}

}  // namespace

int run_models_command(const std::vector<std::string>& args) {
  CLI::App app{"List the models in the local Hugging Face cache (HF_HUB_CACHE, HF_HOME, ~/.cache/huggingface/hub), "
               "each with whether `troupe serve --model ORG/NAME` can serve it.",
               "troupe models"};
  troupe::cli::setup(app);
  bool json = false;
  app.add_flag("--json", json,
               "print one JSON object: the cache, and each snapshot with its revisions, format, size, architecture "
               "and whether troupe serves it")
      ->group(troupe::cli::group::output);
  troupe::cli::add_hf_cache_environment(app);
  if (auto rc = troupe::cli::parse(app, args)) return *rc;
  const config::hf_cache_location cache = config::hf_cache_from_environment();
  const auto repos = config::scan_hf_cache(cache);
  nlohmann::json list = nlohmann::json::array();
  for (const auto& r : repos)
    for (const auto& s : r.snapshots) {
      const verdict v = check(s);
      list.push_back({{"model", r.repo},
                      {"revisions", s.refs},
                      {"commit", s.commit},
                      {"path", s.path},
                      {"format", s.format},
                      {"size_bytes", s.size_bytes},
                      {"architecture", v.architecture},
                      {"servable", v.servable},
                      {"reason", v.reason}});
    }
  if (json) {
    nlohmann::json out = {{"hub_cache", cache.hub_dir}, {"decided_by", cache.decided_by}, {"data", list}};
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return 0;
  }
  std::printf("hub cache: %s (from %s)\n", cache.hub_dir.c_str(), cache.decided_by.c_str());
  if (list.empty()) {
    std::printf("no models; fetch one with `huggingface-cli download ORG/NAME`, or point HF_HOME or HF_HUB_CACHE at a "
                "cache that has some\n");
    return 0;
  }
  std::printf("%-40s %-12s %-12s %-12s %10s  %-26s %s\n", "MODEL", "REVISION", "COMMIT", "FORMAT", "SIZE",
              "ARCHITECTURE", "SERVABLE");
  for (const auto& m : list) {
    std::string revs;
    for (const auto& x : m["revisions"]) revs += (revs.empty() ? "" : ",") + x.get<std::string>();
    const std::string servable = m["servable"] ? "yes" : "no: " + m["reason"].get<std::string>();
    std::printf("%-40s %-12s %-12s %-12s %10s  %-26s %s\n", m["model"].get<std::string>().c_str(),
                revs.empty() ? "-" : revs.c_str(), m["commit"].get<std::string>().substr(0, 12).c_str(),
                m["format"].get<std::string>().empty() ? "-" : m["format"].get<std::string>().c_str(),
                human_bytes(m["size_bytes"].get<uint64_t>()).c_str(),
                m["architecture"].get<std::string>().empty() ? "-" : m["architecture"].get<std::string>().c_str(),
                servable.c_str());
  }
  return 0;
}
