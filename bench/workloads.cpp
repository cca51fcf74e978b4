#include "bench/workloads.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.hpp"
#include "bench/engine_bench.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/model_config.hpp"

namespace troupe::bench {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

struct arrival {
  double at_s = 0;
  request r;
  std::string cls;  // requests are reported by class ("short", "long", ...)
};

struct timeline {
  double arrived = 0;
  std::vector<double> token_times;
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;
};

struct run_result {
  std::map<std::string, timeline> by_id;
  std::map<std::string, std::string> cls;
  double seconds = 0;
  int64_t tokens = 0;
  int64_t prefill_steps_with_decode = 0;
  struct step_record {
    double end_s = 0, seconds = 0;
    step_stats stats;
  };
  std::vector<step_record> steps;
};

// Feeds arrivals to a fresh engine in real time and steps it until everything is done.
result<run_result> drive(const engine_config& cfg, executor& ex, const std::vector<arrival>& arrivals) {
  TROUPE_TRY(std::unique_ptr<engine> eng, engine::create(cfg, model_info_of(ex, nullptr), nullptr));
  run_result rr;
  const auto t0 = clock_type::now();
  size_t next = 0;
  while (next < arrivals.size() || eng->has_work()) {
    const double now = seconds_since(t0);
    while (next < arrivals.size() && arrivals[next].at_s <= now) {
      const arrival& a = arrivals[next++];
      TROUPE_CHECK(eng->add_request(a.r));
      rr.by_id[a.r.id].arrived = seconds_since(t0);
      rr.by_id[a.r.id].prompt_tokens = static_cast<int32_t>(a.r.prompt.size());
      rr.cls[a.r.id] = a.cls;
    }
    if (!eng->has_work()) {
      std::this_thread::sleep_for(std::chrono::duration<double>(arrivals[next].at_s - now));
      continue;
    }
    const double before = seconds_since(t0);
    TROUPE_TRY(step_output s, eng->step(ex));
    const double t = seconds_since(t0);
    rr.steps.push_back({t, t - before, s.stats});
    for (const auto& o : s.outputs) {
      timeline& tl = rr.by_id[o.id];
      for (size_t i = 0; i < o.tokens.size(); ++i) tl.token_times.push_back(t);
      rr.tokens += static_cast<int64_t>(o.tokens.size());
      if (o.finished) tl.cached_tokens = o.use.cached_tokens;
    }
  }
  rr.seconds = seconds_since(t0);
  return rr;
}

json summarize(const run_result& rr, const std::string& cls) {
  std::vector<double> ttft, itl;
  int64_t prompt = 0, cached = 0, tokens = 0;
  for (const auto& [id, tl] : rr.by_id) {
    if (!cls.empty() && rr.cls.at(id) != cls) continue;
    if (tl.token_times.empty()) continue;
    ttft.push_back(tl.token_times.front() - tl.arrived);
    for (size_t i = 1; i < tl.token_times.size(); ++i) itl.push_back(tl.token_times[i] - tl.token_times[i - 1]);
    prompt += tl.prompt_tokens;
    cached += tl.cached_tokens;
    tokens += static_cast<int64_t>(tl.token_times.size());
  }
  return {{"requests", ttft.size()},
          {"output_tokens", tokens},
          {"ttft_ms", {{"mean", 1000 * mean(ttft)}, {"p50", 1000 * percentile(ttft, 50)}, {"p99", 1000 * percentile(ttft, 99)}}},
          {"itl_ms", {{"mean", 1000 * mean(itl)}, {"p50", 1000 * percentile(itl, 50)}, {"p99", 1000 * percentile(itl, 99)}}},
          {"cache_hit_rate", prompt ? static_cast<double>(cached) / static_cast<double>(prompt) : 0.0}};
}

// The slowest engine steps and what they held: where latency percentiles come from.
json slowest_steps(const run_result& rr, size_t n) {
  std::vector<run_result::step_record> v = rr.steps;
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.seconds > b.seconds; });
  json out = json::array();
  for (size_t i = 0; i < std::min(n, v.size()); ++i)
    out.push_back({{"at_s", v[i].end_s},
                   {"ms", 1000 * v[i].seconds},
                   {"prefill_tokens", v[i].stats.n_prefill_tokens},
                   {"decode_seqs", v[i].stats.n_decode_seqs},
                   {"hybrid_chunk_cap", v[i].stats.hybrid_chunk_cap}});
  return out;
}

json overall(const run_result& rr, const std::string& cls = "") {
  json j = summarize(rr, cls);
  j["seconds"] = rr.seconds;
  j["output_tokens_per_s"] = static_cast<double>(rr.tokens) / rr.seconds;
  return j;
}

std::vector<token_id> random_tokens(std::mt19937& rng, int n, int64_t vocab) {
  std::vector<token_id> t(static_cast<size_t>(n));
  for (auto& x : t) x = std::uniform_int_distribution<token_id>(0, static_cast<token_id>(vocab - 1))(rng);
  return t;
}

request make_request(std::string id, std::vector<token_id> prompt, int max_tokens) {
  request r;
  r.id = std::move(id);
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  return r;
}

void say(const std::string& s) {
  std::fprintf(stderr, "bench engine: %s\n", s.c_str());
  std::fflush(stderr);
}

// Many requests sharing a long system prompt, arriving one after another.
result<json> shared_prefix(executor& ex, const model_config& c) {
  const int n = 16, system_tokens = 512, suffix_tokens = 32, max_tokens = 16;
  const double interval = 0.5;
  std::mt19937 rng(11);
  const auto system = random_tokens(rng, system_tokens, c.n_vocab);
  std::vector<arrival> arrivals;
  for (int i = 0; i < n; ++i) {
    auto p = system;
    auto s = random_tokens(rng, suffix_tokens, c.n_vocab);
    p.insert(p.end(), s.begin(), s.end());
    arrivals.push_back({interval * i, make_request("s" + std::to_string(i), std::move(p), max_tokens), "all"});
  }
  json out = {{"requests", n}, {"system_prompt_tokens", system_tokens}, {"suffix_tokens", suffix_tokens},
              {"max_tokens", max_tokens}, {"arrival_interval_s", interval}};
  double ttft[2] = {0, 0};
  for (bool cache : {false, true}) {
    say(fmt::format("shared-prefix, prefix cache {}", cache ? "on" : "off"));
    engine_config cfg;
    cfg.prefix_cache = cache;
    cfg.model_identity = "bench";
    TROUPE_TRY(run_result rr, drive(cfg, ex, arrivals));
    json j = overall(rr);
    ttft[cache] = j["ttft_ms"]["mean"].get<double>();
    out[cache ? "cache_on" : "cache_off"] = j;
  }
  out["mean_ttft_speedup_with_cache"] = ttft[0] / ttft[1];
  return out;
}

// Short requests decoding while long prompts arrive.
result<json> mixed(executor& ex, const model_config& c) {
  const int n_short = 8, short_prompt = 32, short_tokens = 64, n_long = 3, long_prompt = 1024;
  std::mt19937 rng(12);
  std::vector<arrival> shorts, with_long;
  for (int i = 0; i < n_short; ++i)
    shorts.push_back({0.0, make_request("short" + std::to_string(i), random_tokens(rng, short_prompt, c.n_vocab), short_tokens), "short"});
  with_long = shorts;
  for (int i = 0; i < n_long; ++i)
    with_long.push_back({1.0 + 2.0 * i, make_request("long" + std::to_string(i), random_tokens(rng, long_prompt, c.n_vocab), 8), "long"});
  json out = {{"short_requests", n_short}, {"short_prompt_tokens", short_prompt}, {"short_max_tokens", short_tokens},
              {"long_requests", n_long}, {"long_prompt_tokens", long_prompt}};
  engine_config base;
  base.model_identity = "bench";
  base.prefix_cache = false;
  say("mixed: short requests alone");
  TROUPE_TRY(run_result alone, drive(base, ex, shorts));
  out["short_only"] = overall(alone, "short");
  out["short_only"]["slowest_steps"] = slowest_steps(alone, 5);
  const double p99_alone = out["short_only"]["itl_ms"]["p99"].get<double>();
  for (prefill_mode m : {prefill_mode::hybrid, prefill_mode::chunked}) {
    const std::string name = m == prefill_mode::hybrid ? "hybrid" : "chunked";
    say("mixed: long prompts arriving, prefill_mode " + name);
    engine_config cfg = base;
    cfg.prefill = m;
    TROUPE_TRY(run_result rr, drive(cfg, ex, with_long));
    json j = {{"short", overall(rr, "short")}, {"long", summarize(rr, "long")}, {"slowest_steps", slowest_steps(rr, 8)}};
    j["short_p99_itl_vs_short_only"] = j["short"]["itl_ms"]["p99"].get<double>() / p99_alone;
    out[name] = j;
  }
  return out;
}

}  // namespace

result<json> run_workload(const std::string& name, std::shared_ptr<const checkpoint> ck, int threads,
                          const engine_bench_options&) {
  engine_spec spec;
  spec.threads = threads;
  spec.kv_block_size = 16;
  spec.kv_cache_bytes = int64_t{2} << 30;
  executor_factory factory;
  TROUPE_TRY(std::shared_ptr<executor> ex, factory.make_executor(ck, "random", spec));
  json out = {{"name", name}, {"executor", ex->describe()}};
  if (name == "shared-prefix") {
    TROUPE_TRY(out["results"], shared_prefix(*ex, ck->config()));
  } else if (name == "mixed") {
    TROUPE_TRY(out["results"], mixed(*ex, ck->config()));
  } else {
    return make_error("--workload must be shared-prefix or mixed, not " + name);
  }
  return out;
}

}  // namespace troupe::bench
