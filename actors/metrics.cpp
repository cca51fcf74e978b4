#include "actors/metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <fmt/format.h>

#include "actors/protocol.hpp"

namespace troupe {
namespace {

using prometheus::Histogram;

Histogram::BucketBoundaries token_buckets() {
  return {1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};
}
Histogram::BucketBoundaries tps_buckets() { return {0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}; }
Histogram::BucketBoundaries ttft_buckets() { return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}; }
Histogram::BucketBoundaries tpot_buckets() { return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}; }
Histogram::BucketBoundaries e2e_buckets() { return {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}; }

// Process CPU time in seconds.
double cpu_seconds() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double rss_bytes() {
  std::ifstream in("/proc/self/statm");
  long pages = 0, resident = 0;
  in >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
}

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

// A histogram as it travelled (histogram_data) as one labelled series.
prometheus::ClientMetric histogram_metric(const histogram_data& h, std::vector<prometheus::ClientMetric::Label> labels) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.histogram.sample_count = h.count;
  m.histogram.sample_sum = h.sum;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.counts.size(); ++i) {
    cumulative += h.counts[i];
    prometheus::ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound = i < h.bounds.size() ? h.bounds[i] : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  return m;
}

prometheus::ClientMetric gauge(double v, std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = v;
  return m;
}

}  // namespace

struct metrics::impl {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& input_tokens =
      prometheus::BuildCounter().Name("input_tokens_total").Help("Prompt tokens of finished requests").Register(*registry);
  prometheus::Family<prometheus::Counter>& output_tokens =
      prometheus::BuildCounter().Name("output_tokens_total").Help("Generated tokens of finished requests").Register(*registry);
  prometheus::Family<prometheus::Histogram>& input_per_request =
      prometheus::BuildHistogram().Name("input_tokens_per_request").Help("Prompt tokens per request").Register(*registry);
  prometheus::Family<prometheus::Histogram>& output_per_request =
      prometheus::BuildHistogram().Name("output_tokens_per_request").Help("Generated tokens per request").Register(*registry);
  prometheus::Family<prometheus::Histogram>& tps =
      prometheus::BuildHistogram().Name("tps_per_request").Help("Generated tokens per second, per request").Register(*registry);
  // Latency, as vLLM names it, so that its dashboards' queries carry over.
  prometheus::Family<prometheus::Histogram>& ttft = prometheus::BuildHistogram()
                                                         .Name("time_to_first_token_seconds")
                                                         .Help("Seconds from a request's arrival to its first output token")
                                                         .Register(*registry);
  prometheus::Family<prometheus::Histogram>& tpot = prometheus::BuildHistogram()
                                                         .Name("time_per_output_token_seconds")
                                                         .Help("Mean seconds between a request's output tokens after the first")
                                                         .Register(*registry);
  prometheus::Family<prometheus::Histogram>& e2e = prometheus::BuildHistogram()
                                                        .Name("e2e_request_latency_seconds")
                                                        .Help("Seconds from a request's arrival to its last token")
                                                        .Register(*registry);
  prometheus::Family<prometheus::Counter>& requests = prometheus::BuildCounter()
                                                          .Name("requests_total")
                                                          .Help("Finished generation requests by outcome (ok or error)")
                                                          .Register(*registry);
  prometheus::Family<prometheus::Gauge>& concurrent =
      prometheus::BuildGauge().Name("concurrent_requests").Help("Requests in flight").Register(*registry);
  std::mutex mu;  // guards the CPU-usage sample and the throughput window
  double last_cpu = cpu_seconds();
  std::chrono::steady_clock::time_point last_wall = std::chrono::steady_clock::now();
  // Token throughput over the last minute: per model, per second of the clock, (in, out).
  static constexpr int64_t window_s = 60;
  std::map<std::string, std::map<int64_t, std::pair<double, double>>> window;

  static int64_t now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  void prune(int64_t now) {
    for (auto& [model, secs] : window)
      while (!secs.empty() && secs.begin()->first <= now - window_s) secs.erase(secs.begin());
  }
};

metrics::metrics() : impl_(std::make_unique<impl>()) {}
metrics::~metrics() = default;

void metrics::request_started(const std::string& model) { impl_->concurrent.Add({{"model", model}}).Increment(); }

void metrics::request_finished(const std::string& model, int64_t prompt, int64_t completion, double seconds, bool ok) {
  impl& m = *impl_;
  m.concurrent.Add({{"model", model}}).Decrement();
  m.requests.Add({{"model", model}, {"outcome", ok ? "ok" : "error"}}).Increment();
  if (!ok) return;
  m.e2e.Add({{"model", model}}, e2e_buckets()).Observe(seconds);
  {
    std::lock_guard<std::mutex> lock(m.mu);
    auto& slot = m.window[model][impl::now_s()];
    slot.first += static_cast<double>(prompt);
    slot.second += static_cast<double>(completion);
  }
  m.input_tokens.Add({{"model", model}}).Increment(static_cast<double>(prompt));
  m.output_tokens.Add({{"model", model}}).Increment(static_cast<double>(completion));
  m.input_per_request.Add({{"model", model}}, token_buckets()).Observe(static_cast<double>(prompt));
  m.output_per_request.Add({{"model", model}}, token_buckets()).Observe(static_cast<double>(completion));
  if (seconds > 0 && completion > 0)
    m.tps.Add({{"model", model}}, tps_buckets()).Observe(static_cast<double>(completion) / seconds);
}

void metrics::request_latency(const std::string& model, double ttft_s, double tpot_s) {
  impl_->ttft.Add({{"model", model}}, ttft_buckets()).Observe(ttft_s);
  if (tpot_s >= 0) impl_->tpot.Add({{"model", model}}, tpot_buckets()).Observe(tpot_s);
}

std::string metrics::render(const router_stats& r, const std::vector<actor_stats>& actors) {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> fams = impl_->registry->Collect();

  // Process figures.
  double cpu_usage = 0;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    const double cpu = cpu_seconds();
    const auto now = std::chrono::steady_clock::now();
    const double wall = std::chrono::duration<double>(now - impl_->last_wall).count();
    const long cores = std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
    if (wall > 0) cpu_usage = (cpu - impl_->last_cpu) / wall / static_cast<double>(cores);
    impl_->last_cpu = cpu;
    impl_->last_wall = now;
  }
  // input_tokens / output_tokens: "total token throughput across the deployment", tokens
  // per second over the last minute (the _total counters hold the running sums).
  auto tin = family("input_tokens", "Prompt tokens per second over the last minute", MetricType::Gauge);
  auto tout = family("output_tokens", "Generated tokens per second over the last minute", MetricType::Gauge);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->prune(impl::now_s());
    for (auto& [model, secs] : impl_->window) {
      double in = 0, out = 0;
      for (auto& [t, v] : secs) {
        in += v.first;
        out += v.second;
      }
      tin.metric.push_back(gauge(in / impl::window_s, {{"model", model}}));
      tout.metric.push_back(gauge(out / impl::window_s, {{"model", model}}));
    }
  }
  fams.push_back(std::move(tin));
  fams.push_back(std::move(tout));
  auto f = family("cpu_usage", "Fraction of the machine's CPU time this process used since the last scrape", MetricType::Gauge);
  f.metric.push_back(gauge(cpu_usage));
  fams.push_back(std::move(f));
  f = family("memory_usage", "Resident memory of this process, bytes", MetricType::Gauge);
  f.metric.push_back(gauge(rss_bytes()));
  fams.push_back(std::move(f));
  // No GPU serves in this build: the GPU figures are zero, not absent, so dashboards keep
  // their series.
  f = family("gpu_usage", "Fraction of GPU compute in use (0: this deployment runs on the CPU)", MetricType::Gauge);
  f.metric.push_back(gauge(0));
  fams.push_back(std::move(f));
  f = family("gpu_memory_usage", "GPU memory in use, bytes (0: this deployment runs on the CPU)", MetricType::Gauge);
  f.metric.push_back(gauge(0));
  fams.push_back(std::move(f));
  // Speculative decoding, per decoding type over the workers that draft (since they started).
  struct speculation {
    int64_t drafted = 0, accepted = 0;
    histogram_data length;
  };
  std::map<std::string, speculation> spec;
  for (const actor_stats& a : actors) {
    if (a.decoding_type.empty()) continue;
    speculation& x = spec[a.decoding_type];
    x.drafted += a.draft_tokens;
    x.accepted += a.accepted_draft_tokens;
    const histogram_data& h = a.accepted_length;
    if (x.length.counts.empty()) x.length = h;
    else if (x.length.bounds == h.bounds) {
      for (size_t i = 0; i < h.counts.size(); ++i) x.length.counts[i] += h.counts[i];
      x.length.sum += h.sum;
      x.length.count += h.count;
    }
  }
  f = family("speculation_rate",
             "The percentage of draft tokens accepted by the main model (0 while speculative decoding is off)",
             MetricType::Gauge);
  auto drafted = family("speculative_draft_tokens_total", "Draft tokens the main model verified", MetricType::Counter);
  auto accepted = family("speculative_accepted_tokens_total", "Draft tokens the main model accepted", MetricType::Counter);
  auto length = family("speculative_accepted_length",
                       "Tokens one verification emitted: the draft tokens accepted, plus the main model's own",
                       MetricType::Histogram);
  if (spec.empty()) f.metric.push_back(gauge(0));
  for (const auto& [type, x] : spec) {
    const std::vector<prometheus::ClientMetric::Label> l = {{"decoding_type", type}};
    f.metric.push_back(gauge(x.drafted > 0 ? 100.0 * static_cast<double>(x.accepted) / static_cast<double>(x.drafted) : 0, l));
    for (auto [fam, v] : {std::pair{&drafted, x.drafted}, std::pair{&accepted, x.accepted}}) {
      prometheus::ClientMetric c;
      c.label = l;
      c.counter.value = static_cast<double>(v);
      fam->metric.push_back(c);
    }
    length.metric.push_back(histogram_metric(x.length, l));
  }
  for (auto* fam : {&f, &drafted, &accepted, &length}) fams.push_back(std::move(*fam));

  // Disaggregated serving (actors/kv_transfer.hpp), per worker: the KV each decode worker
  // received, the blocks it did not need sent (its prefix cache held them), the transfer time,
  // failed transfers; every worker's KV blocks in use. In-flight tokens per role follow below.
  {
    auto blocks = family("kv_transfer_blocks_total", "KV blocks a decode worker received from prefill workers", MetricType::Counter);
    auto bytes = family("kv_transfer_bytes_total", "KV bytes a decode worker received from prefill workers", MetricType::Counter);
    auto skipped = family("kv_transfer_skipped_blocks_total",
                          "KV blocks not sent because the decode worker's prefix cache held them", MetricType::Counter);
    auto failures = family("kv_transfer_failures_total", "KV transfers that failed or were aborted, on this worker's side",
                           MetricType::Counter);
    auto secs = family("kv_transfer_seconds", "Time from a hand-off's arrival at the decode worker to its last block written",
                       MetricType::Histogram);
    auto used = family("worker_kv_blocks_used", "KV blocks in use on the worker (held by requests or its prefix cache)",
                       MetricType::Gauge);
    auto total = family("worker_kv_blocks", "KV blocks of the worker's cache", MetricType::Gauge);
    for (const actor_stats& a : actors) {
      if (a.role != "worker") continue;
      const std::vector<prometheus::ClientMetric::Label> l = {{"worker", a.actor}, {"role", a.worker_role}};
      used.metric.push_back(gauge(a.kv_blocks_used, l));
      total.metric.push_back(gauge(a.kv_blocks_total, l));
      if (a.worker_role == "aggregated" || a.worker_role.empty()) continue;
      for (auto [fam, v] : {std::pair{&blocks, a.kv_transfer_blocks}, {&bytes, a.kv_transfer_bytes},
                            {&skipped, a.kv_transfer_skipped_blocks}, {&failures, a.kv_transfer_failures}}) {
        prometheus::ClientMetric c;
        c.label = l;
        c.counter.value = static_cast<double>(v);
        fam->metric.push_back(c);
      }
      if (!a.kv_transfer_seconds.counts.empty()) secs.metric.push_back(histogram_metric(a.kv_transfer_seconds, l));
    }
    for (auto* fam : {&blocks, &bytes, &skipped, &failures, &secs, &used, &total}) fams.push_back(std::move(*fam));
  }

  // Router figures.
  // Per-worker columns of router_stats; one shorter than r.workers (a partly filled report)
  // reads as 0 rather than past its end.
  const auto at = [](const auto& column, size_t i) { return i < column.size() ? static_cast<double>(column[i]) : 0.0; };
  // Replica lifecycle: starting (asked of a node agent by the autoscaler, not registered yet),
  // active, draining, stopped (drained, then stopped) and lost.
  static const char* const statuses[] = {"starting", "active", "draining", "stopped", "lost"};
  std::map<std::string, std::map<std::string, int64_t>> replicas;  // model -> status -> count
  for (size_t i = 0; i < r.workers.size() && i < r.models.size(); ++i)
    ++replicas[r.models[i]][i < r.status.size() ? r.status[i] : at(r.alive, i) != 0 ? "active" : "lost"];
  for (const autoscaler_report& a : r.autoscalers) replicas[a.model]["starting"] += a.starting_workers;
  f = family("replica_count_by_status", "Workers by lifecycle status", MetricType::Gauge);
  for (auto& [model, n] : replicas)
    for (const char* status : statuses)
      f.metric.push_back(gauge(static_cast<double>(n[status]), {{"model", model}, {"status", status}}));
  fams.push_back(std::move(f));
  // In-flight tokens per model and worker role (aggregated, prefill, decode), as the router
  // counts them: what token-based autoscaling of each replica group reads.
  {
    std::map<std::pair<std::string, std::string>, double> by_role;
    for (size_t i = 0; i < r.workers.size() && i < r.models.size(); ++i)
      if (at(r.alive, i) != 0) by_role[{r.models[i], i < r.roles.size() ? r.roles[i] : "aggregated"}] += at(r.in_flight_tokens, i);
    f = family("in_flight_tokens_by_role", "In-flight tokens of the live workers of each role, as the router counts them",
               MetricType::Gauge);
    for (auto& [k, v] : by_role) f.metric.push_back(gauge(v, {{"model", k.first}, {"role", k.second}}));
    fams.push_back(std::move(f));
  }
  // Token-based autoscaling, per model and replica group (actors/autoscaler.hpp).
  auto as_load = family("autoscaler_in_flight_tokens", "In-flight tokens (prompt + max_tokens of admitted, unfinished requests), the last sample", MetricType::Gauge);
  auto as_mean = family("autoscaler_in_flight_tokens_windowed", "In-flight tokens averaged over autoscaling_window", MetricType::Gauge);
  auto as_target = family("autoscaler_target_in_flight_tokens", "target_in_flight_tokens: in-flight tokens one replica is sized for", MetricType::Gauge);
  auto as_desired = family("autoscaler_desired_replicas", "Replicas the autoscaler wants (the rule, after its delays)", MetricType::Gauge);
  auto as_current = family("autoscaler_current_replicas", "Replicas starting or active", MetricType::Gauge);
  auto as_events = family("autoscaler_scale_events_total", "Scale events by direction (up or down)", MetricType::Counter);
  for (const autoscaler_report& a : r.autoscalers) {
    const std::vector<prometheus::ClientMetric::Label> l = {{"model", a.model}, {"group", a.group}};
    as_load.metric.push_back(gauge(a.in_flight_tokens, l));
    as_mean.metric.push_back(gauge(a.window_mean, l));
    as_target.metric.push_back(gauge(static_cast<double>(a.settings.target_in_flight_tokens), l));
    as_desired.metric.push_back(gauge(static_cast<double>(a.desired), l));
    as_current.metric.push_back(gauge(static_cast<double>(a.current), l));
    for (auto [direction, n] : {std::pair{"up", a.scale_ups}, {"down", a.scale_downs}}) {
      prometheus::ClientMetric c;
      c.label = l;
      c.label.push_back({"direction", direction});
      c.counter.value = static_cast<double>(n);
      as_events.metric.push_back(std::move(c));
    }
  }
  for (auto* fam : {&as_load, &as_mean, &as_target, &as_desired, &as_current, &as_events}) fams.push_back(std::move(*fam));
  // The reference's routing metrics, per model, over the router's window of finished
  // requests (router_model_stats::window_s).
  const auto ratio = [](int64_t a, int64_t b) { return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0; };
  const std::string window = r.model_stats.empty() ? "" : fmt::format(" (finished requests of the last {:g} s)", r.model_stats[0].window_s);
  auto hit = family("kv_cache_hit_rate", "Prompt tokens the engines served from their prefix caches, over all prompt tokens" + window, MetricType::Gauge);
  auto skew = family("kv_cache_hit_rate_skew", "The router's estimated hit rate minus the actual one" + window, MetricType::Gauge);
  auto best = family("kv_cache_best_prefix_hit_rate",
                     "Hit rate had each request gone to the worker whose index entry held most of its prefix" + window,
                     MetricType::Gauge);
  auto eff = family("kv_cache_hit_rate_efficiency", "Actual hit rate over the best prefix hit rate" + window, MetricType::Gauge);
  auto depth = family("router_queue_depth", "Requests waiting in the router's queue (every worker saturated)", MetricType::Gauge);
  auto rejected = family("router_queue_rejected_total", "Requests answered 429: the router's queue was full", MetricType::Counter);
  for (const router_model_stats& m : r.model_stats) {
    const std::vector<prometheus::ClientMetric::Label> l = {{"model", m.model}};
    const double actual = ratio(m.cached_tokens, m.prompt_tokens), best_rate = ratio(m.best_prefix_tokens, m.prompt_tokens);
    hit.metric.push_back(gauge(actual, l));
    skew.metric.push_back(gauge(ratio(m.estimated_cached_tokens, m.prompt_tokens) - actual, l));
    best.metric.push_back(gauge(best_rate, l));
    eff.metric.push_back(gauge(best_rate > 0 ? actual / best_rate : 1.0, l));
    depth.metric.push_back(gauge(static_cast<double>(m.queued), l));
    prometheus::ClientMetric c;
    c.label = l;
    c.counter.value = static_cast<double>(m.rejected);
    rejected.metric.push_back(c);
  }
  for (auto* fam : {&hit, &skew, &best, &eff, &depth, &rejected}) fams.push_back(std::move(*fam));
  const auto histogram = [](std::string name, std::string help, const histogram_data& h) {
    auto fam = family(std::move(name), std::move(help), MetricType::Histogram);
    fam.metric.push_back(histogram_metric(h, {}));
    return fam;
  };
  if (!r.decision_seconds.counts.empty())
    fams.push_back(histogram("router_decision_seconds", "Time the router took to pick a worker (hashing, index walk, policy)",
                             r.decision_seconds));
  if (!r.queue_wait_seconds.counts.empty())
    fams.push_back(histogram("router_queue_wait_seconds", "Time requests waited in the router's queue", r.queue_wait_seconds));
  f = family("router_kv_events_applied_total", "KV events the router applied to its index", MetricType::Counter);
  {
    prometheus::ClientMetric c;
    c.counter.value = static_cast<double>(r.kv_events_applied);
    f.metric.push_back(c);
  }
  fams.push_back(std::move(f));
  f = family("router_kv_index_bytes", "Memory of the router's KV index (entries and nodes, as allocated)", MetricType::Gauge);
  f.metric.push_back(gauge(static_cast<double>(r.kv_index_bytes)));
  fams.push_back(std::move(f));
  auto per_worker = [&](std::string name, std::string help, MetricType type, auto value) {
    auto fam = family(std::move(name), std::move(help), type);
    for (size_t i = 0; i < r.workers.size(); ++i) {
      prometheus::ClientMetric c;
      c.label = {{"model", i < r.models.size() ? r.models[i] : std::string()}, {"worker", r.workers[i]}};
      const double v = static_cast<double>(value(i));
      if (type == MetricType::Counter) c.counter.value = v;
      else c.gauge.value = v;
      fam.metric.push_back(std::move(c));
    }
    fams.push_back(std::move(fam));
  };
  per_worker("router_kv_indexed_blocks", "KV blocks the router's index says the worker holds", MetricType::Gauge,
             [&](size_t i) { return at(r.kv_cached_blocks, i); });
  per_worker("router_kv_events_total", "KV events received from the worker", MetricType::Counter, [&](size_t i) { return at(r.kv_events, i); });
  per_worker("router_kv_event_gaps_total", "Gaps in the worker's KV event sequence", MetricType::Counter,
             [&](size_t i) { return at(r.kv_event_gaps, i); });
  per_worker("router_kv_dumps_total", "Full dumps of the worker's cached blocks the router applied", MetricType::Counter,
             [&](size_t i) { return at(r.kv_dumps, i); });
  per_worker("router_kv_replays_total", "Event replays from the worker's publisher the router applied (after a restart)",
             MetricType::Counter, [&](size_t i) { return at(r.kv_replays, i); });
  per_worker("router_worker_active_blocks", "Prompt KV blocks of the requests in flight on the worker, as the router counts them",
             MetricType::Gauge, [&](size_t i) { return at(r.active_blocks, i); });
  per_worker("router_worker_routed_total", "Requests the router sent to the worker", MetricType::Counter,
             [&](size_t i) { return at(r.routed_requests, i); });

  // Actors.
  auto mailbox = family("actor_mailbox_size", "Messages waiting in the actor's mailbox", MetricType::Gauge);
  auto handled = family("actor_messages_total", "Messages the actor has handled", MetricType::Counter);
  auto seconds = family("actor_message_seconds", "Time spent handling messages", MetricType::Summary);
  for (const actor_stats& a : actors) {
    std::vector<prometheus::ClientMetric::Label> l = {{"node", a.node}, {"actor", a.actor}, {"role", a.role}};
    mailbox.metric.push_back(gauge(static_cast<double>(a.mailbox_size), l));
    prometheus::ClientMetric c;
    c.label = l;
    c.counter.value = static_cast<double>(a.messages_total);
    handled.metric.push_back(c);
    prometheus::ClientMetric s;
    s.label = l;
    s.summary.sample_count = static_cast<uint64_t>(a.messages_total);
    s.summary.sample_sum = a.handling_seconds;
    seconds.metric.push_back(s);
  }
  fams.push_back(std::move(mailbox));
  fams.push_back(std::move(handled));
  fams.push_back(std::move(seconds));
  return prometheus::TextSerializer().Serialize(fams);
}

}  // namespace troupe
