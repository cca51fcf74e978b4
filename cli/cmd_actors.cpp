#include "cli/cmd_actors.hpp"

#include <cstdio>
#include <cstdlib>
#include <ctime>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "actors/frontend.hpp"
#include "cli/command_line.hpp"

int run_actors_command(const std::vector<std::string>& args) {
  CLI::App app{"List the actors of a running deployment with their metrics.", "troupe actors"};
  troupe::cli::setup(app);
  std::string url = "http://localhost:8000", key;
  bool json = false;
  app.add_option("--url", url, "the deployment's HTTP address")->type_name("URL");
  app.add_option("--api-key", key, "the deployment's API key")->type_name("KEY")->envname("TROUPE_API_KEY");
  app.add_flag("--json", json, "print the JSON as served by /v1/actors");
  if (auto rc = troupe::cli::parse(app, args)) return *rc;
  auto body = troupe::http_get(url + "/v1/actors", key);
  if (!body.ok()) {
    std::fprintf(stderr, "troupe actors: %s\n", body.message().c_str());
    return 1;
  }
  auto j = nlohmann::json::parse(*body, nullptr, false);
  if (j.is_discarded() || !j.contains("data")) {
    std::fprintf(stderr, "troupe actors: %s/v1/actors did not answer with an actor list\n", url.c_str());
    return 1;
  }
  if (json) {
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%-24s %-36s %-13s %8s %10s %10s  %s\n", "NODE", "ACTOR", "ROLE", "MAILBOX", "MESSAGES", "AVG MS", "ENGINE");
  for (const auto& a : j["data"]) {
    const double n = a.value("messages_total", 0.0), secs = a.value("handling_seconds", 0.0);
    std::string engine;
    if (a.contains("engine"))
      engine = fmt::format("running {} waiting {} kv {}/{}", a["engine"].value("running", 0), a["engine"].value("waiting", 0),
                           a["engine"].value("kv_blocks_used", 0), a["engine"].value("kv_blocks_total", 0));
    if (a.value("worker_role", "aggregated") != "aggregated")
      engine += fmt::format("  {} (unit {}), kv transfers {} ({} blocks, {} skipped)", a.value("worker_role", ""),
                            a.value("unit", 0), a["kv_transfer"].value("transfers", 0), a["kv_transfer"].value("blocks", 0),
                            a["kv_transfer"].value("skipped_blocks", 0));
    std::printf("%-24s %-36s %-13s %8lld %10.0f %10.3f  %s\n", a.value("node", "").c_str(), a.value("actor", "").c_str(),
                a.value("role", "").c_str(), static_cast<long long>(a.value("mailbox_size", 0)), n,
                n > 0 ? 1000.0 * secs / n : 0.0, engine.c_str());
  }
  // The router's view of each worker: what its index holds and the load it counts.
  if (j.contains("router") && j["router"].contains("workers") && !j["router"]["workers"].empty()) {
    std::printf("\n%-28s %-8s %8s %8s %8s %10s %8s %6s %6s %8s\n", "ROUTER VIEW OF WORKER", "SYNC", "BLOCKS", "IN FLIGHT",
                "ACTIVE", "PREFILLQ", "ROUTED", "GAPS", "DUMPS", "HIT RATE");
    for (const auto& w : j["router"]["workers"]) {
      const double prompt = w.value("prompt_tokens", 0.0), cached = w.value("cached_tokens", 0.0);
      std::printf("%-28s %-8s %8lld %8lld %8lld %10lld %8lld %6lld %6lld %8.2f\n", w.value("worker", "").c_str(),
                  !w.value("alive", false)                 ? (w.value("status", "") == "stopped" ? "stopped" : "lost")
                  : w.value("status", "") == "draining" ? "draining"
                  : w.value("in_sync", false)           ? "yes"
                                                        : "syncing",
                  static_cast<long long>(w.value("kv_cached_blocks", 0)), static_cast<long long>(w.value("in_flight_requests", 0)),
                  static_cast<long long>(w.value("active_blocks", 0)), static_cast<long long>(w.value("queued_prefill_blocks", 0)),
                  static_cast<long long>(w.value("routed", 0)), static_cast<long long>(w.value("kv_event_gaps", 0)),
                  static_cast<long long>(w.value("kv_dumps", 0)), prompt > 0 ? cached / prompt : 0.0);
    }
  }
  // Each autoscaler: its figures and the last entries of its decision log.
  if (j.contains("autoscalers"))
    for (const auto& a : j["autoscalers"]) {
      std::printf("\nAUTOSCALER %s (%s): in-flight tokens %.0f (%.0f over the window, target %lld), replicas %lld "
                  "(desired %lld, starting %lld, draining %lld), scale events up %lld down %lld\n",
                  a.value("model", "").c_str(), a.value("group", "").c_str(), a.value("in_flight_tokens", 0.0),
                  a.value("in_flight_tokens_windowed", 0.0),
                  static_cast<long long>(a["settings"].value("target_in_flight_tokens", 0)),
                  static_cast<long long>(a.value("current", 0)), static_cast<long long>(a.value("desired", 0)),
                  static_cast<long long>(a.value("starting", 0)), static_cast<long long>(a.value("draining", 0)),
                  static_cast<long long>(a.value("scale_ups", 0)), static_cast<long long>(a.value("scale_downs", 0)));
      const auto& log = a["log"];
      for (size_t i = log.size() > 10 ? log.size() - 10 : 0; i < log.size(); ++i) {
        const auto t = static_cast<std::time_t>(log[i].value("time", 0.0));
        char when[32] = {};
        std::strftime(when, sizeof when, "%H:%M:%S", std::gmtime(&t));
        std::printf("  %s  %s\n", when, log[i].value("event", "").c_str());
      }
    }
  return 0;
}
