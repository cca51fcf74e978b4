// Proves the worker actor in a real actor system, on the project's own model: its token deltas
// add up to what the engine alone generates, an embedding request's last delta carries its
// vector (a simulated worker refuses one), a refusal comes back as a 400 delta, an abort or
// a vanished client frees the request's KV blocks, KV events reach a subscribed sink, and a
// stopped worker fails what it holds with a 503 and exits.
#include "actors/worker.hpp"

#include <gtest/gtest.h>

#include <caf/all.hpp>

#include "actors/node_agent.hpp"
#include "actors/protocol.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/test_data.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

std::string model_path() { return testing::source_dir() + "/models/troupe-py-7m"; }

worker_spec spec_of() {
  worker_spec s;
  s.model_path = model_path();
  s.engine.threads = 1;
  s.engine.kv_cache_bytes = 32 << 20;
  return s;
}

struct started_worker {
  worker_actor worker;
  publisher_actor publisher;
  worker_info info;
};

class worker_test : public ::testing::Test {
 protected:
  worker_test() : sys((add_troupe_types(cfg), cfg)), self(sys) {
    agent = spawn_node_agent(sys, "test");
  }
  ~worker_test() override {
    self->send_exit(agent, caf::exit_reason::user_shutdown);
  }
  started_worker start() {
    started_worker out;
    self->request(agent, 120s, start_atom::value, spec_of())
        .receive([&](worker_actor& w, publisher_actor& p, worker_info& i) { out = {w, p, i}; },
                 [&](caf::error& e) { ADD_FAILURE() << sys.render(e); });
    return out;
  }
  generate_request req(const std::string& id, std::vector<int32_t> prompt, int32_t max_tokens) {
    generate_request r;
    r.id = id;
    r.model = "troupe-py-7m";
    r.prompt = std::move(prompt);
    r.params.temperature = 0;
    r.params.max_tokens = max_tokens;
    r.params.ignore_eos = true;
    r.reply_to = caf::actor_cast<stream_actor>(self);
    return r;
  }
  // Deltas for id until its last one, max_deltas of them, or a timeout.
  std::vector<token_delta> collect(const std::string& id, std::chrono::seconds timeout = 60s,
                                   size_t max_deltas = SIZE_MAX) {
    std::vector<token_delta> out;
    bool done = false;
    while (!done && out.size() < max_deltas) {
      bool got = false;
      self->receive([&](token_delta& d) {
                      got = true;
                      if (d.id != id) return;
                      done = d.finished;
                      out.push_back(std::move(d));
                    },
                    caf::after(timeout) >> [&] { done = true; });
      if (!got) break;
    }
    return out;
  }
  actor_stats stats_of(const worker_actor& w) {
    actor_stats st;
    self->request(w, 10s, metrics_atom::value)
        .receive([&](actor_stats& s) { st = s; }, [&](caf::error& e) { ADD_FAILURE() << sys.render(e); });
    return st;
  }

  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  node_agent_actor agent;
};

std::vector<int32_t> prompt_of(const std::string& text) {
  auto b = load_model(model_path());
  EXPECT_TRUE(b.ok()) << b.message();
  return b->tok->encode(text, true, false);
}

TEST_F(worker_test, its_deltas_add_up_to_what_the_engine_alone_generates) {
  const auto prompt = prompt_of("def fibonacci(n):\n    ");
  // The engine alone, through the factory as the node agent builds it.
  auto b = load_model(model_path());
  ASSERT_TRUE(b.ok());
  executor_factory factory;
  auto ex = factory.make_executor(b->weights, model_path(), spec_of().engine);
  ASSERT_TRUE(ex.ok());
  auto eng = make_engine(spec_of().engine, **ex, b->tok.get(), "troupe-py-7m");
  ASSERT_TRUE(eng.ok());
  request r;
  r.id = "x";
  r.prompt = prompt;
  r.params.temperature = 0;
  r.params.max_tokens = 24;
  r.params.ignore_eos = true;
  ASSERT_TRUE((*eng)->add_request(r).ok());
  std::vector<int32_t> want;
  std::string want_text;
  while ((*eng)->has_work()) {
    auto s = (*eng)->step(**ex);
    ASSERT_TRUE(s.ok());
    for (auto& o : s->outputs) {
      want.insert(want.end(), o.tokens.begin(), o.tokens.end());
      want_text += o.text;
    }
  }

  started_worker w = start();
  self->send(w.worker, submit_atom::value, req("a", prompt, 24));
  auto deltas = collect("a");
  ASSERT_FALSE(deltas.empty());
  EXPECT_TRUE(deltas.front().tokens.empty()) << "the first delta acknowledges the request";
  std::vector<int32_t> got;
  std::string text;
  for (auto& d : deltas) {
    got.insert(got.end(), d.tokens.begin(), d.tokens.end());
    text += d.text;
    EXPECT_EQ(d.worker, w.info.name);
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(text, want_text);
  EXPECT_TRUE(deltas.back().finished);
  EXPECT_EQ(deltas.back().finish_reason, "length");
  EXPECT_EQ(deltas.back().prompt_tokens, static_cast<int32_t>(prompt.size()));
  EXPECT_EQ(deltas.back().completion_tokens, 24);
  EXPECT_EQ(stats_of(w.worker).kv_blocks_used, 0);
}

TEST_F(worker_test, a_request_the_engine_refuses_gets_a_400_delta) {
  started_worker w = start();
  self->send(w.worker, submit_atom::value, req("empty", {}, 4));
  auto deltas = collect("empty");
  ASSERT_EQ(deltas.size(), 1u);
  EXPECT_EQ(deltas[0].error_status, 400);
  EXPECT_EQ(deltas[0].finish_reason, "error");
  EXPECT_NE(deltas[0].error.find("empty"), std::string::npos) << deltas[0].error;
}

TEST_F(worker_test, an_abort_or_a_vanished_client_frees_the_request) {
  started_worker w = start();
  const auto prompt = prompt_of("import os\n");
  self->send(w.worker, submit_atom::value, req("long", prompt, 400));
  auto first = collect("long", 10s, 3);  // the acknowledgement and a few tokens
  ASSERT_FALSE(first.empty());
  self->send(w.worker, abort_atom::value, std::string("long"));
  for (int i = 0; i < 100 && stats_of(w.worker).running > 0; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(stats_of(w.worker).running, 0);
  EXPECT_EQ(stats_of(w.worker).kv_blocks_used, 0);

  // A client actor that goes away without a word takes its request with it.
  auto client = sys.spawn([](caf::event_based_actor*) -> caf::behavior { return {[](const token_delta&) {}}; });
  generate_request r = req("orphan", prompt, 400);
  r.reply_to = caf::actor_cast<stream_actor>(client);
  self->send(w.worker, submit_atom::value, r);
  for (int i = 0; i < 100 && stats_of(w.worker).running == 0; ++i) std::this_thread::sleep_for(10ms);
  self->send_exit(client, caf::exit_reason::user_shutdown);
  for (int i = 0; i < 200 && stats_of(w.worker).running > 0; ++i) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(stats_of(w.worker).running, 0);
  EXPECT_EQ(stats_of(w.worker).kv_blocks_used, 0);
}

TEST_F(worker_test, an_embedding_request_gets_one_last_delta_with_the_vector_and_a_simulated_worker_refuses_it) {
  started_worker w = start();
  const auto prompt = prompt_of("def add(a, b):\n    return a + b\n");
  generate_request r = req("emb", prompt, 0);
  r.pool = pooling::mean;
  self->send(w.worker, submit_atom::value, r);
  auto deltas = collect("emb");
  ASSERT_EQ(deltas.size(), 2u);  // the acknowledgement, then the vector
  const token_delta& d = deltas.back();
  EXPECT_TRUE(d.finished);
  EXPECT_EQ(d.error_status, 0) << d.error;
  EXPECT_TRUE(d.tokens.empty());
  EXPECT_EQ(d.prompt_tokens, static_cast<int32_t>(prompt.size()));
  ASSERT_EQ(d.embedding.size(), 256u);  // troupe-py-7m's width
  double norm = 0;
  for (float v : d.embedding) norm += static_cast<double>(v) * v;
  EXPECT_NEAR(norm, 1.0, 1e-5);
  EXPECT_EQ(stats_of(w.worker).running, 0);

  worker_spec sim = spec_of();
  sim.engine.simulate = R"({"prefill_token_ms": 0.01, "decode_step_ms": {"1": 0.1}})";
  started_worker s;
  self->request(agent, 120s, start_atom::value, sim)
      .receive([&](worker_actor& x, publisher_actor& p, worker_info& i) { s = {x, p, i}; },
               [&](caf::error& e) { ADD_FAILURE() << sys.render(e); });
  r.id = "emb-sim";
  self->send(s.worker, submit_atom::value, r);
  auto refused = collect("emb-sim", 10s, 1);
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].error_status, 400);
  EXPECT_NE(refused[0].error.find("cannot compute embeddings"), std::string::npos) << refused[0].error;
}

TEST_F(worker_test, kv_events_reach_a_subscribed_sink_in_order) {
  started_worker w = start();
  self->send(w.publisher, subscribe_atom::value, caf::actor_cast<kv_sink_actor>(self));
  std::this_thread::sleep_for(50ms);  // the subscription lands before the request
  const auto prompt = prompt_of(std::string(200, 'x'));
  self->send(w.worker, submit_atom::value, req("ev", prompt, 2));
  std::vector<wire_kv_event> events;
  bool finished = false;
  for (int i = 0; i < 200 && (!finished || events.empty()); ++i)
    self->receive([&](kv_events_atom, kv_events_msg& m) {
                    EXPECT_EQ(m.worker, w.info.name);
                    events.insert(events.end(), m.events.begin(), m.events.end());
                  },
                  [&](token_delta& d) { finished |= d.finished; }, caf::after(5s) >> [&] { finished = true; });
  ASSERT_FALSE(events.empty());
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].event_id, i);
  size_t stored = 0;
  for (auto& e : events)
    if (e.type == kv_event::kind::block_stored) stored += e.hashes.size();
  EXPECT_GE(stored, prompt.size() / static_cast<size_t>(w.info.kv_block_size));
}

TEST_F(worker_test, a_stopped_worker_fails_what_it_holds_and_exits) {
  started_worker w = start();
  self->monitor(w.worker);
  self->send(w.worker, submit_atom::value, req("held", prompt_of("class A:\n"), 400));
  collect("held", 10s, 3);
  self->send(w.worker, stop_atom::value);
  auto rest = collect("held", 10s);
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.back().error_status, 503);
  bool down = false;
  self->receive([&](caf::down_msg& m) { down = m.source == w.worker.address(); }, caf::after(10s) >> [] {});
  EXPECT_TRUE(down);
}

}  // namespace
}  // namespace troupe
