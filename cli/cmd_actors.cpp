#include "cli/cmd_actors.hpp"

#include <cstdio>
#include <cstdlib>

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
    std::printf("%-24s %-36s %-13s %8lld %10.0f %10.3f  %s\n", a.value("node", "").c_str(), a.value("actor", "").c_str(),
                a.value("role", "").c_str(), static_cast<long long>(a.value("mailbox_size", 0)), n,
                n > 0 ? 1000.0 * secs / n : 0.0, engine.c_str());
  }
  return 0;
}
