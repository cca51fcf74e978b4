// Proves MTP speculative decoding in the engine on the project's own model (models/troupe-py-7m
// carries its trained MTP layer as model.layers.6.*), on the f32 path (EXACT): the drafts equal
// PyTorch's (scripts/torch_reference.py recorded them in reference_greedy.json, an independent
// implementation of the module), batched; greedy output with MTP drafts is plain greedy decoding
// token for token, with speculating sequences batched beside plain ones, with prefix-cache hits
// and under preemption; every KV block of the target and of the MTP layer is free afterwards; a
// model without MTP layers, or too many asked, is refused naming the field.
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/spec/mtp_proposer.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/runtime/shipped_model_fixture.hpp"

namespace troupe {
namespace {

struct outcome {
  std::vector<token_id> tokens;
  std::string finish;
};

struct run_totals {
  int64_t drafted = 0, accepted = 0;
  int mixed_steps = 0;  // steps with a verification beside a plain decode or a prefill
  int preempted = 0;
  bool target_leaked = false;
  int32_t mtp_blocks_after = -1;
  size_t mtp_tracked_after = 0;
};

// The MTP drafter, drafting for ids that start with 's' only (the others decode plainly) when
// only_s; it keeps every sequence's MTP KV in step either way.
class only_s_proposer final : public proposer {
 public:
  only_s_proposer(std::unique_ptr<mtp_proposer> p, bool only_s,
                  std::map<std::pair<std::string, int32_t>, std::vector<token_id>>* log = nullptr)
      : inner_(std::move(p)), only_s_(only_s), log_(log) {}
  draft propose(const sequence& s, int32_t max_tokens) override {
    if (only_s_ && s.id[0] != 's') return {};
    draft d = inner_->propose(s, max_tokens);
    if (log_) (*log_)[{s.id, s.size()}] = d.tokens;
    return d;
  }
  void forget(const sequence& s) override { inner_->forget(s); }
  const char* name() const override { return "MTP"; }
  bool wants_hidden() const override { return true; }
  void observe(std::span<const kept_rows> rows, size_t H) override { inner_->observe(rows, H); }
  const mtp_proposer& inner() const { return *inner_; }

 private:
  std::unique_ptr<mtp_proposer> inner_;
  bool only_s_;
  std::map<std::pair<std::string, int32_t>, std::vector<token_id>>* log_;
};

class mtp_engine : public testing::shipped_model_fixture {
 protected:
  static std::vector<token_id> encode(const std::string& text) { return bundle_->tok->encode(text, true, false); }

  static std::unique_ptr<mtp_proposer> make_mtp(int32_t k) {
    mtp_options o;
    o.draft_len = k;
    o.n_threads = 2;
    o.n_blocks = 600;
    auto p = mtp_proposer::create(bundle_->weights, o);
    EXPECT_TRUE(p.ok()) << p.message();
    return p.ok() ? std::move(*p) : nullptr;
  }

  static std::vector<std::string> texts() {
    return {"import os\nimport sys\n\n\ndef main(argv):\n    for name in argv:\n        path = os.path.join(",
            "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        self.items",
            "for i in range(10):\n    print(i)\nfor i in range(10):\n    print(",
            "def parse(line):\n    \"\"\"Split a line into fields.\"\"\"\n    fields = line.split(",
            "x = 1\ny = 2\nz = x + y\n",
            "try:\n    import json\nexcept ImportError:\n    json = None\n\n\ndef load(path):\n    with open("};
  }

  static std::vector<request> requests(int max_tokens, bool mixed) {
    std::vector<request> reqs;
    int i = 0;
    for (const std::string& t : texts()) {
      request r;
      r.id = (mixed && i % 2 ? "p" : "s") + std::to_string(i);
      r.prompt = encode(t);
      r.params.temperature = 0;
      r.params.max_tokens = max_tokens + i;
      r.params.ignore_eos = true;
      reqs.push_back(std::move(r));
      ++i;
    }
    return reqs;
  }

  // Runs every request in one engine (waves one after the other; drafts from prop when given).
  std::map<std::string, outcome> run(const std::vector<std::vector<request>>& waves, std::unique_ptr<proposer> prop,
                                     run_totals* totals = nullptr, bool prefix_cache = false, int32_t max_draft_len = 3,
                                     int32_t n_blocks = 512) {
    auto ex = make_executor(n_blocks);
    std::map<std::string, outcome> out;
    if (!ex) return out;
    const proposer* raw = prop.get();
    engine_config c;
    c.prefix_cache = prefix_cache;
    c.max_draft_len = max_draft_len;
    c.model_identity = "troupe-py-7m";
    auto e = engine::create(c, model_info_of(*ex, bundle_->tok.get()), bundle_->tok.get(), std::move(prop));
    EXPECT_TRUE(e.ok()) << e.message();
    if (!e.ok()) return out;
    for (const auto& wave : waves) {
      for (const request& r : wave) EXPECT_TRUE((*e)->add_request(r).ok()) << r.id;
      while ((*e)->has_work()) {
        step_plan plan = (*e)->schedule();
        bool verify = false, other = false;
        for (const scheduled_seq& s : plan.seqs) (s.phase == seq_phase::verify ? verify : other) = true;
        if (totals && verify && other) ++totals->mixed_steps;
        if (totals) totals->preempted += plan.stats.n_preempted;
        std::vector<float> logits, hidden;
        if (!plan.empty()) {
          EXPECT_TRUE(ex->forward_hidden(plan.batch, logits, hidden).ok());
        }
        step_output so = (*e)->complete(std::move(plan), logits, -1, hidden);
        for (const request_output& o : so.outputs) {
          outcome& x = out[o.id];
          x.tokens.insert(x.tokens.end(), o.tokens.begin(), o.tokens.end());
          if (o.finished) x.finish = finish_reason_name(*o.finished);
          if (totals) {
            totals->drafted += o.n_drafted;
            totals->accepted += o.n_draft_accepted;
          }
        }
      }
    }
    if (totals) {
      (*e)->drain_kv_events();
      // Blocks the prefix cache keeps are free to take: every block is free when idle.
      totals->target_leaked = (*e)->kv_blocks_free() != (*e)->kv_blocks_total();
      if (const auto* p = dynamic_cast<const only_s_proposer*>(raw)) {
        totals->mtp_blocks_after = p->inner().kv_blocks_used();
        totals->mtp_tracked_after = p->inner().n_tracked();
      }
    }
    return out;
  }
};

// The first 4 drafts after the prompt and the target's first token, for the 4 held-out prompts
// of reference_greedy.json, all in one batch: PyTorch's MTP chain (scripts/torch_reference.py).
TEST_F(mtp_engine, drafts_equal_pytorch) {
  std::ifstream in(testing::source_dir() + "/models/troupe-py-7m/reference_greedy.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json ref = nlohmann::json::parse(in);
  const auto& cases = ref["cases"];
  ASSERT_GE(cases.size(), 3u);
  auto ex = make_executor();
  ASSERT_TRUE(ex);
  engine_config c;
  c.max_draft_len = 4;
  auto e = engine::create(c, model_info_of(*ex, bundle_->tok.get()), bundle_->tok.get(), make_mtp(4));
  ASSERT_TRUE(e.ok()) << e.message();
  for (size_t i = 0; i < cases.size(); ++i) {
    request r;
    r.id = std::to_string(i);
    r.prompt = cases[i]["prompt_ids"].get<std::vector<token_id>>();
    r.params.temperature = 0;
    r.params.max_tokens = 16;
    ASSERT_TRUE((*e)->add_request(std::move(r)).ok());
  }
  // Step 1: every prompt prefilled, the first token sampled, the MTP layer filled and drafting.
  auto first = (*e)->step(*ex);
  ASSERT_TRUE(first.ok()) << first.message();
  ASSERT_EQ(first->outputs.size(), cases.size());
  for (const request_output& o : first->outputs)
    EXPECT_EQ(o.tokens.at(0), cases[std::stoul(o.id)]["greedy_ids"][0].get<token_id>()) << "case " << o.id;
  // Step 2 verifies those drafts: the plan carries them.
  step_plan plan = (*e)->schedule();
  ASSERT_EQ(plan.seqs.size(), cases.size());
  for (size_t i = 0; i < plan.seqs.size(); ++i) {
    EXPECT_EQ(plan.seqs[i].phase, seq_phase::verify) << "case " << i;
    EXPECT_EQ(plan.seqs[i].drafted.tokens,
              cases[i]["drafts_after_first_token"]["mtp"].get<std::vector<token_id>>())
        << "case " << i;
  }
}

TEST_F(mtp_engine, greedy_equals_plain_batched_with_plain_sequences) {
  const auto reqs = requests(40, /*mixed=*/true);
  const auto plain = run({reqs}, nullptr);
  run_totals t;
  const auto spec = run({reqs}, std::make_unique<only_s_proposer>(make_mtp(3), true), &t);
  ASSERT_EQ(plain.size(), reqs.size());
  for (const request& r : reqs) {
    EXPECT_EQ(spec.at(r.id).tokens, plain.at(r.id).tokens) << r.id;
    EXPECT_EQ(spec.at(r.id).finish, "length") << r.id;
    EXPECT_EQ(spec.at(r.id).tokens.size(), static_cast<size_t>(r.params.max_tokens)) << r.id;
  }
  EXPECT_GT(t.drafted, 0);
  EXPECT_GT(t.accepted, 0) << "the MTP layer agrees with the target about half the time";
  EXPECT_GT(t.mixed_steps, 0) << "verifications rode beside plain decodes";
  EXPECT_FALSE(t.target_leaked);
  EXPECT_EQ(t.mtp_blocks_after, 0) << "the MTP layer's KV blocks are all freed";
  EXPECT_EQ(t.mtp_tracked_after, 0u);
}

// Batching changes no draft: each sequence's drafts at each length, batched with the others,
// are the drafts it gets alone (f32 path); and every verification had a draft to verify.
TEST_F(mtp_engine, batched_drafts_equal_drafts_alone) {
  const auto reqs = requests(32, false);
  std::map<std::pair<std::string, int32_t>, std::vector<token_id>> batched, alone;
  run({reqs}, std::make_unique<only_s_proposer>(make_mtp(3), false, &batched));
  for (const request& r : reqs) run({{r}}, std::make_unique<only_s_proposer>(make_mtp(3), false, &alone));
  EXPECT_EQ(batched.size(), alone.size());
  for (const auto& [key, d] : alone) {
    ASSERT_TRUE(batched.count(key)) << key.first << " at " << key.second;
    EXPECT_EQ(batched.at(key), d) << key.first << " at " << key.second;
    EXPECT_GE(d.size(), 1u) << key.first << " at " << key.second;  // fewer only near max_tokens
  }
}

TEST_F(mtp_engine, greedy_equals_plain_at_draft_lengths_with_prefix_cache_hits) {
  const auto reqs = requests(24, false);
  // The second wave repeats the prompts: prefix-cache hits, whose cached positions the MTP layer
  // never saw (it starts those sequences' entries at the first computed position).
  std::vector<request> again = reqs;
  for (request& r : again) r.id = "s-again-" + r.id;
  const auto plain = run({reqs, again}, nullptr, nullptr, true);
  for (int32_t k : {1, 2, 4}) {
    run_totals t;
    const auto spec = run({reqs, again}, std::make_unique<only_s_proposer>(make_mtp(k), false), &t, true, k);
    for (const auto& [id, o] : plain) EXPECT_EQ(spec.at(id).tokens, o.tokens) << id << " k=" << k;
    EXPECT_GT(t.accepted, 0) << "k=" << k;
    EXPECT_FALSE(t.target_leaked) << "k=" << k;
    EXPECT_EQ(t.mtp_blocks_after, 0) << "k=" << k;
  }
}

TEST_F(mtp_engine, greedy_equals_plain_under_preemption) {
  const auto reqs = requests(60, false);
  const auto plain = run({reqs}, nullptr, nullptr, false, 3, 512);
  run_totals t;
  // 20 blocks of 16 tokens for 6 sequences of ~90 tokens: some are preempted and recomputed.
  const auto spec = run({reqs}, std::make_unique<only_s_proposer>(make_mtp(3), false), &t, false, 3, 20);
  for (const auto& [id, o] : plain) EXPECT_EQ(spec.at(id).tokens, o.tokens) << id;
  EXPECT_GT(t.preempted, 0);
  EXPECT_FALSE(t.target_leaked);
  EXPECT_EQ(t.mtp_blocks_after, 0);
}

TEST_F(mtp_engine, refused_without_mtp_layers_naming_the_field) {
  engine_spec s;
  s.decoding_type = "MTP";
  s.num_nextn_predict_layers = 2;
  auto two = make_proposer(s, nullptr, nullptr, bundle_->weights);
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.message().find("llm_config.speculative_config.num_nextn_predict_layers: 2 asked, but the model"),
            std::string::npos)
      << two.message();
  EXPECT_NE(two.message().find("has 1 MTP layer"), std::string::npos) << two.message();

  s.num_nextn_predict_layers = 1;
  for (const char* other : {"troupe-py-draft", "troupe-py-7m.gguf"}) {
    auto m = load_model(testing::source_dir() + "/models/" + other);
    ASSERT_TRUE(m.ok()) << m.message();
    auto p = make_proposer(s, nullptr, nullptr, m->weights);
    ASSERT_FALSE(p.ok()) << other;
    EXPECT_NE(p.message().find("llm_config.speculative_config.num_nextn_predict_layers"), std::string::npos)
        << p.message();
    EXPECT_NE(p.message().find("has no MTP layers"), std::string::npos) << p.message();
  }
  auto ok = make_proposer(s, nullptr, nullptr, bundle_->weights);
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_STREQ((*ok)->name(), "MTP");
}

// The target's own forward ignores the MTP layer: its parameters and description are the six
// decoder layers', and the layer is bound for the drafter.
TEST_F(mtp_engine, checkpoint_keeps_the_mtp_layer_apart) {
  const checkpoint& c = *bundle_->weights;
  EXPECT_EQ(c.config().n_layer, 6);
  EXPECT_EQ(c.config().n_nextn_layers, 1);
  EXPECT_EQ(c.weights().layers.size(), 6u);
  ASSERT_EQ(c.weights().mtp.size(), 1u);
  EXPECT_EQ(c.weights().mtp[0].eh_proj.shape, (std::vector<int64_t>{256, 512}));
  EXPECT_NE(c.describe().find("6.6 M parameters"), std::string::npos) << c.describe();
}

}  // namespace
}  // namespace troupe
