// The frontend's operator surface: the status page at / (HTML and JS compiled into the binary
// from status_page.html, no build step, nothing fetched from outside) and /v1/status, the
// deployment's description and the router's figures that the page reads beside /v1/actors,
// /metrics and /health. The page holds no data itself, so / needs no API key; /v1/status does.
#include <chrono>
#include <ctime>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "actors/frontend_internal.hpp"
#include "config/deployment_store.hpp"

namespace troupe::assets {
extern const std::string_view status_page_html;
}

namespace troupe {

namespace {

double ratio(int64_t a, int64_t b) { return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0; }

nlohmann::json status_json(frontend::impl& fe, std::chrono::steady_clock::time_point started, int64_t started_unix) {
  caf::scoped_actor self{fe.sys};
  router_stats rs;
  bool answered = false;
  self->request(fe.router, std::chrono::seconds(5), stats_atom::value)
      .receive([&](router_stats& s) { rs = std::move(s), answered = true; }, [](caf::error&) {});
  size_t alive = 0;
  nlohmann::json workers = nlohmann::json::array();
  for (size_t i = 0; i < rs.workers.size(); ++i) {
    alive += rs.alive[i] != 0;
    workers.push_back({{"worker", rs.workers[i]},
                       {"model", rs.models[i]},
                       {"alive", rs.alive[i] != 0},
                       {"status", i < rs.status.size() ? rs.status[i] : std::string(rs.alive[i] ? "active" : "lost")},
                       {"in_flight_tokens", rs.in_flight_tokens[i]},
                       {"prompt_tokens", rs.worker_prompt_tokens[i]},
                       {"cached_tokens", rs.worker_cached_tokens[i]},
                       {"hit_rate", ratio(rs.worker_cached_tokens[i], rs.worker_prompt_tokens[i])},
                       {"kv_cached_blocks", rs.kv_cached_blocks[i]},
                       {"kv_events", rs.kv_events[i]},
                       {"kv_event_gaps", rs.kv_event_gaps[i]}});
  }
  // The best prefix hit rate and the efficiency as /metrics has them: over the router's
  // window of finished requests, every model together.
  int64_t window_prompt = 0, window_cached = 0, window_best = 0;
  for (const router_model_stats& m : rs.model_stats) {
    window_prompt += m.prompt_tokens;
    window_cached += m.cached_tokens;
    window_best += m.best_prefix_tokens;
  }
  const bool up = answered && alive > 0 && !fe.draining;
  nlohmann::json deployment = nlohmann::json::parse(fe.opts.status_json, nullptr, false);
  if (!deployment.is_object()) deployment = nlohmann::json::object();
  nlohmann::json deployments = nlohmann::json::array();
  if (fe.store)
    for (const auto& d : fe.store->list())
      deployments.push_back({{"id", d.id}, {"name", d.name}, {"model", d.model}, {"commit", d.commit}});
  return {{"object", "status"},
          {"node", fe.opts.node},
          {"health", fe.draining ? "draining" : up ? "ok" : "unavailable"},
          {"started_at", started_unix},
          {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()},
          {"api_key_required", !fe.opts.api_key.empty()},
          {"requests_in_flight", fe.in_flight.load()},
          {"max_in_flight", fe.opts.max_in_flight},
          {"deployment", std::move(deployment)},
          {"models", fe.models->names()},
          {"management", {{"enabled", fe.store != nullptr}, {"deployments", std::move(deployments)}}},
          {"router",
           {{"requests", rs.requests},
            {"retried", rs.retried},
            {"failed", rs.failed},
            {"aborted", rs.aborted},
            {"prompt_tokens", rs.prompt_tokens},
            {"cached_tokens", rs.cached_tokens},
            {"hit_rate", ratio(rs.cached_tokens, rs.prompt_tokens)},
            {"best_prefix_hit_rate", ratio(window_best, window_prompt)},
            {"hit_rate_efficiency", window_best > 0 ? ratio(window_cached, window_best) : 1.0},
            {"workers_alive", alive},
            {"workers", std::move(workers)}}},
          {"autoscalers", nlohmann::json::parse(autoscalers_json(rs))}};
}

}  // namespace

std::string autoscalers_json(const router_stats& rs) {
  nlohmann::json out = nlohmann::json::array();
  for (const autoscaler_report& a : rs.autoscalers) {
    nlohmann::json log = nlohmann::json::array();
    for (size_t i = 0; i < a.log.size(); ++i)
      log.push_back({{"time", i < a.log_times.size() ? a.log_times[i] : 0.0}, {"event", a.log[i]}});
    const autoscale_settings& s = a.settings;
    out.push_back({{"model", a.model},
                   {"group", a.group},
                   {"settings",
                    {{"target_in_flight_tokens", s.target_in_flight_tokens},
                     {"min_replica", s.min_replica},
                     {"max_replica", s.max_replica},
                     {"scale_up_delay", s.scale_up_delay_s},
                     {"scale_down_delay", s.scale_down_delay_s},
                     {"autoscaling_window", s.window_s}}},
                   {"in_flight_tokens", a.in_flight_tokens},
                   {"in_flight_tokens_windowed", a.window_mean},
                   {"recommended", a.recommended},
                   {"desired", a.desired},
                   {"current", a.current},
                   {"starting", a.starting},
                   {"draining", a.draining},
                   {"scale_ups", a.scale_ups},
                   {"scale_downs", a.scale_downs},
                   {"reason", a.reason},
                   {"log", std::move(log)}});
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void add_status_routes(frontend::impl& fe, httplib::Server& srv) {
  const auto started = std::chrono::steady_clock::now();
  const auto started_unix = static_cast<int64_t>(std::time(nullptr));
  srv.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    // The page talks to this server only.
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
                   "img-src 'self' data:");
    res.set_content(std::string(assets::status_page_html), "text/html; charset=utf-8");
  });
  srv.Get("/v1/status", [&fe, started, started_unix](const httplib::Request&, httplib::Response& res) {
    res.set_content(status_json(fe, started, started_unix).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                    "application/json");
  });
}

}  // namespace troupe
