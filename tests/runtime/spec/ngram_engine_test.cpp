// Proves NGram speculative decoding in the engine on the project's own model
// (models/troupe-py-7m), on the f32 path (EXACT): greedy output with NGram drafts is plain
// greedy decoding token for token, with speculating sequences batched beside plain ones in the
// same steps, with stop strings and max_tokens (never past it), and with prefix-cache hits; and,
// under random arrivals, aborts, preemption and drafts corrupted at random, every request ends,
// no KV block leaks and the KV events replay to the cached set (drafts never enter it).
#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "runtime/engine/engine.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/spec/ngram_proposer.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/runtime/shipped_model_fixture.hpp"

namespace troupe {
namespace {

struct outcome {
  std::vector<token_id> tokens;
  std::string text;
  std::string finish;
  usage use;
};

struct run_totals {
  int64_t drafted = 0, accepted = 0;
  int mixed_steps = 0;  // steps with a verification beside a plain decode or a prefill
  int verify_seqs = 0;  // sequence-steps that verified drafts
  bool leaked = false;
};

// Drafts from the NGram drafter for ids that start with 's' only (the others decode plainly),
// or, corrupting, replaces drafts at random and cuts them short.
class test_proposer final : public proposer {
 public:
  test_proposer(bool only_s, double corrupt, unsigned seed)
      : inner_(ngram_proposer::create({4, 1}).value()), only_s_(only_s), corrupt_(corrupt), rng_(seed) {}
  draft propose(const sequence& s, int32_t max_tokens) override {
    if (only_s_ && s.id[0] != 's') return {};
    draft d = inner_->propose(s, max_tokens);
    if (corrupt_ > 0) {
      std::uniform_real_distribution<double> u(0, 1);
      if (d.tokens.empty() && u(rng_) < corrupt_) d.tokens.push_back(static_cast<token_id>(rng_() % 8000));
      for (token_id& t : d.tokens)
        if (u(rng_) < corrupt_) t = static_cast<token_id>(rng_() % 8000);
      if (!d.tokens.empty()) d.tokens.resize(1 + rng_() % d.tokens.size());
    }
    return d;
  }
  const char* name() const override { return "NGram"; }

 private:
  std::unique_ptr<ngram_proposer> inner_;
  bool only_s_;
  double corrupt_;
  std::mt19937 rng_;
};

class ngram_engine : public testing::shipped_model_fixture {
 protected:
  static std::vector<token_id> encode(const std::string& text) { return bundle_->tok->encode(text, true, false); }

  // Python-shaped prompts; some repeat code the continuation is likely to copy.
  static std::vector<std::string> texts() {
    const std::string f = "def add_item(self, key, value):\n    if key in self.items:\n        self.items[key].append(value)\n"
                          "    else:\n        self.items[key] = [value]\n    return self.items[key]\n\n";
    return {f + "# The same method, again:\n" + f.substr(0, 30),
            "import os\nimport sys\n\n\ndef main(argv):\n    for name in argv:\n        path = os.path.join(",
            "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        self.items",
            f + f.substr(0, 45),
            "for i in range(10):\n    print(i)\nfor i in range(10):\n    print(",
            "def parse(line):\n    \"\"\"Split a line into fields.\"\"\"\n    fields = line.split(",
            "x = 1\ny = 2\nz = x + y\n",
            "try:\n    import json\nexcept ImportError:\n    json = None\n\n\ndef load(path):\n    with open("};
  }

  // Runs every request in one engine (drafts from prop when given) and returns each outcome.
  std::map<std::string, outcome> run(const std::vector<request>& reqs, std::unique_ptr<proposer> prop,
                                     run_totals* totals = nullptr, bool prefix_cache = false, int32_t max_draft_len = 4,
                                     const std::vector<request>& second_wave = {},
                                     std::function<double(const step_plan&, double)> step_seconds = nullptr) {
    auto ex = make_executor();
    std::map<std::string, outcome> out;
    if (!ex) return out;
    engine_config c;
    c.prefix_cache = prefix_cache;
    c.max_draft_len = max_draft_len;
    c.adaptive_draft_len = step_seconds != nullptr;
    c.model_identity = "troupe-py-7m";
    auto e = engine::create(c, model_info_of(*ex, bundle_->tok.get()), bundle_->tok.get(), std::move(prop));
    EXPECT_TRUE(e.ok()) << e.message();
    if (!e.ok()) return out;
    for (const auto& wave : {reqs, second_wave}) {
      for (const request& r : wave) EXPECT_TRUE((*e)->add_request(r).ok()) << r.id;
      while ((*e)->has_work()) {
        step_plan plan = (*e)->schedule();
        bool verify = false, other = false;
        for (const scheduled_seq& s : plan.seqs) (s.phase == seq_phase::verify ? verify : other) = true;
        if (totals && verify && other) ++totals->mixed_steps;
        std::vector<float> logits;
        double seconds = -1;
        if (!plan.empty()) {
          const auto t0 = std::chrono::steady_clock::now();
          EXPECT_TRUE(ex->forward(plan.batch, logits).ok());
          seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          if (step_seconds) seconds = step_seconds(plan, seconds);
        }
        if (totals) totals->verify_seqs += static_cast<int>(std::count_if(
                        plan.seqs.begin(), plan.seqs.end(), [](const scheduled_seq& s) { return s.phase == seq_phase::verify; }));
        step_output so = (*e)->complete(std::move(plan), logits, seconds);
        for (const request_output& o : so.outputs) {
          outcome& x = out[o.id];
          x.tokens.insert(x.tokens.end(), o.tokens.begin(), o.tokens.end());
          x.text += o.text;
          if (o.finished) {
            x.finish = finish_reason_name(*o.finished);
            x.use = o.use;
          }
          if (totals) {
            totals->drafted += o.n_drafted;
            totals->accepted += o.n_draft_accepted;
          }
        }
      }
    }
    if (totals) totals->leaked = (*e)->kv_blocks_free() != (*e)->kv_blocks_total();
    return out;
  }

  static std::vector<request> requests(const std::string& prefix_of_ids, int32_t max_tokens) {
    std::vector<request> out;
    const auto t = texts();
    for (size_t i = 0; i < t.size(); ++i) {
      request r;
      r.id = (i % 2 == 0 ? "s" : "p") + prefix_of_ids + std::to_string(i);
      r.prompt = encode(t[i]);
      r.params.temperature = 0;
      r.params.max_tokens = max_tokens;
      out.push_back(std::move(r));
    }
    return out;
  }
};

void expect_same(const std::map<std::string, outcome>& got, const std::map<std::string, outcome>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [id, w] : want) {
    const outcome& g = got.at(id);
    EXPECT_EQ(g.tokens, w.tokens) << id;
    EXPECT_EQ(g.text, w.text) << id;
    EXPECT_EQ(g.finish, w.finish) << id;
    EXPECT_EQ(g.use.completion_tokens, w.use.completion_tokens) << id;
  }
}

TEST_F(ngram_engine, greedy_output_is_plain_greedy_decoding_beside_sequences_that_do_not_speculate) {
  const auto reqs = requests("", 96);
  const auto plain = run(reqs, nullptr);
  run_totals t;
  const auto spec = run(reqs, std::make_unique<test_proposer>(true, 0.0, 1), &t);
  expect_same(spec, plain);
  EXPECT_GT(t.drafted, 0);
  EXPECT_GT(t.accepted, 0) << "the repeated code is copied";
  EXPECT_GT(t.mixed_steps, 0) << "verifications shared steps with plain decodes";
  EXPECT_FALSE(t.leaked);
  // Every sequence speculating, through the factory's drafter.
  engine_spec es;
  es.decoding_type = "NGram";
  auto p = make_proposer(es);
  ASSERT_TRUE(p.ok()) << p.message();
  run_totals all;
  expect_same(run(reqs, std::move(*p), &all), plain);
  EXPECT_GT(all.drafted, t.drafted);
  EXPECT_FALSE(all.leaked);
}

// spec_draft_length 0: the draft length of each sequence and step is chosen by the cost model
// and the measured acceptance. Whatever it chooses, greedy output stays plain greedy decoding.
// Step times are the measured ones, then two synthetic devices that force the two ends: a fixed
// cost per step (speculation is nearly free: every sequence drafts) and a cost per token with no
// fixed part (verifying costs what it saves: drafts only from the chooser's rare probes).
TEST_F(ngram_engine, adaptive_draft_length_keeps_greedy_output_and_follows_the_step_cost) {
  const auto reqs = requests("", 96);
  const auto plain = run(reqs, nullptr);
  auto ngram = []() -> std::unique_ptr<proposer> {
    engine_spec es;
    es.decoding_type = "NGram";
    auto p = make_proposer(es);
    EXPECT_TRUE(p.ok()) << p.message();
    return p.ok() ? std::move(*p) : nullptr;
  };
  run_totals fixed;
  expect_same(run(reqs, ngram(), &fixed), plain);

  run_totals measured;
  expect_same(run(reqs, ngram(), &measured, false, 4, {}, [](const step_plan&, double s) { return s; }), plain);
  EXPECT_FALSE(measured.leaked);

  run_totals latency_bound;
  expect_same(run(reqs, ngram(), &latency_bound, false, 4, {},
                  [](const step_plan& p, double) { return 0.010 + 1e-6 * p.batch.n_tokens(); }),
              plain);
  EXPECT_FALSE(latency_bound.leaked);
  EXPECT_GT(latency_bound.accepted, 0);
  EXPECT_GE(latency_bound.verify_seqs, fixed.verify_seqs * 8 / 10) << "drafting is nearly free: most steps draft";

  run_totals compute_bound;
  expect_same(run(reqs, ngram(), &compute_bound, false, 4, {},
                  [](const step_plan& p, double) { return 1e-3 * p.batch.n_tokens(); }),
              plain);
  EXPECT_FALSE(compute_bound.leaked);
  EXPECT_LT(compute_bound.drafted, fixed.drafted / 4) << "each draft token costs a step's token: almost none";
}

TEST_F(ngram_engine, stop_strings_and_max_tokens_end_where_plain_decoding_ends) {
  std::vector<request> reqs;
  int n = 0;
  for (const std::string& text : texts())
    for (int32_t max_tokens : {1, 2, 5, 13, 40}) {
      request r;
      r.id = "s" + std::to_string(n++);
      r.prompt = encode(text);
      r.params.temperature = 0;
      r.params.max_tokens = max_tokens;
      if (n % 3 == 0) r.params.stop = {"\n\n"};
      if (n % 3 == 1) r.params.stop = {"self", ")"};
      reqs.push_back(std::move(r));
    }
  const auto plain = run(reqs, nullptr);
  run_totals t;
  const auto spec = run(reqs, std::make_unique<test_proposer>(false, 0.0, 2), &t, false, 8);
  expect_same(spec, plain);
  for (const request& r : reqs) {
    const outcome& o = spec.at(r.id);
    EXPECT_LE(o.use.completion_tokens, r.params.max_tokens) << r.id;
    EXPECT_EQ(o.use.completion_tokens, static_cast<int32_t>(o.tokens.size())) << r.id;
  }
  int stopped = 0;
  for (const auto& [id, o] : plain) stopped += o.finish == "stop";
  EXPECT_GT(stopped, 0) << "some stop string matched";
  EXPECT_GT(t.accepted, 0);
  EXPECT_FALSE(t.leaked);
}

TEST_F(ngram_engine, prefix_cache_hits_give_the_tokens_a_cold_run_gives) {
  const std::string shared = texts()[0] + texts()[2] + "\n\n";
  std::vector<request> first, second;
  for (int i = 0; i < 6; ++i) {
    request r;
    r.id = "s" + std::to_string(i);
    r.prompt = encode(shared + texts()[static_cast<size_t>(i) + 1]);
    r.params.temperature = 0;
    r.params.max_tokens = 48;
    (i < 2 ? first : second).push_back(std::move(r));
  }
  std::vector<request> all = first;
  all.insert(all.end(), second.begin(), second.end());
  const auto cold = run(all, nullptr);
  run_totals t;
  const auto warm = run(first, std::make_unique<test_proposer>(false, 0.0, 3), &t, true, 4, second);
  expect_same(warm, cold);
  for (const request& r : second) EXPECT_GT(warm.at(r.id).use.cached_tokens, 0) << r.id << " hit the prefix cache";
  EXPECT_GT(t.accepted, 0);
  EXPECT_FALSE(t.leaked);
}

TEST_F(ngram_engine, rolled_back_drafts_leak_no_block_under_preemption_and_aborts) {
  for (unsigned seed = 0; seed < 2; ++seed) {
    auto ex = make_executor(24);  // 384 tokens: preemption under load
    ASSERT_TRUE(ex);
    engine_config c;
    c.max_batch_size = 6;
    c.max_num_tokens = 96;
    c.max_draft_len = 6;
    c.model_identity = "troupe-py-7m";
    auto e = engine::create(c, model_info_of(*ex, bundle_->tok.get()), bundle_->tok.get(),
                            std::make_unique<test_proposer>(false, 0.3, seed));
    ASSERT_TRUE(e.ok()) << e.message();
    std::mt19937 rng(seed);
    const auto t = texts();
    std::set<uint64_t> replay;
    std::set<std::string> accepted, ended;
    int id = 0, preempted = 0;
    for (int step = 0; step < 3000 && (step < 120 || (*e)->has_work()); ++step) {
      if (step < 120 && rng() % 2 == 0) {
        request r;
        r.id = "q" + std::to_string(id++);
        r.prompt = encode(t[rng() % t.size()]);
        r.params.max_tokens = 1 + static_cast<int32_t>(rng() % 100);
        r.params.temperature = rng() % 2 ? 0.0f : 0.8f;
        r.params.seed = rng();
        if ((*e)->add_request(r).ok()) accepted.insert(r.id);
      }
      if (step % 23 == 7 && id > 0) {
        const std::string victim = "q" + std::to_string(rng() % static_cast<unsigned>(id));
        if ((*e)->abort(victim)) ended.insert(victim);
      }
      // schedule, forward, complete with no measured forward time: the hybrid prefill cap then
      // does not follow this machine's load, so the run (and its preemptions) is the same on
      // every run (engine::step would feed it wall times).
      step_plan plan = (*e)->schedule();
      preempted += plan.stats.n_preempted;
      std::vector<float> logits;
      if (!plan.empty()) {
        ASSERT_TRUE(ex->forward(plan.batch, logits).ok());
      }
      const step_output so = (*e)->complete(std::move(plan), logits, -1);
      for (const request_output& o : so.outputs) {
        if (o.finished) {
          EXPECT_TRUE(ended.insert(o.id).second) << o.id << " ended twice";
        }
      }
      for (const kv_event& ev : (*e)->drain_kv_events()) {
        if (ev.type == kv_event::kind::block_stored) replay.insert(ev.block_hashes.begin(), ev.block_hashes.end());
        if (ev.type == kv_event::kind::block_removed)
          for (uint64_t x : ev.block_hashes) replay.erase(x);
        if (ev.type == kv_event::kind::all_blocks_cleared) replay.clear();
      }
      ASSERT_EQ(std::vector<uint64_t>(replay.begin(), replay.end()), (*e)->cached_block_hashes()) << "seed " << seed;
    }
    EXPECT_FALSE((*e)->has_work()) << "seed " << seed;
    EXPECT_EQ(ended, accepted) << "seed " << seed << ": every accepted request ends";
    EXPECT_EQ((*e)->kv_blocks_free(), (*e)->kv_blocks_total()) << "seed " << seed << ": no block leaked";
    EXPECT_GT(preempted, 0) << "seed " << seed << ": the cache was under pressure";
  }
}

}  // namespace
}  // namespace troupe
