// Proves the serving engine under greedy sampling: batched = sequential, chunked =
// unchunked, hybrid = chunked-alternating, prefix-cache hit = cold, preempted and resumed =
// uninterrupted; and, under random arrivals, aborts and lengths, that every request ends or
// is refused with a reason, nothing deadlocks, no KV block leaks, and the KV events replay
// to the cached set.
#include "runtime/engine/engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "runtime/checkpoint.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/engine/proposer.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/test_data.hpp"

namespace troupe {
namespace {

struct result_of {
  std::vector<token_id> tokens;
  std::string text;
  std::optional<finish_reason> finished;
  usage use;
};

class engine_harness {
 public:
  explicit engine_harness(int32_t n_blocks = 256, int32_t block_size = 4,
                          const std::string& model = "qwen2-hf-f32") {
    auto ck = checkpoint::open(testing::build_dir() + "/testmodels/" + model);
    EXPECT_TRUE(ck.ok()) << ck.message();
    ck_ = std::make_shared<const checkpoint>(std::move(*ck));
    auto tok = tokenizer::from_hf_files(ck_->tokenizer_json_path(), ck_->tokenizer_config_path());
    EXPECT_TRUE(tok.ok()) << tok.message();
    tok_.emplace(std::move(*tok));
    cpu_executor_options o;
    o.n_threads = 2;
    o.kv_block_size = block_size;
    o.kv_n_blocks = n_blocks;
    auto ex = make_cpu_executor(ck_, o);
    EXPECT_TRUE(ex.ok()) << ex.message();
    ex_ = std::move(*ex);
  }

  std::unique_ptr<engine> make(engine_config c) {
    c.model_identity = "qwen2-test";
    auto e = engine::create(c, model_info_of(*ex_, &*tok_), &*tok_);
    EXPECT_TRUE(e.ok()) << e.message();
    return std::move(*e);
  }

  // Steps until no work is left; returns each request's result.
  std::map<std::string, result_of> drain(engine& e, int* preempted = nullptr, int max_steps = 5000) {
    std::map<std::string, result_of> out;
    for (int i = 0; i < max_steps && e.has_work(); ++i) {
      auto s = e.step(*ex_);
      EXPECT_TRUE(s.ok()) << s.message();
      if (preempted) *preempted += s->stats.n_preempted;
      for (auto& o : s->outputs) {
        auto& r = out[o.id];
        r.tokens.insert(r.tokens.end(), o.tokens.begin(), o.tokens.end());
        r.text += o.text;
        if (o.finished) {
          r.finished = o.finished;
          r.use = o.use;
        }
      }
    }
    EXPECT_FALSE(e.has_work()) << "did not finish within " << max_steps << " steps";
    return out;
  }

  executor& ex() { return *ex_; }
  const tokenizer& tok() { return *tok_; }

 private:
  std::shared_ptr<const checkpoint> ck_;
  std::optional<tokenizer> tok_;
  std::unique_ptr<executor> ex_;
};

std::vector<request> prompts(int n, int max_tokens, unsigned seed = 1, std::vector<token_id> prefix = {}) {
  std::mt19937 rng(seed);
  std::vector<request> out;
  for (int i = 0; i < n; ++i) {
    request r;
    r.id = "r" + std::to_string(i);
    r.prompt = prefix;
    const int len = std::uniform_int_distribution<int>(3, 40)(rng);
    for (int j = 0; j < len; ++j) r.prompt.push_back(std::uniform_int_distribution<token_id>(0, 30000)(rng));
    r.params.temperature = 0;
    r.params.max_tokens = max_tokens;
    r.params.ignore_eos = true;
    out.push_back(std::move(r));
  }
  return out;
}

std::map<std::string, std::vector<token_id>> tokens_of(const std::map<std::string, result_of>& m) {
  std::map<std::string, std::vector<token_id>> out;
  for (auto& [id, r] : m) out[id] = r.tokens;
  return out;
}

std::map<std::string, std::vector<token_id>> run_all(engine_harness& h, engine_config c,
                                                     const std::vector<request>& reqs, int* preempted = nullptr) {
  auto e = h.make(c);
  for (auto& r : reqs) EXPECT_TRUE(e->add_request(r).ok());
  auto out = h.drain(*e, preempted);
  EXPECT_EQ(e->kv_blocks_free(), e->kv_blocks_total()) << "every block is free or only cached";
  return tokens_of(out);
}

std::map<std::string, std::vector<token_id>> run_sequential(engine_harness& h, const std::vector<request>& reqs) {
  std::map<std::string, std::vector<token_id>> out;
  for (auto& r : reqs) {
    engine_config c;
    c.prefix_cache = false;
    auto one = run_all(h, c, {r});
    out[r.id] = one[r.id];
  }
  return out;
}

TEST(engine, batched_equals_sequential) {
  engine_harness h;
  auto reqs = prompts(6, 12);
  auto seq = run_sequential(h, reqs);
  for (auto& [id, t] : seq) ASSERT_EQ(t.size(), 12u) << id;
  engine_config c;
  c.prefix_cache = false;
  EXPECT_EQ(run_all(h, c, reqs), seq);
}

TEST(engine, chunked_equals_unchunked_and_hybrid_equals_chunked) {
  engine_harness h;
  auto reqs = prompts(6, 10, 2);
  engine_config whole;
  whole.prefix_cache = false;
  whole.enable_chunked_prefill = false;
  auto unchunked = run_all(h, whole, reqs);
  engine_config hybrid;
  hybrid.prefix_cache = false;
  hybrid.max_batch_size = 6;
  hybrid.max_num_tokens = 8;  // prompts of up to 40 tokens go in chunks
  hybrid.prefill = prefill_mode::hybrid;
  EXPECT_EQ(run_all(h, hybrid, reqs), unchunked);
  engine_config alternating = hybrid;
  alternating.prefill = prefill_mode::chunked;
  EXPECT_EQ(run_all(h, alternating, reqs), unchunked);
}

TEST(engine, prefix_cache_hit_equals_cold) {
  engine_harness h;
  std::vector<token_id> shared;
  for (int i = 0; i < 33; ++i) shared.push_back(1000 + i * 37);
  auto reqs = prompts(4, 8, 3, shared);
  engine_config cold;
  cold.prefix_cache = false;
  auto want = run_sequential(h, reqs);
  engine_config warm;
  auto e = h.make(warm);
  std::map<std::string, result_of> got;
  for (auto& r : reqs) {  // one after another, so that each finds the others' prefix
    ASSERT_TRUE(e->add_request(r).ok());
    for (auto& [id, res] : h.drain(*e)) got[id] = res;
  }
  for (auto& r : reqs) EXPECT_EQ(got[r.id].tokens, want[r.id]) << r.id;
  EXPECT_EQ(got["r0"].use.cached_tokens, 0);
  for (int i = 1; i < 4; ++i) EXPECT_EQ(got["r" + std::to_string(i)].use.cached_tokens, 32) << i;  // 8 blocks of 4
  // The whole prompt cached: the last token is recomputed for its logits.
  ASSERT_TRUE(e->add_request(reqs[0]).ok());
  auto again = h.drain(*e);
  EXPECT_EQ(again["r0"].tokens, want["r0"]);
  EXPECT_GT(again["r0"].use.cached_tokens, 32);
}

TEST(engine, preempted_and_resumed_equals_uninterrupted) {
  engine_harness small(24, 4);  // 24 blocks of 4 tokens: far less than six requests need
  auto reqs = prompts(6, 16, 4);
  auto want = run_sequential(small, reqs);
  for (bool cache : {false, true}) {
    engine_config c;
    c.prefix_cache = cache;
    int preempted = 0;
    EXPECT_EQ(run_all(small, c, reqs, &preempted), want) << "cache " << cache;
    EXPECT_GT(preempted, 0) << "the test must actually preempt";
  }
}

TEST(engine, stop_strings_stop_tokens_and_lengths) {
  engine_harness h(256, 4, "qwen3-hf-f32");  // untied: a random tied model repeats its input
  auto e = h.make({});
  request r;
  r.id = "a";
  r.prompt = h.tok().encode("def main():", false, true);
  r.params.temperature = 1.0f;  // seeded: the same draws every run, varied tokens
  r.params.seed = 11;
  r.params.max_tokens = 20;
  ASSERT_TRUE(e->add_request(r).ok());
  auto plain = h.drain(*e)["a"];
  ASSERT_EQ(plain.finished, finish_reason::length);
  ASSERT_GE(plain.tokens.size(), 4u);
  // A stop string made of the text of tokens 2..3: the output ends right before it.
  const std::string text = plain.text;
  const std::string stop = h.tok().decode(std::vector<token_id>(plain.tokens.begin() + 2, plain.tokens.begin() + 4), true);
  ASSERT_FALSE(stop.empty());
  r.params.stop = {stop};
  ASSERT_TRUE(e->add_request(r).ok());
  auto stopped = h.drain(*e)["a"];
  EXPECT_EQ(stopped.finished, finish_reason::stop);
  EXPECT_EQ(stopped.text, text.substr(0, text.find(stop)));
  // A stop token id: generation ends on its first occurrence, which is not part of the text.
  size_t first_new = 1;
  while (first_new < plain.tokens.size() &&
         std::find(plain.tokens.begin(), plain.tokens.begin() + static_cast<ptrdiff_t>(first_new),
                   plain.tokens[first_new]) != plain.tokens.begin() + static_cast<ptrdiff_t>(first_new))
    ++first_new;
  ASSERT_LT(first_new, plain.tokens.size());
  r.params.stop = {};
  r.params.stop_token_ids = {plain.tokens[first_new]};
  ASSERT_TRUE(e->add_request(r).ok());
  auto by_id = h.drain(*e)["a"];
  EXPECT_EQ(by_id.finished, finish_reason::stop);
  EXPECT_EQ(by_id.tokens.size(), first_new + 1);
  EXPECT_EQ(by_id.use.completion_tokens, static_cast<int32_t>(first_new + 1));
  EXPECT_EQ(by_id.text, h.tok().decode(std::vector<token_id>(plain.tokens.begin(), plain.tokens.begin() + static_cast<ptrdiff_t>(first_new)), true));
  // min_tokens keeps it going past the stop token.
  r.params.min_tokens = static_cast<int32_t>(first_new + 3);
  ASSERT_TRUE(e->add_request(r).ok());
  EXPECT_GE(h.drain(*e)["a"].tokens.size(), first_new + 3);
}

TEST(engine, refuses_what_could_never_run_with_a_reason) {
  engine_harness h(32, 4);  // 128 tokens of KV in all
  engine_config c;
  c.max_seq_len = 100;
  c.max_num_tokens = 64;
  c.max_batch_size = 8;
  c.enable_chunked_prefill = false;
  auto e = h.make(c);
  auto msg = [&](request r) {
    status s = e->add_request(std::move(r));
    return s.ok() ? std::string("ok") : s.message();
  };
  request r;
  r.id = "x";
  EXPECT_EQ(msg(r), "the prompt is empty");
  r.prompt.assign(100, 5);
  EXPECT_NE(msg(r).find("maximum context length is 100 tokens"), std::string::npos);
  r.prompt.assign(90, 5);
  r.params.max_tokens = 20;
  EXPECT_NE(msg(r).find("you requested 110 tokens (90 in the prompt, 20 for the completion)"), std::string::npos);
  r.prompt.assign(70, 5);
  r.params.max_tokens = 5;
  EXPECT_NE(msg(r).find("more than max_num_tokens (64), and chunked prefill is off"), std::string::npos);
  r.prompt.assign(10, 5);
  r.params.temperature = -1;
  EXPECT_EQ(msg(r).rfind("temperature", 0), 0u);
  r.params.temperature = 1;
  r.prompt[0] = 1 << 30;
  EXPECT_NE(msg(r).find("outside the vocabulary"), std::string::npos);
  r.prompt[0] = 5;
  EXPECT_EQ(msg(r), "ok");
  EXPECT_NE(msg(r).find("already in use"), std::string::npos);
}

TEST(engine, abort_frees_blocks_at_once) {
  engine_harness h;
  auto e = h.make({});
  auto reqs = prompts(3, 50, 5);
  for (auto& r : reqs) ASSERT_TRUE(e->add_request(r).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(e->step(h.ex()).ok());
  EXPECT_LT(e->kv_blocks_free(), e->kv_blocks_total());
  for (auto& r : reqs) EXPECT_TRUE(e->abort(r.id));
  EXPECT_FALSE(e->abort("r0"));
  EXPECT_FALSE(e->has_work());
  EXPECT_EQ(e->kv_blocks_free(), e->kv_blocks_total());
}

// The hybrid chunk cap follows measured step times: fed a synthetic cost (a decode-only step
// 10 ms, each fused prefill token 2 ms more), fused steps settle within the configured 1.5x
// of a decode step, below a KV block if need be; when prefill turns cheap the cap grows, but
// at most twofold per step.
TEST(engine, hybrid_chunk_cap_follows_measured_step_times) {
  engine_harness h(512, 4);
  engine_config c;
  c.prefill = prefill_mode::hybrid;
  c.hybrid_step_time_factor = 1.5;
  auto e = h.make(c);
  for (auto& r : prompts(4, 400, 21)) ASSERT_TRUE(e->add_request(r).ok());
  double per_token = 0.002;
  std::vector<float> logits;
  auto run_step = [&] {
    step_plan s = e->schedule();
    ASSERT_TRUE(h.ex().forward(s.batch, logits).ok());
    const step_stats st = s.stats;
    const double seconds = st.n_prefill_tokens == 0 ? 0.010 : 0.010 + per_token * st.n_prefill_tokens;
    e->complete(std::move(s), logits, seconds);
  };
  for (int i = 0; i < 6; ++i) run_step();  // the short prompts, then decodes only
  request long_one = prompts(1, 4, 22)[0];
  long_one.id = "long";
  long_one.prompt.resize(300, 7);
  ASSERT_TRUE(e->add_request(long_one).ok());
  std::vector<int32_t> caps, fused_tokens;
  for (int i = 0; i < 80; ++i) {
    step_plan s = e->schedule();
    if (s.stats.n_prefill_tokens > 0 && s.stats.n_decode_seqs > 0) {
      caps.push_back(s.stats.hybrid_chunk_cap);
      fused_tokens.push_back(s.stats.n_prefill_tokens);
    }
    ASSERT_TRUE(h.ex().forward(s.batch, logits).ok());
    const step_stats st = s.stats;
    e->complete(std::move(s), logits, st.n_prefill_tokens == 0 ? 0.010 : 0.010 + per_token * st.n_prefill_tokens);
    if (i == 40) per_token = 0.00001;  // prefill turns cheap
  }
  ASSERT_GT(caps.size(), 20u);
  for (size_t i = 1; i < caps.size(); ++i) EXPECT_LE(caps[i], 2 * caps[i - 1]) << "step " << i;
  // Settled: 0.5 x 10 ms / 2 ms = 2.5 tokens, below the 4-token KV block.
  EXPECT_LE(fused_tokens[10], 3);
  EXPECT_GE(fused_tokens[10], 1);
  EXPECT_GT(*std::max_element(caps.begin(), caps.end()), 32) << "the cap grows once prefill is cheap";
  for (auto& r : prompts(4, 400, 21)) e->abort(r.id);
  e->abort("long");
  EXPECT_EQ(e->kv_blocks_free(), e->kv_blocks_total());
}

TEST(engine, priority_runs_first_and_waiting_requests_age) {
  engine_harness h;
  engine_config c;
  c.max_batch_size = 1;
  c.aging_steps = 4;
  auto e = h.make(c);
  auto reqs = prompts(3, 3, 6);
  reqs[0].priority = 5;
  reqs[1].priority = 5;
  reqs[2].priority = 0;  // arrives last, runs first
  for (auto& r : reqs) ASSERT_TRUE(e->add_request(r).ok());
  std::vector<std::string> order;
  while (e->has_work()) {
    auto s = e->step(h.ex());
    ASSERT_TRUE(s.ok());
    for (auto& o : s->outputs)
      if (o.finished) order.push_back(o.id);
  }
  EXPECT_EQ(order, (std::vector<std::string>{"r2", "r0", "r1"}));
  // A steady stream of urgent requests cannot starve a patient one forever.
  auto e2 = h.make(c);
  request patient = prompts(1, 2, 7)[0];
  patient.id = "patient";
  patient.priority = 3;
  ASSERT_TRUE(e2->add_request(patient).ok());
  bool done = false;
  for (int i = 0; i < 200 && !done; ++i) {
    request urgent = prompts(1, 2, 100 + static_cast<unsigned>(i))[0];
    urgent.id = "u" + std::to_string(i);
    ASSERT_TRUE(e2->add_request(urgent).ok());
    auto s = e2->step(h.ex());
    ASSERT_TRUE(s.ok());
    for (auto& o : s->outputs) done |= o.id == "patient" && o.finished.has_value();
  }
  EXPECT_TRUE(done) << "the patient request never ran";
}

TEST(engine, random_arrivals_aborts_and_lengths_end_cleanly) {
  for (unsigned seed = 0; seed < 4; ++seed) {
    engine_harness h(40, 4);
    std::mt19937 rng(seed);
    engine_config c;
    c.max_batch_size = 5;
    c.max_num_tokens = std::uniform_int_distribution<int32_t>(5, 64)(rng);
    c.prefill = seed % 2 ? prefill_mode::hybrid : prefill_mode::chunked;
    c.prefix_cache = seed % 3 != 0;
    c.max_seq_len = 120;
    auto e = h.make(c);
    std::set<std::string> accepted, ended;
    std::set<uint64_t> replay;
    uint64_t next_event = 0;
    auto apply_events = [&] {
      for (const kv_event& ev : e->drain_kv_events()) {
        ASSERT_EQ(ev.event_id, next_event++);
        if (ev.type == kv_event::kind::block_stored) replay.insert(ev.block_hashes.begin(), ev.block_hashes.end());
        if (ev.type == kv_event::kind::block_removed)
          for (uint64_t x : ev.block_hashes) replay.erase(x);
        if (ev.type == kv_event::kind::all_blocks_cleared) replay.clear();
      }
    };
    int id = 0;
    for (int step = 0; step < 3000 && (step < 150 || e->has_work()); ++step) {
      if (step < 150 && std::uniform_int_distribution<int>(0, 3)(rng) == 0) {
        request r;
        r.id = "q" + std::to_string(id++);
        const int len = std::uniform_int_distribution<int>(1, 140)(rng);  // some too long
        for (int j = 0; j < len; ++j) r.prompt.push_back(std::uniform_int_distribution<token_id>(0, 50)(rng));
        r.params.max_tokens = std::uniform_int_distribution<int32_t>(1, 40)(rng);
        r.params.temperature = 0.8f;
        r.params.seed = seed;
        r.priority = std::uniform_int_distribution<int32_t>(0, 2)(rng);
        status s = e->add_request(r);
        if (s.ok()) accepted.insert(r.id);
        else EXPECT_FALSE(s.message().empty());
      }
      if (!accepted.empty() && std::uniform_int_distribution<int>(0, 20)(rng) == 0) {
        auto it = accepted.begin();
        std::advance(it, std::uniform_int_distribution<size_t>(0, accepted.size() - 1)(rng));
        if (!ended.count(*it) && e->abort(*it)) ended.insert(*it);
      }
      auto s = e->step(h.ex());
      ASSERT_TRUE(s.ok()) << s.message();
      for (auto& o : s->outputs) {
        if (o.finished) {
          EXPECT_TRUE(ended.insert(o.id).second) << o.id << " ended twice";
        }
      }
      apply_events();
      ASSERT_EQ(std::vector<uint64_t>(replay.begin(), replay.end()), e->cached_block_hashes())
          << "seed " << seed << " step " << step << ": replaying KV events gives the cached set";
    }
    EXPECT_FALSE(e->has_work()) << "seed " << seed << ": deadlock or starvation";
    EXPECT_EQ(ended, accepted) << "seed " << seed << ": every accepted request ends";
    EXPECT_EQ(e->kv_blocks_free(), e->kv_blocks_total()) << "seed " << seed << ": no block leaked";
    EXPECT_GT(accepted.size(), 15u);
  }
}

// ---- speculative verification and KV transfer ------------------------------------------

// Proposes from a known continuation (the plain run's tokens), corrupting some drafts, or
// random tokens; sequences whose id ends in an odd digit get no drafts (mixed batches).
class test_proposer final : public proposer {
 public:
  enum class mode { oracle, corrupted, random };
  test_proposer(mode m, std::map<std::string, std::vector<token_id>> plain, unsigned seed)
      : mode_(m), plain_(std::move(plain)), rng_(seed) {}
  draft propose(const sequence& s, int32_t max_tokens) override {
    draft d;
    if ((s.id.back() - '0') % 2 == 1) return d;
    const int32_t n = std::uniform_int_distribution<int32_t>(1, max_tokens)(rng_);
    const auto& want = plain_[s.id];
    for (int32_t i = 0; i < n; ++i) {
      const size_t at = static_cast<size_t>(s.completion() + i);
      token_id t = mode_ == mode::random || at >= want.size() ? std::uniform_int_distribution<token_id>(0, 3000)(rng_)
                                                               : want[at];
      if (mode_ == mode::corrupted && std::uniform_int_distribution<int>(0, 3)(rng_) == 0) t = (t + 1) % 3000;
      d.tokens.push_back(t);
    }
    return d;
  }
  const char* name() const override { return "test"; }

 private:
  mode mode_;
  std::map<std::string, std::vector<token_id>> plain_;
  std::mt19937 rng_;
};

TEST(engine, speculative_verification_equals_plain_greedy_decoding) {
  engine_harness h;
  auto reqs = prompts(6, 14, 21);
  engine_config plain_cfg;
  plain_cfg.prefix_cache = false;
  const auto want = run_all(h, plain_cfg, reqs);
  for (auto m : {test_proposer::mode::oracle, test_proposer::mode::corrupted, test_proposer::mode::random}) {
    engine_config c = plain_cfg;
    c.max_draft_len = 5;
    auto e = engine::create(c, model_info_of(h.ex(), &h.tok()), &h.tok(),
                            std::make_unique<test_proposer>(m, want, 5));
    ASSERT_TRUE(e.ok()) << e.message();
    for (auto& r : reqs) ASSERT_TRUE((*e)->add_request(r).ok());
    int64_t drafted = 0, accepted = 0;
    std::map<std::string, std::vector<token_id>> got;
    while ((*e)->has_work()) {
      auto s = (*e)->step(h.ex());
      ASSERT_TRUE(s.ok()) << s.message();
      for (auto& o : s->outputs) {
        got[o.id].insert(got[o.id].end(), o.tokens.begin(), o.tokens.end());
        drafted += o.n_drafted;
        accepted += o.n_draft_accepted;
      }
    }
    EXPECT_EQ(got, want) << "mode " << static_cast<int>(m);
    EXPECT_GT(drafted, 0);
    if (m == test_proposer::mode::oracle) {
      EXPECT_EQ(accepted, drafted);
    }
    if (m == test_proposer::mode::corrupted) {
      EXPECT_GT(accepted, 0);
      EXPECT_LT(accepted, drafted);
    }
    EXPECT_EQ((*e)->kv_blocks_free(), (*e)->kv_blocks_total()) << "rejected drafts leave no block behind";
  }
}

TEST(engine, rolled_back_drafts_leak_no_block_and_never_enter_the_prefix_cache) {
  for (unsigned seed = 0; seed < 3; ++seed) {
    engine_harness h(30, 4);
    engine_config c;
    c.max_batch_size = 4;
    c.max_num_tokens = 24;
    c.max_draft_len = 6;
    c.max_seq_len = 100;
    auto e = engine::create(c, model_info_of(h.ex(), &h.tok()), &h.tok(),
                            std::make_unique<test_proposer>(test_proposer::mode::random,
                                                            std::map<std::string, std::vector<token_id>>{}, seed));
    ASSERT_TRUE(e.ok());
    std::mt19937 rng(seed);
    std::set<uint64_t> replay;
    int id = 0;
    for (int step = 0; step < 2000 && (step < 80 || (*e)->has_work()); ++step) {
      if (step < 80 && std::uniform_int_distribution<int>(0, 2)(rng) == 0) {
        request r = prompts(1, std::uniform_int_distribution<int>(1, 30)(rng), seed * 1000 + static_cast<unsigned>(step))[0];
        r.id = "q" + std::to_string(id++);
        r.params.temperature = seed == 0 ? 0.0f : 0.9f;
        r.params.seed = seed;
        (void)(*e)->add_request(r);
      }
      if (step % 17 == 5) (*e)->abort("q" + std::to_string(std::uniform_int_distribution<int>(0, std::max(0, id - 1))(rng)));
      auto s = (*e)->step(h.ex());
      ASSERT_TRUE(s.ok()) << s.message();
      for (const kv_event& ev : (*e)->drain_kv_events()) {
        if (ev.type == kv_event::kind::block_stored) replay.insert(ev.block_hashes.begin(), ev.block_hashes.end());
        if (ev.type == kv_event::kind::block_removed)
          for (uint64_t x : ev.block_hashes) replay.erase(x);
      }
      ASSERT_EQ(std::vector<uint64_t>(replay.begin(), replay.end()), (*e)->cached_block_hashes());
    }
    EXPECT_FALSE((*e)->has_work());
    EXPECT_EQ((*e)->kv_blocks_free(), (*e)->kv_blocks_total()) << "seed " << seed;
  }
}

TEST(engine, exported_kv_imported_elsewhere_continues_exactly_and_equals_the_original) {
  engine_harness a, b;  // two executors, two caches
  auto reqs = prompts(1, 12, 31, std::vector<token_id>(13, 77));
  const request r = reqs[0];
  engine_config c;
  const auto want = run_all(a, c, {r})[r.id];

  // Prefill and the first token on a.
  auto ea = a.make(c);
  ASSERT_TRUE(ea->add_request(r).ok());
  std::vector<token_id> first;
  while (first.empty()) {
    auto s = ea->step(a.ex());
    ASSERT_TRUE(s.ok());
    for (auto& o : s->outputs) first.insert(first.end(), o.tokens.begin(), o.tokens.end());
  }
  auto kv = ea->export_kv(r.id);
  ASSERT_TRUE(kv.ok()) << kv.message();
  EXPECT_EQ(kv->n_computed, static_cast<int32_t>(r.prompt.size()));
  EXPECT_EQ(kv->generated, first);
  std::vector<uint8_t> bytes;
  ASSERT_TRUE(a.ex().read_blocks(kv->blocks.blocks, bytes).ok());
  ASSERT_EQ(bytes.size(), kv->blocks.blocks.size() * a.ex().kv_bytes_per_block());
  ASSERT_EQ(a.ex().kv_layout(), b.ex().kv_layout());

  // b already caches the first 8 tokens (a shared prefix): those blocks are not asked for.
  auto eb = b.make(c);
  request warm = r;
  warm.id = "warm";
  warm.prompt.resize(9);
  warm.params.max_tokens = 1;
  ASSERT_TRUE(eb->add_request(warm).ok());
  b.drain(*eb);
  auto imp = eb->begin_import(r, kv->generated, kv->n_computed);
  ASSERT_TRUE(imp.ok()) << imp.message();
  EXPECT_EQ(imp->first_block, 2);
  const size_t per = a.ex().kv_bytes_per_block();
  const std::span<const uint8_t> rest(bytes.data() + static_cast<size_t>(imp->first_block) * per,
                                      bytes.size() - static_cast<size_t>(imp->first_block) * per);
  ASSERT_TRUE(b.ex().write_blocks(imp->blocks, rest).ok());
  ASSERT_TRUE(eb->end_import(r.id).ok());

  // b's copy of the request's KV: the transferred blocks equal a's byte for byte; the prefix b
  // computed itself equals a's within rounding (other batch shapes may round differently).
  auto kv_b = eb->export_kv(r.id);
  ASSERT_TRUE(kv_b.ok());
  std::vector<uint8_t> bytes_b;
  ASSERT_TRUE(b.ex().read_blocks(kv_b->blocks.blocks, bytes_b).ok());
  ASSERT_EQ(bytes_b.size(), bytes.size());
  const size_t held = static_cast<size_t>(imp->first_block) * per;
  EXPECT_TRUE(std::equal(bytes.begin() + static_cast<ptrdiff_t>(held), bytes.end(), bytes_b.begin() + static_cast<ptrdiff_t>(held)));
  std::vector<float> fa(held / 4), fb(held / 4);
  std::memcpy(fa.data(), bytes.data(), held);
  std::memcpy(fb.data(), bytes_b.data(), held);
  for (size_t i = 0; i < fa.size(); ++i) ASSERT_NEAR(fa[i], fb[i], 1e-4f * (1.0f + std::fabs(fa[i]))) << i;

  // Continuing on b gives what the request gives uninterrupted; a's copy is dropped.
  auto rest_out = b.drain(*eb);
  std::vector<token_id> got = first;
  got.insert(got.end(), rest_out[r.id].tokens.begin(), rest_out[r.id].tokens.end());
  EXPECT_EQ(got, want);
  EXPECT_EQ(rest_out[r.id].use.completion_tokens, static_cast<int32_t>(want.size()));
  EXPECT_TRUE(ea->abort(r.id));
  EXPECT_EQ(ea->kv_blocks_free(), ea->kv_blocks_total());
  EXPECT_EQ(eb->kv_blocks_free(), eb->kv_blocks_total());
  // Bad transfers are refused: data of the wrong size, unknown blocks.
  EXPECT_FALSE(b.ex().write_blocks(imp->blocks, std::span<const uint8_t>(bytes.data(), 3)).ok());
  const int32_t bad[1] = {b.ex().kv_n_blocks()};
  EXPECT_FALSE(b.ex().read_blocks(bad, bytes_b).ok());
}

}  // namespace
}  // namespace troupe
