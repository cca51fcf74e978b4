// `troupe bench serve --workload mixed`: long prompts arriving among short decoding streams,
// the load that disaggregated prefill and decode are for.
//
// One server (started with --model, its --llm-config passed on, or a running one at --url),
// three phases in one run:
//   warm-up:       one long prompt and the streams for a moment (not measured);
//   decode alone:  --concurrency short streams (short prompt, long --max-tokens), each starting
//                  its next request as soon as one ends, for --duration seconds;
//   mixed:         the same streams, while long prompts of held-out code (about
//                  --long-prompt-tokens tokens, --long-max-tokens each) arrive at --long-rate
//                  per second, open loop (an arrival never waits for an earlier one).
// Figures: the short streams' inter-token latency (from the streamed token times) in both
// phases and the ratio of their p99s; the long prompts' time to first token; and the deltas
// over the mixed phase of every kv_transfer_* series the server's /metrics has (a
// disaggregated deployment's KV hand-offs: blocks, bytes, transfer time), absent when it has
// none.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "actors/frontend.hpp"
#include "actors/load_generator.hpp"
#include "bench/bench_util.hpp"
#include "bench/serve_bench_internal.hpp"
#include "bench/spec_bench.hpp"
#include "runtime/text/tokenizer.hpp"

namespace troupe::bench {
namespace {

using json = nlohmann::json;
using namespace detail;
using clock_type = std::chrono::steady_clock;

// Long prompts: runs of consecutive lines of the held-out files, each starting elsewhere, each
// as many lines as fit about n_tokens tokens (counted with the model's tokenizer when --model
// is a directory that has one, else at 3.2 characters a token).
result<std::vector<std::string>> long_prompts(const serve_bench_options& o, size_t count) {
  std::vector<std::string> lines;
  for (const std::string& f : held_out_python_files()) {
    std::ifstream in(o.code_dir + "/" + f);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  if (lines.size() < 400)
    return make_error(fmt::format("--workload mixed: too little held-out code under {} (the models' validation split: "
                                  "getopt.py, py_compile.py, ...); give --code-dir",
                                  o.code_dir));
  std::unique_ptr<tokenizer> tok;
  if (!o.model.empty()) {
    auto t = tokenizer::from_hf_files(o.model + "/tokenizer.json", o.model + "/tokenizer_config.json");
    if (!t.ok()) t = tokenizer::from_hf_files(o.model + "/tokenizer.json", "");
    if (t.ok()) tok = std::make_unique<tokenizer>(std::move(*t));
  }
  auto size_of = [&](const std::string& s) {
    return tok ? tok->encode(s, true, false).size() : static_cast<size_t>(static_cast<double>(s.size()) / 3.2);
  };
  const auto target = static_cast<size_t>(o.long_prompt_tokens);
  std::vector<std::string> out;
  for (size_t k = 0; k < count; ++k) {
    // 97 lines apart (wrapping): no two prompts share a first KV block.
    size_t at = (k * 97) % lines.size();
    std::string p;
    for (size_t n = 0; n < lines.size(); ++n, at = (at + 1) % lines.size()) {
      std::string next = p + lines[at] + "\n";
      if (size_of(next) > target && !p.empty()) break;
      p = std::move(next);
    }
    out.push_back(std::move(p));
  }
  return out;
}

// Every kv_transfer_* series of a Prometheus text body, summed over their labels (histogram
// buckets left out: their _sum and _count are kept).
std::map<std::string, double> transfer_series(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("kv_transfer_", 0) != 0) continue;
    const size_t end = line.find_first_of("{ ");
    const size_t sp = line.rfind(' ');
    if (end == std::string::npos || sp == std::string::npos) continue;
    const std::string name = line.substr(0, end);
    if (name.size() > 7 && name.compare(name.size() - 7, 7, "_bucket") == 0) continue;
    out[name] += std::strtod(line.c_str() + sp + 1, nullptr);
  }
  return out;
}

json short_figures(const load_result& r) {
  return json{{"requests_ok", r.ok},
              {"requests_failed", r.failed},
              {"errors", r.errors},
              {"seconds", r.seconds},
              {"output_tokens_per_s", r.seconds > 0 ? static_cast<double>(r.output_tokens) / r.seconds : 0.0},
              {"itl_ms", percentiles_ms(r.itl_s)},
              {"ttft_ms", percentiles_ms(r.ttft_s)}};
}

}  // namespace

result<json> run_mixed_bench(serve_bench_options o) {
  std::unique_ptr<server_process> server;
  std::string url = o.url, model = o.served_name;
  if (url.empty()) {
    if (o.model.empty()) {
      TROUPE_TRY(o.model, default_bench_model());
    }
    std::fprintf(stderr, "bench serve: mixed, starting troupe serve --model %s%s%s\n", o.model.c_str(),
                 o.llm_config.empty() ? "" : " --llm-config ", o.llm_config.c_str());
    TROUPE_TRY(server, start_server(o));
    url = server->url;
  }
  if (model.empty()) {
    TROUPE_TRY(model, first_model(url));
  }
  const int streams = *std::max_element(o.concurrency.begin(), o.concurrency.end());
  const auto arrivals = static_cast<size_t>(std::floor(o.long_rate * o.duration_s));
  TROUPE_TRY(const std::vector<std::string> prompts, long_prompts(o, arrivals + 1));

  load_options lo;
  lo.url = url;
  lo.model = model;
  lo.concurrency = streams;
  lo.max_tokens = o.max_tokens;
  lo.prompt_words = o.prompt_words;
  lo.chat = o.chat;

  // Warm-up: a long prompt (prompts[0], never measured), then the streams for a moment.
  std::fprintf(stderr, "bench serve: mixed, warm-up\n");
  {
    const timed_completion w = stream_completion(lo, prompts[0], o.long_max_tokens);
    if (!w.error.empty()) return make_error("the warm-up's long prompt failed: " + w.error);
    load_options warm = lo;
    warm.duration_s = std::min(2.0, o.duration_s);
    TROUPE_TRY(load_result r, run_load(warm));
    if (r.ok == 0) return make_error("the warm-up's short streams failed: " + (r.errors.empty() ? std::string("no request ended") : r.errors[0]));
  }

  std::fprintf(stderr, "bench serve: mixed, %d short streams alone for %.0f s\n", streams, o.duration_s);
  lo.duration_s = o.duration_s;
  TROUPE_TRY(const load_result alone, run_load(lo));

  std::fprintf(stderr, "bench serve: mixed, the streams and %zu long prompts of about %d tokens (%.2f/s) for %.0f s\n",
               arrivals, o.long_prompt_tokens, o.long_rate, o.duration_s);
  auto metrics_before = http_get(url + "/metrics");
  std::mutex mu;
  std::vector<double> long_ttft, long_prompt_tokens;
  int64_t long_ok = 0, long_failed = 0;
  std::vector<std::string> long_errors;
  result<load_result> mixed = make_error("not run");
  const auto t0 = clock_type::now();
  std::thread short_streams([&] { mixed = run_load(lo); });
  std::vector<std::thread> long_requests;
  for (size_t k = 0; k < arrivals; ++k) {
    std::this_thread::sleep_until(t0 + std::chrono::duration_cast<clock_type::duration>(
                                           std::chrono::duration<double>((static_cast<double>(k) + 0.5) / o.long_rate)));
    long_requests.emplace_back([&, k] {
      const timed_completion r = stream_completion(lo, prompts[k + 1], o.long_max_tokens);
      std::lock_guard<std::mutex> lock(mu);
      if (!r.error.empty()) {
        ++long_failed;
        if (long_errors.size() < 3) long_errors.push_back(r.error);
        return;
      }
      ++long_ok;
      long_ttft.push_back(r.times.front());
      if (r.prompt_tokens >= 0) long_prompt_tokens.push_back(static_cast<double>(r.prompt_tokens));
    });
  }
  for (auto& t : long_requests) t.join();
  short_streams.join();
  if (!mixed.ok()) return mixed.err();
  auto metrics_after = http_get(url + "/metrics");

  const double alone_p99 = 1000 * percentile(alone.itl_s, 99), mixed_p99 = 1000 * percentile(mixed->itl_s, 99);
  json out = {{"workload", "mixed"},
              {"url", url},
              {"model", model},
              {"llm_config", o.llm_config.empty() ? json(nullptr) : json(o.llm_config)},
              {"duration_s", o.duration_s},
              {"short_streams", streams},
              {"short_prompt_words", o.prompt_words},
              {"short_max_tokens", o.max_tokens},
              {"long_rate_per_s", o.long_rate},
              {"long_prompt_tokens_target", o.long_prompt_tokens},
              {"long_max_tokens", o.long_max_tokens},
              {"decode_alone", short_figures(alone)},
              {"mixed",
               {{"short", short_figures(*mixed)},
                {"long",
                 {{"requests_ok", long_ok},
                  {"requests_failed", long_failed},
                  {"errors", long_errors},
                  {"prompt_tokens_mean", mean(long_prompt_tokens)},
                  {"ttft_ms", percentiles_ms(long_ttft)}}}}},
              {"short_itl_p99_ms", {{"decode_alone", alone_p99}, {"mixed", mixed_p99},
                                    {"mixed_over_alone", alone_p99 > 0 ? mixed_p99 / alone_p99 : 0.0}}},
              {"short_itl_p50_ms", {{"decode_alone", 1000 * percentile(alone.itl_s, 50)},
                                    {"mixed", 1000 * percentile(mixed->itl_s, 50)}}},
              {"long_ttft_ms", {{"p50", 1000 * percentile(long_ttft, 50)}, {"p99", 1000 * percentile(long_ttft, 99)}}}};
  // A disaggregated deployment's KV hand-offs over the mixed phase, read by name.
  if (metrics_before.ok() && metrics_after.ok()) {
    const auto before = transfer_series(*metrics_before), after = transfer_series(*metrics_after);
    if (!after.empty()) {
      json t = json::object();
      for (const auto& [name, v] : after) t[name] = v - (before.count(name) ? before.at(name) : 0.0);
      // A histogram of transfer seconds: its mean over the phase.
      for (const auto& [name, v] : after) {
        const std::string sum = "_seconds_sum";
        if (name.size() <= sum.size() || name.compare(name.size() - sum.size(), sum.size(), sum) != 0) continue;
        const std::string base = name.substr(0, name.size() - 4), count = base + "_count";
        const double n = t.contains(count) ? t[count].get<double>() : 0.0;
        if (n > 0) t[base.substr(0, base.size() - 8) + "_ms_mean"] = 1000 * t[name].get<double>() / n;
      }
      out["kv_transfer"] = t;
    }
  }
  return out;
}

}  // namespace troupe::bench
