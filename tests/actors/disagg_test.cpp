// Proves disaggregated prefill and decode (actors/kv_transfer.hpp) with real actors and real
// CPU engines of models/troupe-py-7m in one process: greedy outputs of a router with a prefill
// and a decode worker equal those of a router with one aggregated worker, token for token
// (f32: EXACT); KV crosses in several chunks under tight credits, blocks the decode worker
// holds are skipped, requests that end at their first token never cross; both pools end with
// no block in use; random aborts during transfers leak nothing; a prefill worker killed under
// load leaves no request without an end and no block in use on the decode worker; one lost
// before its first token has its requests retried on the other prefill worker, with the same
// answers; seeded sampling goes on where the prefill worker stopped.
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <random>
#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "actors/kv_transfer.hpp"
#include "actors/node_agent.hpp"
#include "actors/router.hpp"
#include "tests/actors/actor_test_setup.hpp"

namespace troupe {
namespace {

using namespace std::chrono_literals;

using testing_setup::model_dir;
using testing_setup::with_types;

struct inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, std::vector<token_delta>> got;

  std::optional<token_delta> final_of(const std::string& id, std::chrono::seconds limit = 120s) {
    std::unique_lock<std::mutex> lock(mu);
    std::optional<token_delta> out;
    cv.wait_for(lock, limit, [&] {
      for (auto& d : got[id])
        if (d.finished) {
          out = d;
          return true;
        }
      return false;
    });
    return out;
  }
  std::vector<int32_t> tokens_of(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<int32_t> out;
    for (auto& d : got[id]) out.insert(out.end(), d.tokens.begin(), d.tokens.end());
    return out;
  }
  std::string text_of(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu);
    std::string out;
    for (auto& d : got[id]) out += d.text;
    return out;
  }
};

stream_actor spawn_collector(caf::actor_system& sys, std::shared_ptr<inbox> box) {
  return sys.spawn([box]() -> stream_actor::behavior_type {
    return {[box](token_delta& d) {
      {
        std::lock_guard<std::mutex> lock(box->mu);
        box->got[d.id].push_back(std::move(d));
      }
      box->cv.notify_all();
    }};
  });
}

worker_spec spec_of(const std::string& role, int32_t unit = 0) {
  worker_spec s;
  s.model_path = model_dir();
  s.engine.threads = 1;
  s.engine.kv_cache_bytes = int64_t{16} << 20;
  s.engine.max_num_tokens = 256;
  s.role = role;
  s.unit = unit;
  return s;
}

class disagg : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // Small chunks and credits: a prompt's blocks cross in several chunks, a few in flight.
    setenv("TROUPE_KV_CHUNK_BYTES", "8192", 1);
    setenv("TROUPE_KV_TRANSFER_CREDIT_BYTES", "16384", 1);
  }
  caf::actor_system_config cfg_;
  caf::actor_system sys_{with_types(cfg_)};
  node_agent_actor agent = spawn_node_agent(sys_, "test");
  std::shared_ptr<inbox> box = std::make_shared<inbox>();
  stream_actor collector = spawn_collector(sys_, box);
  std::vector<worker_actor> workers;
  std::vector<router_actor> routers;

  ~disagg() override {
    for (auto& w : workers) caf::anon_send_exit(w, caf::exit_reason::user_shutdown);
    std::this_thread::sleep_for(200ms);
    for (auto& r : routers) caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(collector, caf::exit_reason::user_shutdown);
  }

  router_actor router() {
    router_options ro;
    ro.seed = 7;
    routers.push_back(spawn_router(sys_, "test", ro));
    return routers.back();
  }

  worker_actor start(const router_actor& r, const worker_spec& spec) {
    caf::scoped_actor self{sys_};
    worker_actor out;
    self->request(agent, 120s, start_atom::value, spec)
        .receive(
            [&](worker_actor& w, publisher_actor& p, worker_info& info) {
              EXPECT_EQ(info.role, spec.role);
              self->request(r, 30s, register_atom::value, w, p, info).receive([](bool) {}, [](caf::error&) {
                ADD_FAILURE() << "register";
              });
              out = w;
            },
            [&](caf::error& e) { ADD_FAILURE() << sys_.render(e); });
    workers.push_back(out);
    return out;
  }

  actor_stats metrics_of(const worker_actor& w) {
    caf::scoped_actor self{sys_};
    actor_stats out;
    self->request(w, 10s, metrics_atom::value).receive([&](actor_stats& s) { out = std::move(s); }, [](caf::error&) {});
    return out;
  }

  // Waits until the worker runs nothing and holds no block (the prefix cache's blocks count free).
  bool idle(const worker_actor& w, std::chrono::seconds limit = 60s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      actor_stats s = metrics_of(w);
      if (s.running == 0 && s.waiting == 0 && s.kv_blocks_used == 0) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  void submit(const router_actor& r, const std::string& id, std::vector<int32_t> prompt, int32_t max_tokens,
              float temperature = 0, uint64_t seed = 0) {
    generate_request g;
    g.id = id;
    g.model = "troupe-py-7m";
    g.prompt = std::move(prompt);
    g.params.temperature = temperature;
    g.params.has_seed = seed != 0;
    g.params.seed = seed;
    g.params.max_tokens = max_tokens;
    g.params.ignore_eos = true;
    g.reply_to = collector;
    caf::anon_send(r, submit_atom::value, std::move(g));
  }
};

std::vector<int32_t> prompt_of(int n, int seed, std::vector<int32_t> prefix = {}) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::vector<int32_t> p = std::move(prefix);
  while (static_cast<int>(p.size()) < n) p.push_back(static_cast<int32_t>(3 + rng() % 250));
  return p;
}

TEST_F(disagg, greedy_outputs_equal_aggregated_token_for_token_and_no_block_leaks) {
  router_actor agg = router();
  worker_actor a = start(agg, spec_of(kv_transfer::kAggregated));
  router_actor dis = router();
  worker_actor p = start(dis, spec_of(kv_transfer::kPrefill));
  worker_actor d = start(dis, spec_of(kv_transfer::kDecode));

  // A shared 48-token prefix (3 blocks of 16): the second request's prefix is on the decode
  // worker already, and is not sent again. Lengths cross block edges; one request ends at its
  // first token (max_tokens 1) and never crosses.
  const std::vector<int32_t> shared = prompt_of(48, 1);
  struct job {
    std::string id;
    std::vector<int32_t> prompt;
    int32_t max_tokens;
  };
  std::vector<job> jobs = {{"long", prompt_of(100, 2, shared), 12}, {"short", prompt_of(5, 3), 9},
                           {"edge", prompt_of(32, 4), 7},          {"one", prompt_of(20, 5), 1},
                           {"prefix", prompt_of(70, 6, shared), 10}};
  for (const job& j : jobs) {
    submit(agg, "agg-" + j.id, j.prompt, j.max_tokens);
    ASSERT_TRUE(box->final_of("agg-" + j.id));
    submit(dis, "dis-" + j.id, j.prompt, j.max_tokens);
    auto last = box->final_of("dis-" + j.id);
    ASSERT_TRUE(last) << j.id;
    EXPECT_EQ(last->error_status, 0) << last->error;
    EXPECT_EQ(last->finish_reason, "length");
    EXPECT_EQ(last->completion_tokens, j.max_tokens) << j.id;
    EXPECT_EQ(box->tokens_of("dis-" + j.id), box->tokens_of("agg-" + j.id)) << j.id;
    EXPECT_EQ(box->text_of("dis-" + j.id), box->text_of("agg-" + j.id)) << j.id;
    EXPECT_EQ(static_cast<int32_t>(box->tokens_of("dis-" + j.id).size()), j.max_tokens);
  }
  // Seeded sampling goes on where it stopped: the same tokens as aggregated serving.
  submit(agg, "agg-seeded", prompt_of(40, 9), 16, 0.9f, 1234);
  ASSERT_TRUE(box->final_of("agg-seeded"));
  submit(dis, "dis-seeded", prompt_of(40, 9), 16, 0.9f, 1234);
  ASSERT_TRUE(box->final_of("dis-seeded"));
  EXPECT_EQ(box->tokens_of("dis-seeded"), box->tokens_of("agg-seeded"));
  EXPECT_TRUE(idle(a));
  EXPECT_TRUE(idle(p));
  EXPECT_TRUE(idle(d));
  const actor_stats ds = metrics_of(d), ps = metrics_of(p);
  EXPECT_EQ(ds.worker_role, "decode");
  EXPECT_EQ(ps.worker_role, "prefill");
  EXPECT_EQ(ds.kv_transfers, 5);  // every request but "one"
  EXPECT_GT(ds.kv_transfer_blocks, 0);
  EXPECT_GT(ds.kv_transfer_bytes, 0);
  EXPECT_EQ(ds.kv_transfer_bytes % std::max<int64_t>(1, ds.kv_transfer_blocks), 0);
  // "prefix" found the shared 3 blocks on the decode worker ("long" left them in its cache).
  EXPECT_GE(ds.kv_transfer_skipped_blocks, 3);
  EXPECT_EQ(ds.kv_transfer_failures + ps.kv_transfer_failures, 0);
  EXPECT_EQ(ds.kv_transfer_seconds.count, 5u);
  // The router's picture of both workers is empty again.
  caf::scoped_actor self{sys_};
  self->request(dis, 10s, stats_atom::value)
      .receive(
          [&](router_stats& s) {
            for (size_t i = 0; i < s.workers.size(); ++i) {
              EXPECT_EQ(s.in_flight_tokens[i], 0) << s.workers[i];
              EXPECT_EQ(s.in_flight_requests[i], 0) << s.workers[i];
            }
            EXPECT_EQ(s.roles.size(), 2u);
          },
          [](caf::error&) { ADD_FAILURE() << "stats"; });
}

TEST_F(disagg, random_aborts_during_transfers_leak_no_block) {
  router_actor dis = router();
  worker_actor p = start(dis, spec_of(kv_transfer::kPrefill));
  worker_actor d = start(dis, spec_of(kv_transfer::kDecode));
  std::mt19937 rng(11);
  std::vector<std::string> kept;
  for (int i = 0; i < 24; ++i) {
    const std::string id = fmt::format("r{}", i);
    submit(dis, id, prompt_of(30 + static_cast<int>(rng() % 120), 100 + i), 4 + static_cast<int32_t>(rng() % 12));
    if (rng() % 3 != 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 40));
      caf::anon_send(dis, abort_atom::value, id);
    } else {
      kept.push_back(id);
    }
  }
  for (const std::string& id : kept) {
    auto last = box->final_of(id);
    ASSERT_TRUE(last) << id << " never ended";
    EXPECT_EQ(last->error_status, 0) << id << ": " << last->error;
  }
  EXPECT_TRUE(idle(p)) << "the prefill worker holds blocks";
  EXPECT_TRUE(idle(d)) << "the decode worker holds blocks";
  EXPECT_EQ(kv_transfer::node_bytes_in_flight(), 0u);
}

TEST_F(disagg, a_prefill_worker_killed_under_load_leaves_no_hung_request_and_no_leaked_block) {
  router_actor dis = router();
  worker_actor p = start(dis, spec_of(kv_transfer::kPrefill));
  worker_actor d = start(dis, spec_of(kv_transfer::kDecode));
  std::vector<std::string> ids;
  for (int i = 0; i < 16; ++i) {
    ids.push_back(fmt::format("k{}", i));
    submit(dis, ids.back(), prompt_of(60 + 7 * i, 300 + i), 8);
  }
  std::this_thread::sleep_for(30ms);
  caf::anon_send_exit(p, caf::exit_reason::kill);
  int ok = 0, failed = 0;
  for (const std::string& id : ids) {
    auto last = box->final_of(id);
    ASSERT_TRUE(last) << id << " hangs";
    if (last->error_status == 0) {
      ++ok;
      EXPECT_EQ(last->completion_tokens, 8);
    } else {
      ++failed;
      EXPECT_EQ(last->error_status, 503);
      EXPECT_FALSE(last->error.empty());
    }
  }
  EXPECT_EQ(ok + failed, 16);
  // The decode worker serves the rest whole once no prefill worker is left.
  EXPECT_GT(ok, 0);
  EXPECT_TRUE(idle(d)) << "the decode worker holds blocks";
}

TEST_F(disagg, a_prefill_worker_lost_before_its_first_token_is_retried_on_another_and_answers_the_same) {
  router_actor agg = router();
  start(agg, spec_of(kv_transfer::kAggregated));
  router_actor dis = router();
  // Prefill 16 tokens a step: a 300-token prompt takes many steps, so that the kill lands
  // before any first token.
  worker_spec slow = spec_of(kv_transfer::kPrefill);
  slow.engine.max_num_tokens = 16;
  slow.engine.max_batch_size = 8;
  worker_actor p1 = start(dis, slow);
  worker_actor p2 = start(dis, slow);
  worker_actor d = start(dis, spec_of(kv_transfer::kDecode));
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(fmt::format("slow{}", i));
  for (size_t i = 0; i < ids.size(); ++i) submit(dis, "dis-" + ids[i], prompt_of(300, 500 + static_cast<int>(i)), 8);
  caf::anon_send_exit(p1, caf::exit_reason::kill);
  for (size_t i = 0; i < ids.size(); ++i) {
    auto last = box->final_of("dis-" + ids[i]);
    ASSERT_TRUE(last) << ids[i] << " hangs";
    EXPECT_EQ(last->error_status, 0) << last->error;
    submit(agg, "agg-" + ids[i], prompt_of(300, 500 + static_cast<int>(i)), 8);
    ASSERT_TRUE(box->final_of("agg-" + ids[i]));
    EXPECT_EQ(box->tokens_of("dis-" + ids[i]), box->tokens_of("agg-" + ids[i])) << ids[i];
  }
  caf::scoped_actor self{sys_};
  self->request(dis, 10s, stats_atom::value)
      .receive([&](router_stats& s) { EXPECT_GT(s.retried, 0); EXPECT_EQ(s.failed, 0); },
               [](caf::error&) { ADD_FAILURE() << "stats"; });
  EXPECT_TRUE(idle(p2));
  EXPECT_TRUE(idle(d));
}

}  // namespace
}  // namespace troupe
