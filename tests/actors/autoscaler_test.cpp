// Proves the autoscaler and the router's drains as actors, in a real actor system in this
// process, with real worker actors whose engines run on simulated devices: a drained worker
// gets no new requests and finishes the ones it holds, and stops as "stopped", not "lost";
// a burst of in-flight tokens scales one replica to several and, once the load is gone, back
// to one, with no failed request and every KV block free; new settings take effect at the
// next decision, without a restart; with min_replica 0, requests wait while no replica runs
// and bring one up; an autoscaler retired (its deployment deleted) while a replica is starting
// stops that replica when it comes up, and then quits; a disaggregated deployment scales whole
// replication units (prefill + decode workers together) up under a burst and back down; a
// draining decode worker gets no new hand-off.
#include "actors/autoscaler.hpp"

#include <condition_variable>
#include <cstdlib>
#include <mutex>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "actors/node_agent.hpp"
#include "actors/router.hpp"
#include "tests/actors/actor_test_setup.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

using testing_setup::model_dir;
using testing_setup::with_types;

// The last delta of every request, for the test thread to wait on.
struct finals {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, token_delta> done;

  bool wait_for(size_t n, std::chrono::seconds limit = 120s) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, limit, [&] { return done.size() >= n; });
  }
};

// A router, a node agent and a collector of deltas; workers are simulated troupe-py-7m engines.
class deployment {
  caf::actor_system_config cfg_;
  caf::actor_system sys_;

 public:
  deployment() : sys_(with_types(cfg_)) {
    router_options ro;
    ro.seed = 42;
    router = spawn_router(sys_, "test", std::move(ro));
    agent = spawn_node_agent(sys_, "test");
    box = std::make_shared<finals>();
    auto b = box;
    collector = sys_.spawn([b]() -> stream_actor::behavior_type {
      return {[b](token_delta& d) {
        if (!d.finished) return;
        {
          std::lock_guard<std::mutex> lock(b->mu);
          b->done[d.id] = std::move(d);
        }
        b->cv.notify_all();
      }};
    });
  }
  ~deployment() {
    if (scaler) caf::anon_send_exit(*scaler, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
    std::this_thread::sleep_for(200ms);
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(collector, caf::exit_reason::user_shutdown);
  }

  // 20 ms per decode step: a request of 60 output tokens holds its worker for over a second.
  static worker_spec sim_spec() {
    worker_spec s;
    s.model_path = model_dir();
    s.engine.kv_cache_bytes = int64_t{32} << 20;
    s.engine.max_batch_size = 64;
    s.engine.max_num_tokens = 2048;
    s.engine.simulate = R"({"prefill_token_ms": 0.05, "decode_step_ms": {"1": 20, "64": 20}})";
    return s;
  }

  // Disaggregated workers run the real engine (a simulated one holds no KV data to hand off).
  bool real_engines = false;
  worker_spec spec_of_workers() const {
    worker_spec s = sim_spec();
    if (real_engines) s.engine.simulate.clear();
    return s;
  }

  void start_worker(const std::string& role = "aggregated", int32_t unit = 0) {
    caf::scoped_actor self{sys_};
    worker_spec spec = spec_of_workers();
    spec.role = role;
    spec.unit = unit;
    self->request(agent, 60s, start_atom::value, spec)
        .receive(
            [&](worker_actor& w, publisher_actor& p, worker_info& info) {
              self->request(router, 30s, register_atom::value, w, p, info)
                  .receive([](bool) {}, [](caf::error&) { ADD_FAILURE() << "register"; });
            },
            [&](caf::error& e) { ADD_FAILURE() << sys_.render(e); });
  }

  void autoscale(autoscale_settings s, int32_t prefill_per_unit = 0, int32_t decode_per_unit = 0) {
    autoscaler_options o;
    o.prefill_per_unit = prefill_per_unit;
    o.decode_per_unit = decode_per_unit;
    o.node = "test";
    o.model = "troupe-py-7m";
    o.spec = spec_of_workers();
    o.settings = s;
    o.routers = {router};
    o.agents = {{"test", agent}};
    o.tick_s = 0.05;
    scaler = spawn_autoscaler(sys_, std::move(o));
  }

  void submit(const std::string& id, int32_t max_tokens) {
    generate_request r;
    r.id = id;
    r.model = "troupe-py-7m";
    for (int32_t i = 0; i < 32; ++i) r.prompt.push_back((static_cast<int32_t>(id.size()) * 131 + i * 17 + id.back()) % 8000 + 1);
    r.params.max_tokens = max_tokens;
    r.params.temperature = 0;
    r.params.ignore_eos = true;
    r.reply_to = collector;
    caf::anon_send(router, submit_atom::value, std::move(r));
  }

  router_stats stats() {
    caf::scoped_actor self{sys_};
    router_stats out;
    self->request(router, 10s, stats_atom::value).receive([&](router_stats& s) { out = std::move(s); },
                                                          [](caf::error&) { ADD_FAILURE() << "stats"; });
    return out;
  }

  int64_t count(const std::string& status) {
    const router_stats s = stats();
    return std::count(s.status.begin(), s.status.end(), status);
  }

  // Until pred(stats) holds, or the limit passes.
  template <class Pred>
  bool eventually(Pred pred, std::chrono::milliseconds limit = 60s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (pred(stats())) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  std::vector<actor_stats> actors() {
    caf::scoped_actor self{sys_};
    std::vector<actor_stats> out;
    self->request(agent, 10s, metrics_atom::value).receive([&](std::vector<actor_stats>& v) { out = std::move(v); },
                                                           [](caf::error&) { ADD_FAILURE() << "metrics"; });
    return out;
  }

  caf::actor_system& sys() { return sys_; }

  router_actor router;
  node_agent_actor agent;
  std::optional<autoscaler_actor> scaler;
  std::shared_ptr<finals> box;
  stream_actor collector;
};

size_t n_status(const router_stats& s, const char* status) {
  return static_cast<size_t>(std::count(s.status.begin(), s.status.end(), status));
}

void expect_all_ok(finals& box) {
  std::lock_guard<std::mutex> lock(box.mu);
  for (auto& [id, d] : box.done) {
    EXPECT_EQ(d.error_status, 0) << id << ": " << d.error;
    EXPECT_EQ(d.finish_reason, "length") << id;
  }
}

TEST(router, a_drained_worker_finishes_what_it_holds_and_gets_nothing_new) {
  deployment c;
  c.start_worker();
  c.start_worker();
  for (int i = 0; i < 8; ++i) c.submit(fmt::format("before-{}", i), 60);
  ASSERT_TRUE(c.eventually([](const router_stats& s) { return s.in_flight_requests.size() == 2 && s.in_flight_requests[0] > 0 && s.in_flight_requests[1] > 0; }));
  const std::string drained = c.stats().workers[0];
  {
    caf::scoped_actor self{c.sys()};
    bool ok = false;
    self->request(c.router, 10s, drain_atom::value, drained).receive([&](bool b) { ok = b; }, [](caf::error&) {});
    EXPECT_TRUE(ok);
  }
  EXPECT_EQ(c.count("draining"), 1);
  for (int i = 0; i < 8; ++i) c.submit(fmt::format("after-{}", i), 4);
  ASSERT_TRUE(c.box->wait_for(16));
  expect_all_ok(*c.box);
  {
    std::lock_guard<std::mutex> lock(c.box->mu);
    for (int i = 0; i < 8; ++i) EXPECT_NE(c.box->done[fmt::format("after-{}", i)].worker, drained);
  }
  // Its agent stops it: the router counts it stopped, not lost.
  caf::anon_send(c.agent, stop_atom::value, drained);
  ASSERT_TRUE(c.eventually([](const router_stats& s) { return n_status(s, "stopped") == 1; }));
  EXPECT_EQ(c.count("lost"), 0);
  EXPECT_EQ(c.count("active"), 1);
}

TEST(autoscaler, a_burst_scales_one_replica_up_and_back_down_without_a_failed_request) {
  deployment c;
  c.start_worker();
  autoscale_settings s;
  s.target_in_flight_tokens = 400;  // a burst of 12 x (32 + 60) tokens wants 3
  s.min_replica = 1;
  s.max_replica = 3;
  s.scale_up_delay_s = 0;
  s.scale_down_delay_s = 1;
  s.window_s = 0.3;
  c.autoscale(s);
  ASSERT_TRUE(c.eventually([](const router_stats& r) { return r.autoscalers.size() == 1 && r.autoscalers[0].current == 1; }));

  for (int i = 0; i < 12; ++i) c.submit(fmt::format("burst-{}", i), 60);
  ASSERT_TRUE(c.eventually([](const router_stats& r) { return n_status(r, "active") >= 2; }, 30s)) << "scaled up";
  // A second wave lands on the new replicas too.
  for (int i = 0; i < 6; ++i) c.submit(fmt::format("wave-{}", i), 60);
  ASSERT_TRUE(c.box->wait_for(18));
  expect_all_ok(*c.box);

  // The load is gone: back to one replica; the others were drained and stopped.
  ASSERT_TRUE(c.eventually([](const router_stats& r) { return n_status(r, "active") == 1 && n_status(r, "draining") == 0; }, 30s))
      << "scaled down";
  const router_stats r = c.stats();
  EXPECT_GE(n_status(r, "stopped"), 1u);
  EXPECT_EQ(n_status(r, "lost"), 0u);
  EXPECT_EQ(r.failed, 0);
  ASSERT_EQ(r.autoscalers.size(), 1u);
  const autoscaler_report& a = r.autoscalers[0];
  EXPECT_GE(a.scale_ups, 1);
  EXPECT_GE(a.scale_downs, 1);
  EXPECT_EQ(a.current, 1);
  EXPECT_FALSE(a.log.empty());
  // Every KV block of the replicas still running is free.
  ASSERT_TRUE(c.eventually([&](const router_stats&) {
    auto workers = c.actors();
    size_t n = 0;
    for (const actor_stats& w : workers)
      if (w.role == "worker") {
        ++n;
        if (w.kv_blocks_used != 0 || w.running != 0 || w.waiting != 0) return false;
      }
    return n == 1;
  }, 10s));

  // New settings take effect at the next decision, without a restart.
  s.min_replica = 2;
  {
    caf::scoped_actor self{c.sys()};
    self->request(*c.scaler, 10s, configure_atom::value, s).receive([](bool) {}, [](caf::error&) { ADD_FAILURE() << "configure"; });
  }
  ASSERT_TRUE(c.eventually([](const router_stats& rs) { return n_status(rs, "active") == 2; }, 30s)) << "min_replica 2";
}

TEST(autoscaler, scales_from_zero_when_requests_wait_and_back_to_zero) {
  deployment c;
  autoscale_settings s;
  s.target_in_flight_tokens = 1000;
  s.min_replica = 0;
  s.max_replica = 2;
  s.scale_down_delay_s = 0.5;
  s.window_s = 0.2;
  c.autoscale(s);
  ASSERT_TRUE(c.eventually([](const router_stats& r) { return r.autoscalers.size() == 1; }));
  EXPECT_EQ(c.count("active"), 0);
  // No replica: the requests wait in the router's queue, and their tokens are the demand.
  for (int i = 0; i < 3; ++i) c.submit(fmt::format("cold-{}", i), 20);
  ASSERT_TRUE(c.box->wait_for(3, 60s));
  expect_all_ok(*c.box);
  ASSERT_TRUE(c.eventually([](const router_stats& r) {
    return n_status(r, "active") == 0 && n_status(r, "draining") == 0 && n_status(r, "stopped") >= 1;
  }, 30s)) << "back to zero";
  c.submit("warm-again", 4);
  ASSERT_TRUE(c.box->wait_for(4, 60s));
  expect_all_ok(*c.box);
}

// The workers running on the node, by replication unit: (prefill, decode) counts.
std::map<int32_t, std::pair<int, int>> units_running(const std::vector<actor_stats>& actors) {
  std::map<int32_t, std::pair<int, int>> out;
  for (const actor_stats& a : actors)
    if (a.role == "worker") (a.worker_role == "prefill" ? out[a.unit].first : out[a.unit].second) += 1;
  return out;
}

TEST(autoscaler, a_disaggregated_deployment_scales_whole_units_up_and_back_down) {
  deployment c;
  c.real_engines = true;
  c.start_worker("prefill", 0);
  c.start_worker("decode", 0);
  autoscale_settings s;
  s.target_in_flight_tokens = 400;  // a burst of 12 x (32 + 60) tokens wants more than 2 units
  s.min_replica = 1;                // units, not workers
  s.max_replica = 2;
  s.scale_up_delay_s = 0;
  s.scale_down_delay_s = 1;
  s.window_s = 0.3;
  c.autoscale(s, 1, 1);
  ASSERT_TRUE(c.eventually([](const router_stats& r) { return r.autoscalers.size() == 1 && r.autoscalers[0].current == 1; }));
  EXPECT_EQ(c.stats().autoscalers[0].group, "disaggregated");

  // Every time the test looks, the workers running form whole units of 1 prefill + 1 decode
  // worker (a unit being started or stopped may be caught half way only inside the autoscaler).
  size_t max_units = 0;
  auto whole = [&](bool allow_partial) {
    auto u = units_running(c.actors());
    max_units = std::max(max_units, u.size());
    if (allow_partial) return true;
    for (auto& [id, pd] : u)
      if (pd != std::make_pair(1, 1)) return false;
    return true;
  };

  for (int i = 0; i < 12; ++i) c.submit(fmt::format("burst-{}", i), 200);
  ASSERT_TRUE(c.eventually([&](const router_stats& r) {
    whole(true);
    return n_status(r, "active") == 4;
  }, 30s)) << "scaled up to 2 units: " << [&] {
    const router_stats r = c.stats();
    std::string out = fmt::format("{} workers, {} done; ", r.workers.size(), c.box->done.size());
    if (!c.box->done.empty()) out += fmt::format("first: {} {} {} on {}; ", c.box->done.begin()->second.error_status, c.box->done.begin()->second.error, c.box->done.begin()->second.finish_reason, c.box->done.begin()->second.worker);
    if (!r.autoscalers.empty()) out += fmt::format("{} (mean {}, now {})", r.autoscalers[0].reason, r.autoscalers[0].window_mean, r.autoscalers[0].in_flight_tokens);
    return out;
  }();
  EXPECT_TRUE(whole(false));
  EXPECT_EQ(units_running(c.actors()).size(), 2u);
  // A second wave lands on the new unit too.
  for (int i = 0; i < 6; ++i) c.submit(fmt::format("wave-{}", i), 200);
  ASSERT_TRUE(c.box->wait_for(18));
  expect_all_ok(*c.box);

  // The load is gone: back to one unit; the other's workers were drained and stopped together.
  ASSERT_TRUE(c.eventually([](const router_stats& r) { return n_status(r, "active") == 2 && n_status(r, "draining") == 0; }, 30s))
      << "scaled down to 1 unit";
  const router_stats r = c.stats();
  EXPECT_EQ(n_status(r, "stopped"), 2u);
  EXPECT_EQ(n_status(r, "lost"), 0u);
  EXPECT_EQ(r.failed, 0);
  EXPECT_EQ(max_units, 2u) << "never more than max_replica units";
  ASSERT_EQ(r.autoscalers.size(), 1u);
  const autoscaler_report& a = r.autoscalers[0];
  EXPECT_GE(a.scale_ups, 1);
  EXPECT_GE(a.scale_downs, 1);
  EXPECT_EQ(a.current, 1);
  // The remaining unit is whole, and every KV block of its workers is free.
  ASSERT_TRUE(c.eventually([&](const router_stats&) {
    auto workers = c.actors();
    size_t n = 0;
    for (const actor_stats& w : workers)
      if (w.role == "worker") {
        ++n;
        if (w.kv_blocks_used != 0 || w.running != 0 || w.waiting != 0) return false;
      }
    return n == 2;
  }, 10s));
  auto left = units_running(c.actors());
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left.begin()->second, std::make_pair(1, 1));
  // Requests were handed off from prefill to decode workers (disaggregated, not whole on one).
  std::lock_guard<std::mutex> lock(c.box->mu);
  size_t on_decode = 0;
  for (auto& [id, d] : c.box->done)
    if (std::find(r.workers.begin(), r.workers.end(), d.worker) != r.workers.end()) {
      const size_t k = static_cast<size_t>(std::find(r.workers.begin(), r.workers.end(), d.worker) - r.workers.begin());
      if (k < r.roles.size() && r.roles[k] == "decode") ++on_decode;
    }
  EXPECT_GT(on_decode, 0u);
}

TEST(router, a_draining_decode_worker_gets_no_new_hand_off) {
  deployment c;
  c.real_engines = true;
  c.start_worker("prefill", 0);
  c.start_worker("decode", 0);
  c.start_worker("prefill", 1);
  c.start_worker("decode", 1);
  const router_stats before = c.stats();
  std::string drained;
  for (size_t i = 0; i < before.workers.size(); ++i)
    if (before.roles[i] == "decode") drained = before.workers[i];  // the last decode worker
  ASSERT_FALSE(drained.empty());
  {
    caf::scoped_actor self{c.sys()};
    bool ok = false;
    self->request(c.router, 10s, drain_atom::value, drained).receive([&](bool b) { ok = b; }, [](caf::error&) {});
    EXPECT_TRUE(ok);
  }
  // Both prefill workers stay active: every request is handed off, never to the draining one.
  for (int i = 0; i < 8; ++i) c.submit(fmt::format("handoff-{}", i), 8);
  ASSERT_TRUE(c.box->wait_for(8));
  expect_all_ok(*c.box);
  size_t decoded = 0;
  {
    std::lock_guard<std::mutex> lock(c.box->mu);
    for (auto& [id, d] : c.box->done) {
      EXPECT_NE(d.worker, drained) << id;
      const auto k = std::find(before.workers.begin(), before.workers.end(), d.worker) - before.workers.begin();
      if (static_cast<size_t>(k) < before.roles.size() && before.roles[static_cast<size_t>(k)] == "decode") ++decoded;
    }
  }
  EXPECT_EQ(decoded, 8u) << "every request was handed off to the active decode worker";
}

// A node agent's gate: start requests wait until the test opens it, then go to the real agent;
// it records what started and what it was asked to stop.
struct gate_state {
  std::mutex mu;
  std::condition_variable cv;
  bool asked = false, open = false;
  std::string started;
  std::vector<std::string> stopped;
};

node_agent_actor spawn_gate(caf::actor_system& sys, node_agent_actor agent, std::shared_ptr<gate_state> g) {
  return sys.spawn<caf::detached>([agent, g](node_agent_actor::pointer self) -> node_agent_actor::behavior_type {
    return {
        [=](start_atom, const worker_spec& spec) -> caf::result<worker_actor, publisher_actor, worker_info> {
          {
            std::unique_lock<std::mutex> lock(g->mu);
            g->asked = true;
            g->cv.notify_all();
            g->cv.wait(lock, [&] { return g->open; });  // blocks the gate's own thread only
          }
          auto rp = self->make_response_promise<worker_actor, publisher_actor, worker_info>();
          self->request(agent, 60s, start_atom::value, spec)
              .then(
                  [=](worker_actor& w, publisher_actor& p, worker_info& info) mutable {
                    {
                      std::lock_guard<std::mutex> lock(g->mu);
                      g->started = info.name;
                    }
                    rp.deliver(std::move(w), std::move(p), std::move(info));
                  },
                  [=](caf::error& e) mutable { rp.deliver(std::move(e)); });
          return rp;
        },
        [=](stop_atom, const std::string& name) {
          {
            std::lock_guard<std::mutex> lock(g->mu);
            g->stopped.push_back(name);
          }
          return self->delegate(agent, stop_atom::value, name);
        },
        [=](list_atom) { return self->delegate(agent, list_atom::value); },
        [=](metrics_atom) { return self->delegate(agent, metrics_atom::value); },
    };
  });
}

TEST(autoscaler, retired_while_a_replica_starts_stops_that_replica_and_quits) {
  deployment c;
  auto g = std::make_shared<gate_state>();
  const node_agent_actor gated = spawn_gate(c.sys(), c.agent, g);
  // However the test ends, the gate opens and goes (the actor system waits for it).
  struct close_gate {
    std::shared_ptr<gate_state> g;
    node_agent_actor a;
    ~close_gate() {
      {
        std::lock_guard<std::mutex> lock(g->mu);
        g->open = true;
      }
      g->cv.notify_all();
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    }
  } closer{g, gated};
  autoscale_settings s;
  s.target_in_flight_tokens = 1000;
  s.min_replica = 1;  // no replica yet: its first decision starts one
  s.max_replica = 2;
  autoscaler_options o;
  o.node = "test";
  o.model = "troupe-py-7m";
  o.spec = deployment::sim_spec();
  o.settings = s;
  o.routers = {c.router};
  o.agents = {{"test", gated}};
  o.tick_s = 0.05;
  const autoscaler_actor scaler = spawn_autoscaler(c.sys(), std::move(o));
  {
    std::unique_lock<std::mutex> lock(g->mu);
    ASSERT_TRUE(g->cv.wait_for(lock, 30s, [&] { return g->asked; })) << "the autoscaler asked for a replica";
  }
  // The deployment is deleted while the replica starts; then the start goes through.
  caf::anon_send(scaler, stop_atom::value);
  std::this_thread::sleep_for(300ms);
  {
    std::lock_guard<std::mutex> lock(g->mu);
    g->open = true;
  }
  g->cv.notify_all();
  // The replica came up, was stopped, and never reached the router.
  const auto until = std::chrono::steady_clock::now() + 30s;
  bool clean = false;
  while (!clean && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(50ms);
    std::lock_guard<std::mutex> lock(g->mu);
    if (g->started.empty() || g->stopped.empty()) continue;
    auto workers = c.actors();
    clean = std::none_of(workers.begin(), workers.end(), [](const actor_stats& a) { return a.role == "worker"; });
  }
  {
    std::lock_guard<std::mutex> lock(g->mu);
    ASSERT_FALSE(g->started.empty()) << "the replica started";
    EXPECT_EQ(g->stopped, std::vector<std::string>{g->started});
  }
  EXPECT_TRUE(clean) << "the replica stopped: no worker runs on the node";
  const router_stats r = c.stats();
  EXPECT_TRUE(r.workers.empty()) << "the router never got it";
  // Nor does it show the retired autoscaler any more (its metrics and /v1/status entry).
  EXPECT_TRUE(c.eventually([](const router_stats& rs) { return rs.autoscalers.empty(); }, 5s));
  // Nothing is left for the retired autoscaler to do: it quit.
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    caf::scoped_actor self{c.sys()};
    self->request(scaler, 1s, stats_atom::value).receive([](autoscaler_report&) {}, [&](caf::error&) { gone = true; });
    if (!gone) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(gone) << "the retired autoscaler quit";
}

}  // namespace
}  // namespace troupe
