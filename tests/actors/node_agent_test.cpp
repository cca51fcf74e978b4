// Proves the node agent in a real actor system: it starts workers from a spec (each with its
// device actor and KV publisher, named <node>/w<i>, with the facts a router needs), refuses a
// model or device it cannot serve with a message that says why, stops a worker by name, reports
// every actor of its node, and takes its workers with it when it exits.
#include "actors/node_agent.hpp"

#include <gtest/gtest.h>

#include <set>

#include <caf/all.hpp>

#include "actors/protocol.hpp"
#include "tests/test_data.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

worker_spec spec_of(std::string path = testing::source_dir() + "/models/troupe-py-7m") {
  worker_spec s;
  s.model_path = std::move(path);
  s.engine.threads = 1;
  s.engine.kv_cache_bytes = 16 << 20;
  s.engine.kv_block_size = 16;
  return s;
}

// An actor system of its own per test, with troupe's types.
struct system_under_test {
  caf::actor_system_config cfg;
  caf::actor_system sys;
  system_under_test() : sys((add_troupe_types(cfg), cfg)) {}
};

// Starts n workers of spec_of() through agent; their handles and infos.
std::vector<std::pair<worker_actor, worker_info>> start(caf::scoped_actor& self, caf::actor_system& sys,
                                                        const node_agent_actor& agent, int n) {
  std::vector<std::pair<worker_actor, worker_info>> out;
  for (int i = 0; i < n; ++i)
    self->request(agent, 120s, start_atom::value, spec_of())
        .receive([&](worker_actor& w, publisher_actor&, worker_info& info) { out.emplace_back(w, info); },
                 [&](caf::error& e) { ADD_FAILURE() << sys.render(e); });
  return out;
}

TEST(node_agent, starts_workers_that_say_what_a_router_needs) {
  system_under_test t;
  caf::actor_system& sys = t.sys;
  caf::scoped_actor self{sys};
  auto agent = spawn_node_agent(sys, "n1");
  std::vector<worker_info> infos;
  for (auto& [w, info] : start(self, sys, agent, 2)) infos.push_back(info);
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_EQ(infos[0].name, "n1/w0");
  EXPECT_EQ(infos[1].name, "n1/w1");
  EXPECT_EQ(infos[0].node, "n1");
  EXPECT_EQ(infos[0].model, "troupe-py-7m");
  EXPECT_EQ(infos[0].kv_block_size, 16);
  EXPECT_GT(infos[0].kv_blocks_total, 0);
  EXPECT_EQ(infos[0].hash_salt, infos[1].hash_salt) << "one model, one salt";
  EXPECT_GT(infos[0].max_seq_len, 0);

  // One report per actor: the agent, and a worker, device and publisher per worker.
  std::vector<actor_stats> all;
  self->request(agent, 30s, metrics_atom::value)
      .receive([&](std::vector<actor_stats>& v) { all = v; }, [&](caf::error& e) { FAIL() << sys.render(e); });
  std::multiset<std::string> roles;
  for (auto& s : all) roles.insert(s.role);
  EXPECT_EQ(all.size(), 7u);
  EXPECT_EQ(roles.count("node_agent"), 1u);
  EXPECT_EQ(roles.count("worker"), 2u);
  EXPECT_EQ(roles.count("device"), 2u);
  EXPECT_EQ(roles.count("kv_publisher"), 2u);
  self->send_exit(agent, caf::exit_reason::user_shutdown);
}

TEST(node_agent, refuses_a_model_or_device_it_cannot_serve_and_says_why) {
  system_under_test t;
  caf::actor_system& sys = t.sys;
  caf::scoped_actor self{sys};
  auto agent = spawn_node_agent(sys, "n1");
  std::string err;
  self->request(agent, 60s, start_atom::value, spec_of("/nonexistent/model"))
      .receive([&](worker_actor&, publisher_actor&, worker_info&) { FAIL() << "started"; },
               [&](caf::error& e) { err = sys.render(e); });
  EXPECT_NE(err.find("/nonexistent/model"), std::string::npos) << err;
  worker_spec bad_device = spec_of();
  bad_device.engine.device = "cuda:999";
  err.clear();
  self->request(agent, 60s, start_atom::value, bad_device)
      .receive([&](worker_actor&, publisher_actor&, worker_info&) { FAIL() << "started"; },
               [&](caf::error& e) { err = sys.render(e); });
  EXPECT_NE(err.find("--device cuda:999"), std::string::npos) << err;
  self->send_exit(agent, caf::exit_reason::user_shutdown);
}

TEST(node_agent, stops_a_worker_by_name_and_takes_the_rest_with_it_when_it_exits) {
  system_under_test t;
  caf::actor_system& sys = t.sys;
  caf::scoped_actor self{sys};
  auto agent = spawn_node_agent(sys, "n1");
  std::vector<worker_actor> workers;
  for (auto& [w, info] : start(self, sys, agent, 2)) workers.push_back(w);
  ASSERT_EQ(workers.size(), 2u);
  for (auto& w : workers) self->monitor(w);
  bool ok = false;
  self->request(agent, 10s, stop_atom::value, std::string("n1/w0")).receive([&](bool b) { ok = b; }, [](caf::error&) {});
  EXPECT_TRUE(ok);
  self->request(agent, 10s, stop_atom::value, std::string("n1/w9")).receive([&](bool b) { ok = b; }, [](caf::error&) {});
  EXPECT_FALSE(ok) << "an unknown worker";
  caf::actor_addr gone;
  self->receive([&](caf::down_msg& m) { gone = m.source; }, caf::after(10s) >> [] {});
  EXPECT_EQ(gone, workers[0].address());
  self->send_exit(agent, caf::exit_reason::user_shutdown);
  gone = nullptr;
  self->receive([&](caf::down_msg& m) { gone = m.source; }, caf::after(10s) >> [] {});
  EXPECT_EQ(gone, workers[1].address()) << "the agent's exit stops its workers";
}

}  // namespace
}  // namespace troupe
