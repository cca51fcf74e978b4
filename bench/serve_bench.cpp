#include "bench/serve_bench.hpp"

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "actors/frontend.hpp"
#include "actors/load_generator.hpp"
#include "bench/bench_model.hpp"
#include "bench/bench_util.hpp"
#include "runtime/progress.hpp"

extern char** environ;

namespace troupe::bench {
namespace {

using json = nlohmann::json;

double rss_mib(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

// A `troupe serve` child process; its URL once it says where it listens.
struct server_process {
  pid_t pid = -1;
  std::string url;
  ~server_process() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      int st = 0;
      for (int i = 0; i < 100 && waitpid(pid, &st, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (waitpid(pid, &st, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
      }
    }
  }
};

result<std::unique_ptr<server_process>> start_server(const serve_bench_options& o) {
  std::string exe = o.troupe;
  if (exe.empty()) {
    char buf[4096] = {};
    const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return make_error("cannot find the troupe binary (/proc/self/exe)");
    exe.assign(buf, static_cast<size_t>(n));
  }
  int out[2];
  if (pipe(out) != 0) return make_error("pipe failed");
  const int most = *std::max_element(o.concurrency.begin(), o.concurrency.end());
  std::vector<std::string> args = {exe, "serve", "--model", o.model, "--host", "127.0.0.1", "--port", "0",
                                   "--workers", std::to_string(o.workers), "--kv-cache-memory", o.kv_cache_memory,
                                   "--max-in-flight", std::to_string(std::max(512, std::max(most, o.users) * 2))};
  if (!o.served_name.empty()) {
    args.push_back("--served-model-name");
    args.push_back(o.served_name);
  }
  for (const auto& [flag, value] : {std::pair<const char*, std::string>{"--routing", o.routing.empty() ? "" : o.routing[0]},
                                    {"--simulate", o.simulate},
                                    {"--llm-config", o.llm_config},
                                    {"--threads", o.threads > 0 ? std::to_string(o.threads) : ""}})
    if (!value.empty()) {
      args.push_back(flag);
      args.push_back(value);
    }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  auto p = std::make_unique<server_process>();
  const int rc = posix_spawn(&p->pid, exe.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  if (rc != 0) {
    close(out[0]);
    return make_error("cannot start " + exe);
  }
  // It prints "troupe: serving MODEL at http://HOST:PORT/v1" once it listens.
  std::string seen;
  char buf[512];
  for (;;) {
    const ssize_t n = read(out[0], buf, sizeof buf);
    if (n <= 0) {
      close(out[0]);
      return make_error("troupe serve exited before it was ready:\n" + seen);
    }
    seen.append(buf, static_cast<size_t>(n));
    const size_t at = seen.find(" at http://");
    const size_t end = at == std::string::npos ? at : seen.find("/v1", at);
    if (end != std::string::npos) {
      p->url = seen.substr(at + 4, end - at - 4);
      break;
    }
  }
  close(out[0]);
  return p;
}

// The name of the first model a server lists on /v1/models.
result<std::string> first_model(const std::string& url) {
  TROUPE_TRY(std::string models, http_get(url + "/v1/models"));
  auto j = json::parse(models, nullptr, false);
  if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() || !j["data"][0].contains("id"))
    return make_error(url + " serves no model");
  return j["data"][0]["id"].get<std::string>();
}

// A figure of a Prometheus text body for one model, NaN when absent.
double metric_of(const std::string& text, const std::string& name, const std::string& model) {
  const std::string key = name + "{model=\"" + model + "\"} ";
  const size_t at = text.find("\n" + key);
  if (at == std::string::npos) return std::nan("");
  return std::strtod(text.c_str() + at + 1 + key.size(), nullptr);
}

json percentiles_ms(const std::vector<double>& v) {
  return json{{"mean", 1000 * mean(v)}, {"p50", 1000 * percentile(v, 50)}, {"p90", 1000 * percentile(v, 90)},
              {"p99", 1000 * percentile(v, 99)}};
}

// The streaming load the options ask for, at one concurrency.
load_options load_of(const serve_bench_options& o, const std::string& url, const std::string& model, int concurrency) {
  load_options lo;
  lo.url = url;
  lo.model = model;
  lo.concurrency = concurrency;
  lo.duration_s = o.duration_s;
  lo.max_tokens = o.max_tokens;
  lo.prompt_words = o.prompt_words;
  lo.chat = o.chat;
  return lo;
}

// Without --model: the random-weight 22 M-parameter model, written once.
result<std::string> default_bench_model() {
  const char* home = std::getenv("HOME");
  const std::string dir = std::string(home ? home : "/tmp") + "/.cache/troupe/bench-models/troupe-bench-22m";
  std::fprintf(stderr, "bench serve: the random-weight model troupe-bench-22m in %s\n", dir.c_str());
  return write_bench_model(dir);
}

// One policy's run: a fresh server, the agent loop, the router's view afterwards.
result<json> multi_turn_run(serve_bench_options o, const std::string& policy) {
  o.routing = {policy};
  std::fprintf(stderr, "bench serve: multi-turn, %s routing, %d workers%s, %d users x %d turns\n", policy.c_str(),
               o.workers, o.simulate.empty() ? "" : " (simulated)", o.users, o.turns);
  TROUPE_TRY(std::unique_ptr<server_process> server, start_server(o));
  TROUPE_TRY(const std::string model, first_model(server->url));
  multi_turn_options mo;
  mo.url = server->url;
  mo.model = model;
  mo.users = o.users;
  mo.turns = o.turns;
  mo.system_words = o.system_words;
  mo.turn_words = o.turn_words;
  mo.max_tokens = o.max_tokens;
  TROUPE_TRY(multi_turn_result r, run_multi_turn(mo));
  TROUPE_TRY(std::string metrics_text, http_get(server->url + "/metrics"));
  TROUPE_TRY(std::string actors_text, http_get(server->url + "/v1/actors"));
  const json actors = json::parse(actors_text, nullptr, false);
  // Load per worker: requests routed to it, and prompt tokens it had to compute.
  std::vector<double> routed, computed;
  if (!actors.is_discarded())
    for (const auto& w : actors["router"]["workers"]) {
      routed.push_back(w.value("routed", 0.0));
      computed.push_back(w.value("prompt_tokens", 0.0) - w.value("cached_tokens", 0.0));
    }
  auto spread = [](const std::vector<double>& v) {
    const double m = mean(v), mx = v.empty() ? 0 : *std::max_element(v.begin(), v.end());
    return json{{"mean", m}, {"max", mx}, {"max_over_mean", m > 0 ? mx / m : 0.0}};
  };
  json by_turn = json::array();
  for (const auto& t : r.by_turn) by_turn.push_back(1000 * mean(t));
  int64_t prompt = 0, cached = 0;
  for (size_t i = 0; i < r.prompt_tokens.size(); ++i) {
    prompt += std::max<int64_t>(0, r.prompt_tokens[i]);
    cached += std::max<int64_t>(0, r.cached_tokens[i]);
  }
  return json{{"routing", policy},
              {"requests_ok", r.ok},
              {"requests_failed", r.failed},
              {"errors", r.errors},
              {"seconds", r.seconds},
              {"ttft_ms", percentiles_ms(r.ttft_s)},
              {"ttft_ms_mean_by_turn", by_turn},
              {"prompt_tokens", prompt},
              {"cached_tokens_reported", cached},
              {"kv_cache_hit_rate", metric_of(metrics_text, "kv_cache_hit_rate", model)},
              {"kv_cache_hit_rate_skew", metric_of(metrics_text, "kv_cache_hit_rate_skew", model)},
              {"kv_cache_best_prefix_hit_rate", metric_of(metrics_text, "kv_cache_best_prefix_hit_rate", model)},
              {"kv_cache_hit_rate_efficiency", metric_of(metrics_text, "kv_cache_hit_rate_efficiency", model)},
              {"requests_per_worker", spread(routed)},
              {"computed_prompt_tokens_per_worker", spread(computed)}};
}

result<json> run_multi_turn_bench(serve_bench_options o) {
  if (!o.url.empty()) return make_error("--workload multi-turn starts its own servers (one per --routing policy): give --model, not --url");
  if (o.model.empty()) {
    TROUPE_TRY(o.model, default_bench_model());
  }
  json out = {{"workload", "multi-turn"},
              {"model", o.model},
              {"workers", o.workers},
              {"simulated", !o.simulate.empty()},
              {"users", o.users},
              {"turns", o.turns},
              {"system_words", o.system_words},
              {"turn_words", o.turn_words},
              {"max_tokens", o.max_tokens}};
  json runs = json::array();
  std::map<std::string, double> ttft;
  for (const std::string& policy : o.routing) {
    TROUPE_TRY(json r, multi_turn_run(o, policy));
    ttft[policy] = r["ttft_ms"]["mean"];
    runs.push_back(std::move(r));
  }
  out["runs"] = runs;
  if (ttft.count("kv") && ttft["kv"] > 0) {
    json ratios = json::object();
    for (auto& [p, t] : ttft)
      if (p != "kv") ratios[p + "_over_kv_mean_ttft"] = t / ttft["kv"];
    out["ratios"] = ratios;
  }
  return out;
}

// One ramp run: a fresh server (autoscaled when llm_config is set, else one fixed replica),
// the ramp, and the server's replicas and in-flight tokens sampled every half second.
result<json> ramp_run(serve_bench_options o, const std::string& llm_config, const char* mode) {
  o.workers = 1;
  o.llm_config = llm_config;
  const int peak = *std::max_element(o.concurrency.begin(), o.concurrency.end());
  std::fprintf(stderr, "bench serve: ramp to %d streams over %.0f s, %s\n", peak, o.duration_s, mode);
  TROUPE_TRY(std::unique_ptr<server_process> server, start_server(o));
  TROUPE_TRY(const std::string model, first_model(server->url));
  load_options lo = load_of(o, server->url, model, peak);
  lo.ramp = true;
  std::atomic<bool> running{true};
  json t = json::array(), streams = json::array(), tokens = json::array(), active = json::array(), desired = json::array();
  const auto t0 = std::chrono::steady_clock::now();
  std::thread sampler([&] {
    while (running) {
      const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto a = http_get(server->url + "/v1/actors");
      if (a.ok()) {
        const json j = json::parse(*a, nullptr, false);
        int64_t in_flight = 0, n_active = 0;
        if (!j.is_discarded())
          for (const auto& w : j["router"]["workers"]) {
            if (w.value("status", "") != "active" && w.value("status", "") != "draining") continue;
            in_flight += w.value("in_flight_tokens", int64_t{0});
            n_active += w.value("status", "") == "active";
          }
        const bool scaled = !j.is_discarded() && j.contains("autoscalers") && !j["autoscalers"].empty();
        const double half = 0.5 * o.duration_s, x = std::min(now, o.duration_s);
        t.push_back(now);
        streams.push_back(static_cast<int>(std::ceil(peak * (x < half ? x / half : (o.duration_s - x) / half))));
        tokens.push_back(scaled ? j["autoscalers"][0].value("in_flight_tokens", 0.0) : static_cast<double>(in_flight));
        active.push_back(n_active);
        desired.push_back(scaled ? j["autoscalers"][0].value("desired", int64_t{1}) : int64_t{1});
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });
  auto r = run_load(lo);
  running = false;
  sampler.join();
  if (!r.ok()) return r.err();
  // TTFT in the busiest half of the run (the middle), where the replicas count.
  std::vector<double> middle;
  json started = json::array(), ttft = json::array();
  for (size_t i = 0; i < r->ttft_s.size(); ++i) {
    if (r->started_s[i] >= 0.25 * o.duration_s && r->started_s[i] < 0.75 * o.duration_s) middle.push_back(r->ttft_s[i]);
    started.push_back(std::round(r->started_s[i] * 1000) / 1000);
    ttft.push_back(std::round(r->ttft_s[i] * 1e4) / 10);
  }
  auto actors_text = http_get(server->url + "/v1/actors");
  const json actors = actors_text.ok() ? json::parse(*actors_text, nullptr, false) : json();
  return json{{"mode", mode},
              {"requests_ok", r->ok},
              {"requests_failed", r->failed},
              {"errors", r->errors},
              {"seconds", r->seconds},
              {"ttft_ms", percentiles_ms(r->ttft_s)},
              {"ttft_ms_middle_half", percentiles_ms(middle)},
              {"itl_ms", percentiles_ms(r->itl_s)},
              {"output_tokens_per_s", static_cast<double>(r->output_tokens) / r->seconds},
              {"samples", {{"t_s", t}, {"planned_streams", streams}, {"in_flight_tokens", tokens},
                           {"active_replicas", active}, {"desired_replicas", desired}}},
              {"requests", {{"started_s", started}, {"ttft_ms", ttft}}},
              {"decision_log", actors.is_object() && actors.contains("autoscalers") && !actors["autoscalers"].empty()
                                   ? actors["autoscalers"][0]["log"]
                                   : json::array()}};
}

result<json> run_ramp_bench(serve_bench_options o) {
  if (!o.url.empty()) return make_error("--workload ramp starts its own servers (autoscaled, then one fixed replica): give --model, not --url");
  if (o.model.empty()) {
    TROUPE_TRY(o.model, default_bench_model());
  }
  const int peak = *std::max_element(o.concurrency.begin(), o.concurrency.end());
  // Sized so that the peak needs every replica: about a token per prompt word.
  const int64_t target = o.target_in_flight_tokens > 0
                             ? o.target_in_flight_tokens
                             : std::max<int64_t>(1, int64_t{peak} * (o.prompt_words + o.max_tokens) / std::max(1, o.max_replica));
  const json autoscaling = {{"target_in_flight_tokens", target},
                            {"min_replica", 1},
                            {"max_replica", o.max_replica},
                            {"scale_up_delay", 0},
                            {"scale_down_delay", std::max(2, static_cast<int>(o.duration_s / 10))},
                            {"autoscaling_window", std::max(1, static_cast<int>(o.duration_s / 30))}};
  char dir_template[] = "/tmp/troupe-ramp-XXXXXX";
  if (!mkdtemp(dir_template)) return make_error("cannot make a temporary directory");
  const std::string llm = std::string(dir_template) + "/llm_config.json";
  std::ofstream(llm) << json{{"autoscaling_settings", autoscaling}}.dump(2);
  json out = {{"workload", "ramp"},
              {"model", o.model},
              {"simulated", !o.simulate.empty()},
              {"peak_streams", peak},
              {"duration_s", o.duration_s},
              {"max_tokens", o.max_tokens},
              {"prompt_words", o.prompt_words},
              {"autoscaling_settings", autoscaling}};
  TROUPE_TRY(json scaled, ramp_run(o, llm, "autoscaled"));
  TROUPE_TRY(json fixed, ramp_run(o, "", "fixed single replica"));
  std::remove(llm.c_str());
  rmdir(dir_template);
  const double a = scaled["ttft_ms"]["p99"], f = fixed["ttft_ms"]["p99"];
  out["ttft_p99_ms"] = {{"autoscaled", a}, {"fixed_single_replica", f}, {"fixed_over_autoscaled", a > 0 ? f / a : 0.0}};
  out["runs"] = json::array({std::move(scaled), std::move(fixed)});
  return out;
}

}  // namespace

namespace {

// One level of load against a running server.
result<json> run_level(const serve_bench_options& o, const std::string& url, const std::string& model,
                       const server_process* server, int concurrency) {
  load_options lo = load_of(o, url, model, concurrency);
  std::atomic<int64_t> finished{0};
  lo.finished = &finished;
  // The server's resident memory, sampled while the load runs, and the progress.
  std::atomic<bool> running{true};
  std::vector<double> rss;
  progress shown(fmt::format("bench serve: {} streams", concurrency), o.duration_s, "s");
  std::thread sampler([&] {
    for (int tick = 0; running; ++tick) {
      if (server && tick % 4 == 0) rss.push_back(rss_mib(server->pid));
      shown.set(std::min(o.duration_s, 0.25 * tick), fmt::format("{} requests done", finished.load()));
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  });
  auto r = run_load(lo);
  running = false;
  sampler.join();
  shown.finish(fmt::format("{} requests", finished.load()));
  if (!r.ok()) return r.err();
  // Afterwards every engine should be idle with every KV block free.
  json after = json::object();
  for (int i = 0; i < 50; ++i) {
    auto a = http_get(url + "/v1/actors");
    if (!a.ok()) break;
    auto j = json::parse(*a, nullptr, false);
    int64_t used = 0, running_seqs = 0;
    for (auto& x : j["data"])
      if (x.value("role", "") == "worker") {
        used += x["engine"].value("kv_blocks_used", 0);
        running_seqs += x["engine"].value("running", 0) + x["engine"].value("waiting", 0);
      }
    after = {{"kv_blocks_used", used}, {"sequences", running_seqs}};
    if (used == 0 && running_seqs == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const load_result& l = *r;
  auto pct = [](const std::vector<double>& v) {
    return json{{"mean", 1000 * mean(v)}, {"p50", 1000 * percentile(v, 50)}, {"p90", 1000 * percentile(v, 90)},
                {"p99", 1000 * percentile(v, 99)}};
  };
  json out = {{"url", url},
              {"model", model},
              {"concurrency", concurrency},
              {"duration_s", l.seconds},
              {"max_tokens", o.max_tokens},
              {"requests_ok", l.ok},
              {"requests_failed", l.failed},
              {"errors", l.errors},
              {"requests_per_s", static_cast<double>(l.ok) / l.seconds},
              {"output_tokens_per_s", static_cast<double>(l.output_tokens) / l.seconds},
              {"ttft_ms", pct(l.ttft_s)},
              {"itl_ms", pct(l.itl_s)},
              {"latency_ms", pct(l.latency_s)},
              {"after", after}};
  if (!rss.empty()) {
    // Memory flat: the second half of the run against the first.
    const size_t h = rss.size() / 2;
    const double first = h ? *std::max_element(rss.begin(), rss.begin() + static_cast<ptrdiff_t>(h)) : rss.front();
    const double second = *std::max_element(rss.begin() + static_cast<ptrdiff_t>(h), rss.end());
    out["server_rss_mib"] = {{"first_half_max", first}, {"second_half_max", second}, {"samples", rss}};
  }
  return out;
}

}  // namespace

result<json> run_serve_bench(const serve_bench_options& o) {
  if (o.workload == "multi-turn") return run_multi_turn_bench(o);
  if (o.workload == "ramp") {
    if (!o.llm_config.empty())
      return make_error("--llm-config: not with --workload ramp, which starts its servers with an llm_config of its own");
    return run_ramp_bench(o);
  }
  if (!o.workload.empty()) return make_error("--workload must be multi-turn or ramp (or absent), not " + o.workload);
  std::unique_ptr<server_process> server;
  std::string url = o.url, model = o.served_name;
  if (o.concurrency.empty()) return make_error("--concurrency needs at least one level");
  if (url.empty()) {
    if (o.model.empty()) return make_error("give --url of a running server, or --model to start one");
    std::fprintf(stderr, "bench serve: starting troupe serve --model %s\n", o.model.c_str());
    TROUPE_TRY(server, start_server(o));
    url = server->url;
  }
  if (model.empty()) {
    TROUPE_TRY(model, first_model(url));
  }
  json runs = json::array();
  for (int c : o.concurrency) {
    TROUPE_TRY(json r, run_level(o, url, model, server.get(), c));
    runs.push_back(std::move(r));
  }
  if (runs.size() == 1) return runs[0];
  return json{{"url", url}, {"model", model}, {"max_tokens", o.max_tokens}, {"duration_s", o.duration_s},
              {"runs", std::move(runs)}};
}

}  // namespace troupe::bench
