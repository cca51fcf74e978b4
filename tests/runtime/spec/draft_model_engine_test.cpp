// Proves DraftTarget speculative decoding (runtime/spec/draft_model_proposer.hpp) in the engine
// on the project's own models (target models/troupe-py-7m, drafter models/troupe-py-draft), on
// the f32 path (EXACT): greedy output with draft-model drafts is plain greedy decoding token for
// token, with speculating sequences batched beside plain ones, through the engine directly and
// through the factory with the adaptive draft length; every KV block of both caches (the
// target's and the drafter's) is back after; and a missing directory or a draft model whose
// tokenizer differs is refused with a message naming speculative_model_dir.
#include <filesystem>
#include <fstream>
#include <map>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/engine/engine.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/spec/draft_model_proposer.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/runtime/shipped_model_fixture.hpp"

namespace troupe {
namespace {

struct outcome {
  std::vector<token_id> tokens;
  std::string text;
  std::string finish;
};

struct totals {
  int64_t drafted = 0, accepted = 0;
  int mixed_steps = 0;
  bool leaked = false;
};

// The draft model's drafts for ids that start with 's' only (the others decode plainly).
class only_s final : public proposer {
 public:
  explicit only_s(std::unique_ptr<proposer> inner) : inner_(std::move(inner)) {}
  draft propose(const sequence& s, int32_t max_tokens) override {
    return s.id[0] == 's' ? inner_->propose(s, max_tokens) : draft{};
  }
  std::vector<draft> propose_batch(std::span<const sequence* const> seqs, std::span<const int32_t> k) override {
    std::vector<const sequence*> mine;
    std::vector<int32_t> mine_k;
    for (size_t i = 0; i < seqs.size(); ++i)
      if (seqs[i]->id[0] == 's') {
        mine.push_back(seqs[i]);
        mine_k.push_back(k[i]);
      }
    std::vector<draft> got = inner_->propose_batch(mine, mine_k), out(seqs.size());
    for (size_t i = 0, j = 0; i < seqs.size(); ++i)
      if (seqs[i]->id[0] == 's') out[i] = std::move(got[j++]);
    return out;
  }
  void forget(const sequence& s) override { inner_->forget(s); }
  const char* name() const override { return "DraftTarget"; }

 private:
  std::unique_ptr<proposer> inner_;
};

class draft_model_engine : public testing::shipped_model_fixture {
 protected:
  static std::string draft_dir() { return testing::source_dir() + "/models/troupe-py-draft"; }

  static engine_spec draft_spec(const std::string& dir) {
    engine_spec es;
    es.decoding_type = "DraftTarget";
    es.speculative_model_dir = dir;
    es.threads = 2;
    return es;
  }

  static result<std::unique_ptr<proposer>> drafter(const executor& ex, const std::string& dir) {
    const engine_model_info info = model_info_of(ex, bundle_->tok.get());
    return make_proposer(draft_spec(dir), bundle_->tok.get(), &info);
  }

  static std::vector<request> requests(int32_t max_tokens) {
    const std::vector<std::string> texts = {
        "import os\nimport sys\n\n\ndef main(argv):\n    for name in argv:\n        path = os.path.join(",
        "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n        self.items",
        "def parse(line):\n    \"\"\"Split a line into fields.\"\"\"\n    fields = line.split(",
        "for i in range(10):\n    print(i)\nfor i in range(10):\n    print(",
        "try:\n    import json\nexcept ImportError:\n    json = None\n\n\ndef load(path):\n    with open(",
        "x = 1\ny = 2\nz = x + y\n"};
    std::vector<request> out;
    for (size_t i = 0; i < texts.size(); ++i) {
      request r;
      r.id = (i % 3 == 2 ? "p" : "s") + std::to_string(i);
      r.prompt = bundle_->tok->encode(texts[i], true, false);
      r.params.temperature = 0;
      r.params.max_tokens = max_tokens;
      out.push_back(std::move(r));
    }
    return out;
  }

  // Runs every request in one engine with the given drafter (null: plain decoding).
  std::map<std::string, outcome> run(executor& ex, const std::vector<request>& reqs, std::unique_ptr<proposer> prop,
                                     totals* t = nullptr, bool adaptive = false) {
    std::map<std::string, outcome> out;
    const draft_model_proposer* dm = dynamic_cast<const draft_model_proposer*>(prop.get());
    engine_config c;
    c.prefix_cache = false;
    c.max_draft_len = prop ? 4 : 0;
    c.adaptive_draft_len = adaptive;
    c.model_identity = "troupe-py-7m";
    auto e = engine::create(c, model_info_of(ex, bundle_->tok.get()), bundle_->tok.get(), std::move(prop));
    EXPECT_TRUE(e.ok()) << e.message();
    if (!e.ok()) return out;
    for (const request& r : reqs) EXPECT_TRUE((*e)->add_request(r).ok()) << r.id;
    while ((*e)->has_work()) {
      step_plan plan = (*e)->schedule();
      bool verify = false, other = false;
      for (const scheduled_seq& s : plan.seqs) (s.phase == seq_phase::verify ? verify : other) = true;
      if (t && verify && other) ++t->mixed_steps;
      std::vector<float> logits;
      const auto t0 = std::chrono::steady_clock::now();
      if (!plan.empty()) {
        EXPECT_TRUE(ex.forward(plan.batch, logits).ok());
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      step_output so = (*e)->complete(std::move(plan), logits, seconds);
      for (const request_output& o : so.outputs) {
        outcome& x = out[o.id];
        x.tokens.insert(x.tokens.end(), o.tokens.begin(), o.tokens.end());
        x.text += o.text;
        if (o.finished) x.finish = finish_reason_name(*o.finished);
        if (t) {
          t->drafted += o.n_drafted;
          t->accepted += o.n_draft_accepted;
        }
      }
    }
    if (t) {
      t->leaked = (*e)->kv_blocks_free() != (*e)->kv_blocks_total();
      if (dm) t->leaked |= dm->kv_blocks_used() != 0;
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
  }
}

TEST_F(draft_model_engine, greedy_output_is_plain_greedy_decoding_beside_sequences_that_do_not_speculate) {
  auto ex = make_executor();
  ASSERT_TRUE(ex);
  const auto reqs = requests(64);
  const auto plain = run(*ex, reqs, nullptr);
  auto d = drafter(*ex, draft_dir());
  ASSERT_TRUE(d.ok()) << d.message();
  totals t;
  expect_same(run(*ex, reqs, std::make_unique<only_s>(std::move(*d)), &t), plain);
  EXPECT_GT(t.drafted, 0);
  EXPECT_GT(t.accepted, 0) << "the draft model agrees with the target at times";
  EXPECT_GT(t.mixed_steps, 0) << "verifications shared steps with plain decodes";
  EXPECT_FALSE(t.leaked) << "every block of both caches is back";

  // Every sequence drafting, the draft model's blocks checked directly, adaptive length on.
  auto d2 = drafter(*ex, draft_dir());
  ASSERT_TRUE(d2.ok()) << d2.message();
  totals all;
  expect_same(run(*ex, reqs, std::move(*d2), &all, /*adaptive=*/true), plain);
  EXPECT_FALSE(all.leaked);
  EXPECT_GE(all.accepted, 0);
}

TEST_F(draft_model_engine, the_factory_serves_draft_target_with_the_adaptive_length) {
  auto ex = make_executor();
  ASSERT_TRUE(ex);
  const auto reqs = requests(48);
  const auto plain = run(*ex, reqs, nullptr);
  engine_spec es = draft_spec(draft_dir());
  es.spec_draft_length = 0;
  es.prefix_cache = false;
  auto e = make_engine(es, *ex, bundle_->tok.get(), "troupe-py-7m");
  ASSERT_TRUE(e.ok()) << e.message();
  EXPECT_STREQ((*e)->decoding_type(), "DraftTarget");
  EXPECT_TRUE((*e)->config().adaptive_draft_len);
  for (const request& r : reqs) ASSERT_TRUE((*e)->add_request(r).ok());
  std::map<std::string, outcome> got;
  int64_t drafted = 0;
  while ((*e)->has_work()) {
    auto so = (*e)->step(*ex);
    ASSERT_TRUE(so.ok()) << so.message();
    for (const request_output& o : so->outputs) {
      outcome& x = got[o.id];
      x.tokens.insert(x.tokens.end(), o.tokens.begin(), o.tokens.end());
      x.text += o.text;
      if (o.finished) x.finish = finish_reason_name(*o.finished);
      drafted += o.n_drafted;
    }
  }
  expect_same(got, plain);
  EXPECT_GT(drafted, 0);
  EXPECT_EQ((*e)->kv_blocks_free(), (*e)->kv_blocks_total());
}

TEST_F(draft_model_engine, a_missing_directory_or_another_tokenizer_is_refused_naming_the_field) {
  auto ex = make_executor(16);
  ASSERT_TRUE(ex);
  auto missing = drafter(*ex, testing::source_dir() + "/models/no-such-draft");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("speculative_model_dir"), std::string::npos) << missing.message();
  EXPECT_NE(missing.message().find("no such directory"), std::string::npos) << missing.message();

  // The draft model with two vocabulary entries swapped: same sizes, another tokenizer.
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("troupe-draft-other-tok-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json"})
    fs::copy_file(fs::path(draft_dir()) / f, dir / f, fs::copy_options::overwrite_existing);
  nlohmann::json tj = nlohmann::json::parse(std::ifstream(fs::path(draft_dir()) / "tokenizer.json"));
  auto& vocab = tj["model"]["vocab"];
  std::string a, b;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (it.value() == 0) a = it.key();
    if (it.value() == 1) b = it.key();
  }
  vocab[a] = 1;
  vocab[b] = 0;
  std::ofstream(dir / "tokenizer.json") << tj.dump();
  auto other = drafter(*ex, dir.string());
  fs::remove_all(dir);
  ASSERT_FALSE(other.ok());
  EXPECT_NE(other.message().find("speculative_model_dir"), std::string::npos) << other.message();
  EXPECT_NE(other.message().find("tokenizer differs"), std::string::npos) << other.message();
}

}  // namespace
}  // namespace troupe
