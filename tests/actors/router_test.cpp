// Proves the router, the KV publisher and the snapshotter as actors, in a real actor system in
// this process, with real worker actors whose engines run on simulated devices (the cost
// model executor): repeated prefixes reach the worker that holds them and the metrics follow
// the reference's definitions; a burst with one new prefix spreads; a gap in a worker's events
// brings a dump that replaces its view; the queue holds requests in fcfs or wspt order and
// answers 429 when full; a killed worker's blocks leave the index and its requests that
// streamed nothing are retried; a router restarted from a snapshot replays events instead of
// dumping and routes to the cached worker at once; replicas share their load picture; the
// publisher replays what it holds; the snapshotter writes files a router can load, and a
// corrupt one is ignored.
#include "actors/router.hpp"

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "actors/kv_publisher.hpp"
#include "actors/node_agent.hpp"
#include "actors/snapshotter.hpp"
#include "tests/actors/actor_test_setup.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

using testing_setup::model_dir;
using testing_setup::with_types;

// Deltas from the stream actors, for the test thread to wait on.
struct inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<token_delta> got;

  // The last delta of request id (finished or failed), waiting up to `limit`.
  std::optional<token_delta> final_of(const std::string& id, std::chrono::seconds limit = 60s) {
    std::unique_lock<std::mutex> lock(mu);
    std::optional<token_delta> out;
    cv.wait_for(lock, limit, [&] {
      for (auto& d : got)
        if (d.id == id && d.finished) {
          out = d;
          return true;
        }
      return false;
    });
    return out;
  }
  std::vector<std::string> finished_order() {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<std::string> out;
    for (auto& d : got)
      if (d.finished) out.push_back(d.id);
    return out;
  }
};

stream_actor spawn_collector(caf::actor_system& sys, std::shared_ptr<inbox> box) {
  return sys.spawn([box]() -> stream_actor::behavior_type {
    return {[box](token_delta& d) {
      {
        std::lock_guard<std::mutex> lock(box->mu);
        box->got.push_back(std::move(d));
      }
      box->cv.notify_all();
    }};
  });
}

struct started_worker {
  worker_actor worker;
  publisher_actor publisher;
  worker_info info;
};

// A router and simulated workers of troupe-py-7m in this process.
class cluster {
  // First, so that they outlive every handle below (a detached actor's thread waits for its
  // last handle to go).
  caf::actor_system_config cfg_;
  caf::actor_system sys_;

 public:
  explicit cluster(router_options ro = {}) : sys_(with_types(cfg_)) {
    if (ro.seed == 0) ro.seed = 42;
    router = spawn_router(sys_, "test", std::move(ro));
    agent = spawn_node_agent(sys_, "test");
    box = std::make_shared<inbox>();
    collector = spawn_collector(sys_, box);
  }
  // Stops every actor (the actor system waits for them all): the workers first, so that the
  // node agent stops their devices and publishers.
  ~cluster() {
    for (auto& w : workers) caf::anon_send_exit(w.worker, caf::exit_reason::user_shutdown);
    std::this_thread::sleep_for(200ms);
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(collector, caf::exit_reason::user_shutdown);
  }

  static worker_spec sim_spec(double prefill_ms = 0.05, double step_ms = 2, int32_t max_batch = 64) {
    worker_spec s;
    s.model_path = model_dir();
    s.engine.kv_cache_bytes = int64_t{64} << 20;
    s.engine.max_batch_size = max_batch;
    s.engine.max_num_tokens = 2048;
    s.engine.simulate = fmt::format(R"({{"prefill_token_ms": {}, "decode_step_ms": {{"1": {}, "64": {}}}}})", prefill_ms, step_ms, step_ms);
    return s;
  }

  std::vector<started_worker> start(int n, const worker_spec& spec, const router_actor* to = nullptr) {
    caf::scoped_actor self{sys_};
    std::vector<started_worker> out;
    for (int i = 0; i < n; ++i)
      self->request(agent, 60s, start_atom::value, spec)
          .receive(
              [&](worker_actor& w, publisher_actor& p, worker_info& info) {
                self->request(to ? *to : router, 30s, register_atom::value, w, p, info)
                    .receive([](bool) {}, [](caf::error&) { ADD_FAILURE() << "register"; });
                out.push_back({w, p, info});
              },
              [&](caf::error& e) { ADD_FAILURE() << sys_.render(e); });
    workers.insert(workers.end(), out.begin(), out.end());
    wait_in_sync();
    return out;
  }

  router_stats stats(const router_actor* of = nullptr) {
    caf::scoped_actor self{sys_};
    router_stats out;
    self->request(of ? *of : router, 10s, stats_atom::value).receive([&](router_stats& s) { out = std::move(s); },
                                                                    [](caf::error&) { ADD_FAILURE() << "stats"; });
    return out;
  }

  // Until every worker's view is current (its first dump or replay applied).
  void wait_in_sync(const router_actor* of = nullptr) {
    for (int i = 0; i < 600; ++i) {
      auto s = stats(of);
      bool all = !s.workers.empty();
      for (size_t k = 0; k < s.workers.size(); ++k) all &= !s.alive[k] || s.in_sync[k];
      if (all) return;
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "the router's views did not come in sync";
  }

  void submit(const std::string& id, std::vector<int32_t> prompt, int32_t max_tokens = 4, int32_t priority = 0,
              const router_actor* to = nullptr) {
    generate_request r;
    r.id = id;
    r.model = "troupe-py-7m";
    r.prompt = std::move(prompt);
    r.params.max_tokens = max_tokens;
    r.params.temperature = 0;
    r.params.ignore_eos = true;
    r.priority = priority;
    r.reply_to = collector;
    caf::anon_send(to ? *to : router, submit_atom::value, std::move(r));
  }

  token_delta run(const std::string& id, std::vector<int32_t> prompt, int32_t max_tokens = 4) {
    submit(id, std::move(prompt), max_tokens);
    auto d = box->final_of(id);
    EXPECT_TRUE(d) << id << " did not finish";
    return d ? *d : token_delta{};
  }

  // Waits until the router counts nothing in flight (first token and done came from the workers).
  void wait_idle(const router_actor* of = nullptr) {
    for (int i = 0; i < 600; ++i) {
      auto s = stats(of);
      int64_t n = 0;
      for (auto v : s.in_flight_requests) n += v;
      if (n == 0) return;
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "requests stayed in flight";
  }

  caf::actor_system& sys() { return sys_; }

  router_actor router;
  node_agent_actor agent;
  std::shared_ptr<inbox> box;
  stream_actor collector;
  std::vector<started_worker> workers;
};

std::vector<int32_t> tokens(int32_t seed, size_t n) {
  std::vector<int32_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>((seed * 7919 + static_cast<int32_t>(i) * 31) % 8000 + 1);
  return out;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

size_t index_of(const router_stats& s, const std::string& worker) {
  return static_cast<size_t>(std::find(s.workers.begin(), s.workers.end(), worker) - s.workers.begin());
}

TEST(router, repeated_prefixes_reach_the_worker_that_holds_them) {
  cluster c;
  c.start(4, cluster::sim_spec());
  std::map<int, std::string> holder;
  for (int p = 0; p < 6; ++p) holder[p] = c.run(fmt::format("first-{}", p), concat(tokens(p, 96), tokens(100 + p, 5))).worker;
  c.wait_idle();
  for (int p = 0; p < 6; ++p) {
    const token_delta d = c.run(fmt::format("again-{}", p), concat(tokens(p, 96), tokens(200 + p, 7)));
    EXPECT_EQ(d.worker, holder[p]) << "prefix " << p;
    EXPECT_EQ(d.cached_tokens, 96) << "prefix " << p;
  }
  c.wait_idle();
  const router_stats s = c.stats();
  ASSERT_EQ(s.model_stats.size(), 1u);
  const router_model_stats& m = s.model_stats[0];
  EXPECT_EQ(m.prompt_tokens, 6 * 101 + 6 * 103);
  EXPECT_EQ(m.cached_tokens, 6 * 96);
  // The router's estimate was exactly what the engines measured (skew 0), and each request
  // went where most of its prefix was (efficiency 1).
  EXPECT_EQ(m.estimated_cached_tokens, m.cached_tokens);
  EXPECT_EQ(m.best_prefix_tokens, m.cached_tokens);
  EXPECT_GT(s.decision_seconds.count, 0u);
  for (size_t i = 0; i < s.workers.size(); ++i) {
    EXPECT_EQ(s.kv_event_gaps[i], 0u);
    EXPECT_EQ(s.in_flight_requests[i], 0);
    EXPECT_EQ(s.active_blocks[i], 0) << "the workers told the router every request ended";
  }
}

TEST(router, a_burst_with_one_new_prefix_spreads) {
  cluster c;
  c.start(4, cluster::sim_spec(2.0, 2));  // 256 prompt tokens: half a second of prefill
  const auto prefix = tokens(9, 256);
  for (int i = 0; i < 8; ++i) c.submit(fmt::format("burst-{}", i), concat(prefix, tokens(300 + i, 3)));
  std::map<std::string, int> per_worker;
  for (int i = 0; i < 8; ++i) {
    auto d = c.box->final_of(fmt::format("burst-{}", i));
    ASSERT_TRUE(d);
    ++per_worker[d->worker];
  }
  EXPECT_GE(per_worker.size(), 3u);
  for (auto& [w, n] : per_worker) EXPECT_LE(n, 3) << w;
}

TEST(router, a_gap_in_a_workers_events_brings_a_dump_that_replaces_its_view) {
  cluster c;
  auto ws = c.start(2, cluster::sim_spec());
  for (int p = 0; p < 3; ++p) c.run(fmt::format("r{}", p), tokens(p, 64));
  c.wait_idle();
  router_stats before = c.stats();
  // A message whose first event skips ahead, holding a block the worker never had.
  kv_events_msg m;
  m.worker = ws[0].info.name;
  wire_kv_event e;
  e.event_id = 1000000;
  e.type = kv_event::kind::block_stored;
  e.hashes = {0xDEADBEEF};
  m.events.push_back(e);
  caf::anon_send(c.router, kv_events_atom::value, m);
  router_stats after;
  for (int i = 0; i < 500; ++i) {
    after = c.stats();
    const size_t k = index_of(after, ws[0].info.name);
    if (after.kv_dumps[k] > before.kv_dumps[k] && after.in_sync[k]) break;
    std::this_thread::sleep_for(10ms);
  }
  const size_t k = index_of(after, ws[0].info.name);
  EXPECT_EQ(after.kv_event_gaps[k], 1u);
  EXPECT_EQ(after.kv_dumps[k], before.kv_dumps[k] + 1);
  caf::scoped_actor self{c.sys()};
  kv_dump truth;
  self->request(ws[0].worker, 10s, dump_atom::value).receive([&](kv_dump& d) { truth = std::move(d); }, [](caf::error&) {});
  EXPECT_EQ(after.kv_cached_blocks[k], truth.hashes.size()) << "the view is the worker's own set again";
  EXPECT_EQ(std::count(truth.hashes.begin(), truth.hashes.end(), 0xDEADBEEFu), 0);
  // And events flow again after it.
  c.run("after-gap", tokens(50, 64));
  c.wait_idle();
  EXPECT_EQ(c.stats().kv_event_gaps[k], 1u);
}

TEST(router, the_queue_holds_requests_in_policy_order_and_answers_429_when_full) {
  for (queue_order order : {queue_order::fcfs, queue_order::wspt}) {
    router_options ro;
    ro.queue_capacity = 3;
    ro.defaults.queue_policy = order;
    cluster c(ro);
    c.start(1, cluster::sim_spec(0.05, 20, 1));  // one sequence at a time, 20 ms per token
    c.submit("running", tokens(1, 40), 10);
    std::this_thread::sleep_for(50ms);  // it holds the worker
    c.submit("long", tokens(2, 300), 2);
    c.submit("short", tokens(3, 20), 2);
    c.submit("urgent-medium", tokens(4, 150), 2, -1);
    c.submit("overflow", tokens(5, 20), 2);
    auto refused = c.box->final_of("overflow", 10s);
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->error_status, 429);
    for (const char* id : {"running", "long", "short", "urgent-medium"}) ASSERT_TRUE(c.box->final_of(id)) << id;
    auto order_seen = c.box->finished_order();
    order_seen.erase(std::remove(order_seen.begin(), order_seen.end(), "overflow"), order_seen.end());
    if (order == queue_order::fcfs)  // arrival order; the urgent one is bumped one second ahead
      EXPECT_EQ(order_seen, (std::vector<std::string>{"running", "urgent-medium", "long", "short"}));
    else  // cheapest first: 20, 150 x 2^-1 = 75, 300 uncached prompt tokens
      EXPECT_EQ(order_seen, (std::vector<std::string>{"running", "short", "urgent-medium", "long"}));
    const router_stats s = c.stats();
    EXPECT_EQ(s.queue_wait_seconds.count, 3u);
    EXPECT_EQ(s.model_stats[0].rejected, 1);
  }
}

TEST(router, a_killed_worker_leaves_the_index_and_its_unstreamed_requests_are_retried) {
  cluster c;
  auto ws = c.start(2, cluster::sim_spec(4.0, 2));  // 4 ms per prompt token
  for (int p = 0; p < 4; ++p) c.run(fmt::format("warm{}", p), tokens(p, 64));
  c.wait_idle();
  // A long prefill on a worker, killed before its first token.
  c.submit("victim", tokens(77, 500), 4);
  std::string on;
  for (int i = 0; i < 200 && on.empty(); ++i) {
    auto s = c.stats();
    for (size_t k = 0; k < s.workers.size(); ++k)
      if (s.in_flight_requests[k] > 0) on = s.workers[k];
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_FALSE(on.empty());
  for (auto& w : ws)
    if (w.info.name == on) caf::anon_send_exit(w.worker, caf::exit_reason::kill);
  auto d = c.box->final_of("victim");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->error_status, 0) << d->error;
  EXPECT_NE(d->worker, on) << "it was retried on the other worker";
  const router_stats s = c.stats();
  const size_t k = index_of(s, on);
  EXPECT_FALSE(s.alive[k]);
  EXPECT_EQ(s.kv_cached_blocks[k], 0u) << "a lost worker's blocks leave the index at once";
  EXPECT_EQ(s.retried, 1);
}

TEST(router, a_router_restarted_from_a_snapshot_replays_events_and_routes_to_the_cached_worker) {
  cluster c;
  auto ws = c.start(3, cluster::sim_spec());
  std::map<int, std::string> holder;
  for (int p = 0; p < 6; ++p) holder[p] = c.run(fmt::format("warm{}", p), tokens(p, 80)).worker;
  c.wait_idle();
  caf::scoped_actor self{c.sys()};
  std::string bytes;
  self->request(c.router, 10s, snapshot_atom::value).receive([&](std::string& b) { bytes = std::move(b); }, [](caf::error&) {});
  auto snap = decode_kv_snapshot(bytes);
  ASSERT_TRUE(snap.ok()) << snap.message();
  const router_stats old_stats = c.stats();
  caf::anon_send_exit(c.router, caf::exit_reason::kill);
  // Traffic the old router never saw, sent to a worker directly: events after the snapshot,
  // which the new router replays from the worker's publisher.
  generate_request direct;
  direct.id = "unseen";
  direct.model = "troupe-py-7m";
  direct.prompt = tokens(40, 80);
  direct.params.max_tokens = 2;
  direct.reply_to = c.collector;
  caf::anon_send(ws[0].worker, submit_atom::value, direct);
  ASSERT_TRUE(c.box->final_of("unseen"));
  router_options ro;
  ro.seed = 7;
  ro.restore = std::move(*snap);
  router_actor fresh = spawn_router(c.sys(), "test", std::move(ro));
  for (auto& w : ws) self->request(fresh, 10s, register_atom::value, w.worker, w.publisher, w.info).receive([](bool) {}, [](caf::error&) {});
  c.wait_in_sync(&fresh);
  const router_stats s = c.stats(&fresh);
  for (size_t k = 0; k < s.workers.size(); ++k) {
    EXPECT_EQ(s.kv_dumps[k], 0u) << s.workers[k] << " came back by replay, not dump";
    EXPECT_EQ(s.kv_replays[k], 1u) << s.workers[k];
    EXPECT_GE(s.kv_cached_blocks[k], old_stats.kv_cached_blocks[index_of(old_stats, s.workers[k])]);
  }
  for (int p = 0; p < 6; ++p) {
    const token_delta d = [&] {
      c.submit(fmt::format("back{}", p), concat(tokens(p, 80), tokens(500 + p, 3)), 4, 0, &fresh);
      return *c.box->final_of(fmt::format("back{}", p));
    }();
    EXPECT_EQ(d.worker, holder[p]) << "prefix " << p;
    EXPECT_EQ(d.cached_tokens, 80);
  }
  caf::anon_send_exit(fresh, caf::exit_reason::user_shutdown);
}

TEST(router, replicas_share_their_in_flight_decisions_and_their_workers) {
  cluster c;
  router_options ro;
  ro.name = "test/router1";
  ro.seed = 9;
  router_actor second = spawn_router(c.sys(), "test", std::move(ro));
  caf::anon_send(c.router, register_atom::value, caf::actor_cast<router_peer_actor>(second));
  caf::anon_send(second, register_atom::value, caf::actor_cast<router_peer_actor>(c.router));
  c.start(2, cluster::sim_spec(2.0, 20));
  c.wait_in_sync(&second);
  EXPECT_EQ(c.stats(&second).workers.size(), 2u) << "workers registered with one replica reach the other";
  // A slow request through the first router: the second counts it on the same worker.
  c.submit("shared", tokens(3, 200), 20);
  bool seen = false;
  for (int i = 0; i < 300 && !seen; ++i) {
    auto a = c.stats(), b = c.stats(&second);
    for (size_t k = 0; k < a.workers.size(); ++k)
      if (a.in_flight_requests[k] == 1 && b.in_flight_requests[index_of(b, a.workers[k])] == 1) seen = true;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(seen) << "the second router saw the first one's request in flight";
  ASSERT_TRUE(c.box->final_of("shared"));
  c.wait_idle(&second);
  EXPECT_EQ(c.stats(&second).active_blocks[0], 0);
  caf::anon_send_exit(second, caf::exit_reason::user_shutdown);
}

TEST(kv_publisher, replays_what_it_holds_and_forwards_to_subscribers) {
  caf::actor_system_config cfg;
  caf::actor_system sys{with_types(cfg)};
  auto pub = spawn_kv_publisher(sys, "test", "test/pub", publisher_limits{4, 1000});
  auto box = std::make_shared<std::vector<uint64_t>>();
  auto mu = std::make_shared<std::mutex>();
  kv_sink_actor sink = sys.spawn([box, mu]() -> kv_sink_actor::behavior_type {
    return {[box, mu](kv_events_atom, const kv_events_msg& m) {
      std::lock_guard<std::mutex> lock(*mu);
      for (auto& e : m.events) box->push_back(e.event_id);
    }};
  });
  caf::scoped_actor self{sys};
  uint64_t next = 99;
  self->request(pub, 5s, subscribe_atom::value, sink).receive([&](uint64_t n) { next = n; }, [](caf::error&) {});
  EXPECT_EQ(next, 0u);
  for (uint64_t i = 0; i < 6; ++i) {
    kv_events_msg m;
    m.worker = "w";
    wire_kv_event e;
    e.event_id = i;
    e.hashes = {i};
    m.events.push_back(e);
    self->send(pub, kv_events_atom::value, m);
  }
  std::vector<uint64_t> replayed;
  self->request(pub, 5s, replay_atom::value, uint64_t{3})
      .receive([&](kv_events_msg& m) { for (auto& e : m.events) replayed.push_back(e.event_id); },
               [](caf::error&) { ADD_FAILURE() << "replay from 3"; });
  EXPECT_EQ(replayed, (std::vector<uint64_t>{3, 4, 5}));
  bool refused = false;
  self->request(pub, 5s, replay_atom::value, uint64_t{1}).receive([](kv_events_msg&) {}, [&](caf::error&) { refused = true; });
  EXPECT_TRUE(refused) << "events 0 and 1 are no longer held (it keeps 4)";
  self->request(pub, 5s, replay_atom::value, uint64_t{6})
      .receive([&](kv_events_msg& m) { EXPECT_TRUE(m.events.empty()); }, [](caf::error&) { ADD_FAILURE() << "nothing missing"; });
  for (int i = 0; i < 100; ++i) {
    {
      std::lock_guard<std::mutex> lock(*mu);
      if (box->size() == 6) break;
    }
    std::this_thread::sleep_for(10ms);
  }
  std::lock_guard<std::mutex> lock(*mu);
  EXPECT_EQ(*box, (std::vector<uint64_t>{0, 1, 2, 3, 4, 5}));
}

TEST(snapshotter, writes_snapshots_a_router_can_load_and_a_corrupt_one_is_ignored) {
  cluster c;
  c.start(2, cluster::sim_spec());
  for (int p = 0; p < 3; ++p) c.run(fmt::format("r{}", p), tokens(p, 64));
  c.wait_idle();
  const std::string dir = (std::filesystem::temp_directory_path() / fmt::format("troupe-snap-{}", getpid())).string();
  std::filesystem::remove_all(dir);
  auto snapper = spawn_snapshotter(c.sys(), c.router, {dir, "kv-index-0.snapshot", 0.05, "test"});
  caf::scoped_actor self{c.sys()};
  uint64_t written = 0;
  self->request(snapper, 10s, snapshot_atom::value).receive([&](uint64_t n) { written = n; }, [](caf::error&) {});
  EXPECT_GT(written, 0u);
  std::string why;
  auto loaded = load_snapshot(dir, "kv-index-0.snapshot", &why);
  ASSERT_TRUE(loaded) << why;
  EXPECT_EQ(loaded->workers.size(), 2u);
  size_t blocks = 0;
  for (auto& w : loaded->workers) blocks += w.hashes.size();
  EXPECT_GE(blocks, 12u);
  // The timer writes again on its own.
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(std::filesystem::exists(dir + "/.kv-index-0.snapshot.tmp"));
  caf::anon_send_exit(snapper, caf::exit_reason::user_shutdown);
  std::this_thread::sleep_for(100ms);

  EXPECT_FALSE(load_snapshot(dir, "missing.snapshot", &why)) << "no file: no snapshot";
  {
    std::ofstream out(dir + "/kv-index-0.snapshot", std::ios::binary | std::ios::trunc);
    out << "TRPKVSN1 this is not a snapshot";
  }
  why.clear();
  EXPECT_FALSE(load_snapshot(dir, "kv-index-0.snapshot", &why));
  EXPECT_NE(why.find("ignoring the KV index snapshot"), std::string::npos) << why;
  EXPECT_EQ(std::count(why.begin(), why.end(), '\n'), 0) << "one log line";
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace troupe
