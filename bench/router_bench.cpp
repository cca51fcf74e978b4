#include "bench/router_bench.hpp"

#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "actors/routing_policy.hpp"
#include "bench/bench_util.hpp"
#include "runtime/block_hash.hpp"
#include "runtime/kv_index.hpp"

namespace troupe::bench {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;
constexpr int32_t kBlock = 16;
constexpr uint64_t kSalt = 0x5eed;

// Bytes malloc has handed out and not had back (what the index's containers hold).
size_t heap_bytes() { return mallinfo2().uordblks; }

// CPU time of this thread: unlike the wall clock, not inflated when a shared machine runs
// other processes in the middle of a decision.
double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void progress(const std::string& s) {
  std::fprintf(stderr, "bench router: %s\n", s.c_str());
  std::fflush(stderr);
}

// A conversation: one of a few system prompts, then its own turns.
std::vector<int32_t> conversation(std::mt19937_64& rng, int n_system, int system_tokens, int total_tokens, uint64_t id) {
  std::vector<int32_t> t(static_cast<size_t>(total_tokens));
  const int sys = static_cast<int>(rng() % static_cast<uint64_t>(n_system));
  for (int i = 0; i < total_tokens; ++i)
    t[static_cast<size_t>(i)] = i < system_tokens ? (sys * 1009 + i * 7) % 32000 : static_cast<int32_t>((id * 2654435761u + static_cast<uint64_t>(i) * 40503u) % 32000);
  return t;
}

std::vector<uint64_t> hashes_of(std::span<const int32_t> tokens) {
  std::vector<uint64_t> out;
  for (block_hash h : hash_full_blocks(tokens, kBlock, kSalt)) out.push_back(h.value);
  return out;
}

json decision_figures(const router_bench_options& o, int n_workers) {
  std::mt19937_64 rng(static_cast<uint64_t>(n_workers));
  kv_index index(kv_index::options{static_cast<size_t>(o.indexed_blocks) * 2, false});
  kv_index predicted(kv_index::options{static_cast<size_t>(o.indexed_blocks), true});
  std::vector<kv_index::worker_slot> slots;
  for (int w = 0; w < n_workers; ++w) {
    slots.push_back(index.add_worker());
    predicted.add_worker();
  }
  // Fill: conversations of prompt_tokens, each on one worker, until the index holds
  // indexed_blocks entries. Shared system prompts make nodes with many holders.
  std::vector<std::vector<int32_t>> convs;
  const int n_system = 32, system_tokens = 512;
  const size_t heap0 = heap_bytes();
  uint64_t id = 0;
  while (static_cast<int64_t>(index.n_entries()) < o.indexed_blocks) {
    auto c = conversation(rng, n_system, system_tokens, o.prompt_tokens, id++);
    index.store(slots[id % slots.size()], hashes_of(c));
    if (convs.size() < 4096) convs.push_back(std::move(c));
  }
  const size_t heap1 = heap_bytes();
  // Some requests in flight, as the router predicts them.
  for (int w = 0; w < n_workers; ++w) predicted.store(static_cast<kv_index::worker_slot>(w), hashes_of(convs[static_cast<size_t>(w) % convs.size()]));

  kv_policy_options ko;
  ko.seed = 1;
  auto policy = make_kv_policy(ko);
  std::vector<uint32_t> overlap, pov;
  std::vector<worker_view> views(static_cast<size_t>(n_workers));
  std::vector<std::string> names;
  for (int w = 0; w < n_workers; ++w) names.push_back(fmt::format("node/w{}", w));
  std::vector<double> seconds, cpu;
  seconds.reserve(static_cast<size_t>(o.decisions));
  cpu.reserve(static_cast<size_t>(o.decisions));
  int64_t hits = 0;
  for (int i = 0; i < o.decisions; ++i) {
    // Half continue a known conversation (a new turn appended), half start a new one.
    std::vector<int32_t> prompt = i % 2 == 0 ? convs[rng() % convs.size()] : conversation(rng, n_system, system_tokens, o.prompt_tokens, id++);
    for (int k = 0; k < 64; ++k) prompt.push_back(static_cast<int32_t>(rng() % 32000));
    const double c0 = thread_cpu_s();
    const auto t0 = clock_type::now();
    const std::vector<uint64_t> hs = hashes_of(prompt);  // the one hash pass
    index.overlaps(hs, overlap);
    predicted.overlaps(hs, pov);
    for (int w = 0; w < n_workers; ++w) {
      worker_view& v = views[static_cast<size_t>(w)];
      v.name = names[static_cast<size_t>(w)];
      v.kv_blocks_total = 100000;
      v.overlap_blocks = static_cast<int32_t>(std::max(overlap[static_cast<size_t>(w)], pov[static_cast<size_t>(w)]));
      v.active_blocks = (w * 37) % 500;
      v.queued_prefill_blocks = (w * 11) % 50;
    }
    route_request_view r{prompt, 64, static_cast<int32_t>((prompt.size() + kBlock - 1) / kBlock)};
    const size_t pick = policy->choose(r, views);
    seconds.push_back(std::chrono::duration<double>(clock_type::now() - t0).count());
    cpu.push_back(thread_cpu_s() - c0);
    hits += views[pick].overlap_blocks > 0;
  }
  return {{"workers", n_workers},
          {"indexed_blocks", index.n_entries()},
          {"index_nodes", index.n_nodes()},
          {"prompt_tokens", o.prompt_tokens + 64},
          {"decision_us", {{"mean", 1e6 * mean(seconds)}, {"p50", 1e6 * percentile(seconds, 50)}, {"p99", 1e6 * percentile(seconds, 99)}}},
          {"decision_cpu_us", {{"mean", 1e6 * mean(cpu)}, {"p50", 1e6 * percentile(cpu, 50)}, {"p99", 1e6 * percentile(cpu, 99)}}},
          {"decisions", o.decisions},
          {"decisions_with_a_cached_prefix", hits},
          {"index_bytes_per_entry_stated", static_cast<double>(index.memory_bytes()) / static_cast<double>(index.n_entries())},
          {"index_heap_bytes_per_entry_measured", static_cast<double>(heap1 - heap0) / static_cast<double>(index.n_entries())}};
}

json event_figures(const router_bench_options& o, int blocks_per_event) {
  kv_index index(kv_index::options{size_t{8} << 20, false});
  const int n_workers = 64;
  std::vector<kv_index::worker_slot> slots;
  std::vector<uint64_t> next(static_cast<size_t>(n_workers), 0);
  for (int w = 0; w < n_workers; ++w) slots.push_back(index.add_worker());
  // Each worker stores chains and removes them again (as an engine's cache churns): the
  // stream of events is made first, then applied, timed.
  std::mt19937_64 rng(3);
  struct ev {
    kv_index::worker_slot w;
    uint64_t id;
    kv_event::kind k;
    std::vector<uint64_t> hashes;
  };
  std::vector<ev> stream;
  stream.reserve(static_cast<size_t>(o.events));
  std::vector<std::vector<std::vector<uint64_t>>> held(static_cast<size_t>(n_workers));
  while (static_cast<int64_t>(stream.size()) < o.events) {
    const auto w = static_cast<size_t>(rng() % static_cast<uint64_t>(n_workers));
    auto& h = held[w];
    if (h.size() < 64 || rng() % 2) {
      std::vector<uint64_t> hs(static_cast<size_t>(blocks_per_event));
      for (auto& x : hs) x = rng();
      stream.push_back({slots[w], next[w]++, kv_event::kind::block_stored, hs});
      h.push_back(std::move(hs));
    } else {
      const size_t i = rng() % h.size();
      stream.push_back({slots[w], next[w]++, kv_event::kind::block_removed, std::move(h[i])});
      h.erase(h.begin() + static_cast<ptrdiff_t>(i));
    }
  }
  const double c0 = thread_cpu_s();
  const auto t0 = clock_type::now();
  size_t applied = 0;
  for (const ev& e : stream) applied += index.apply(e.w, e.id, e.k, e.hashes) == kv_index::apply_outcome::applied;
  const double wall = std::chrono::duration<double>(clock_type::now() - t0).count(), s = thread_cpu_s() - c0;
  return {{"blocks_per_event", blocks_per_event},
          {"events", applied},
          {"cpu_seconds", s},
          {"wall_seconds", wall},
          {"events_per_s", static_cast<double>(applied) / s},
          {"blocks_per_s", static_cast<double>(applied) * blocks_per_event / s}};
}

}  // namespace

result<json> run_router_bench(const router_bench_options& o) {
  if (o.workers.empty() || o.indexed_blocks < 1 || o.decisions < 1 || o.prompt_tokens < kBlock)
    return make_error("bench router: --workers, --indexed-blocks, --decisions and --prompt-tokens must be positive");
  json out;
  out["block_size"] = kBlock;
  json decisions = json::array();
  for (int w : o.workers) {
    progress(fmt::format("{} workers over {} indexed blocks", w, o.indexed_blocks));
    decisions.push_back(decision_figures(o, w));
  }
  out["decision"] = decisions;
  progress(fmt::format("{} KV events applied on one core", o.events));
  out["events"] = json::array({event_figures(o, 1), event_figures(o, 8)});
  out["bytes_per_entry_stated"] = kv_index::bytes_per_entry();
  out["bytes_per_node_stated"] = kv_index::bytes_per_node();
  return out;
}

}  // namespace troupe::bench
