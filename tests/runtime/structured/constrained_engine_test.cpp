// Proves constrained decoding in the engine on the project's own model (models/troupe-py-7m):
// for every schema of data/schemas.json, greedy and seeded sampled outputs are complete JSON,
// the same whether the requests run together in one batch or one at a time, and they are
// written to structured_outputs.jsonl for structured_validate, which checks each against its
// schema with Python's jsonschema (an independent validator); and with speculative decoding
// (drafts from the plain run, corrupted ones, random ones) the constrained greedy outputs are
// the plain constrained ones, token for token.
#include <fstream>
#include <map>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/cpu_executor.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/structured/constraint_spec.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/runtime/shipped_model_fixture.hpp"
#include "tests/test_data.hpp"

namespace troupe {
namespace {

using ojson = nlohmann::ordered_json;

struct run_spec {
  std::string id;
  std::string schema_name;
  std::string spec;
  float temperature = 0;
  uint64_t seed = 0;
  std::vector<token_id> prompt;
};

struct outcome {
  std::string text;
  std::vector<token_id> tokens;
  std::string finish;
};

class constrained_engine : public testing::shipped_model_fixture {
 protected:
  // Runs the requests in one engine, all at once; a constraint per request from one factory.
  std::map<std::string, outcome> run(const std::vector<run_spec>& runs, int32_t max_tokens,
                                     std::unique_ptr<proposer> prop = nullptr, int64_t* drafted = nullptr) {
    auto ex = make_executor();
    std::map<std::string, outcome> out;
    if (!ex) return out;
    const engine_model_info info = model_info_of(*ex, bundle_->tok.get());
    structured::constraint_factory f(structured::vocab_index::of(*bundle_->tok, info.eos_ids, info.n_vocab));
    engine_config c;
    c.max_draft_len = prop ? 4 : 0;
    auto e = engine::create(c, info, bundle_->tok.get(), std::move(prop));
    EXPECT_TRUE(e.ok());
    for (const auto& r : runs) {
      request q;
      q.id = r.id;
      q.prompt = r.prompt;
      q.params.temperature = r.temperature;
      q.params.seed = r.seed;
      q.params.max_tokens = max_tokens;
      auto k = f.make(r.spec);
      EXPECT_TRUE(k.ok()) << r.schema_name << ": " << (k.ok() ? "" : k.message());
      if (!k.ok()) continue;
      q.constraint = *k;
      EXPECT_TRUE((*e)->add_request(std::move(q)).ok());
    }
    while ((*e)->has_work()) {
      auto step = (*e)->step(*ex);
      EXPECT_TRUE(step.ok());
      if (!step.ok()) break;
      if (drafted) *drafted += step->stats.n_draft_tokens;
      for (const auto& o : step->outputs) {
        outcome& x = out[o.id];
        x.text += o.text;
        x.tokens.insert(x.tokens.end(), o.tokens.begin(), o.tokens.end());
        if (o.finished) x.finish = finish_reason_name(*o.finished);
      }
    }
    return out;
  }
};

TEST_F(constrained_engine, every_schema_gives_complete_json_batched_as_alone) {
  std::ifstream in(testing::source_dir() + "/tests/runtime/structured/data/schemas.json");
  ASSERT_TRUE(in.good());
  const ojson schemas = ojson::parse(in);
  std::vector<run_spec> runs;
  for (const auto& s : schemas) {
    const std::string name = s["name"].get<std::string>();
    const std::string prompt = "# " + name + " as JSON\ndata = ";
    for (int k = 0; k < 3; ++k) {
      run_spec r;
      r.schema_name = name;
      r.id = name + "/" + std::to_string(k);
      r.spec = structured::json_schema_spec(s["schema"]);
      r.temperature = k == 0 ? 0.0f : 1.0f;
      r.seed = 1000 + static_cast<uint64_t>(k);
      r.prompt = bundle_->tok->encode(prompt, true, false);
      runs.push_back(r);
    }
  }
  const int32_t max_tokens = 400;
  const auto together = run(runs, max_tokens);
  std::ofstream log(testing::build_dir() + "/structured_outputs.jsonl");
  size_t n_finished = 0;
  for (const auto& r : runs) {
    auto it = together.find(r.id);
    ASSERT_NE(it, together.end()) << r.id;
    const outcome& o = it->second;
    const ojson j = ojson::parse(o.text, nullptr, false);
    if (o.finish == "stop") {
      ++n_finished;
      EXPECT_FALSE(j.is_discarded()) << r.id << ": " << o.text;
    }
    log << ojson{{"schema", r.schema_name}, {"id", r.id}, {"temperature", r.temperature}, {"finish", o.finish},
                 {"text", o.text}}.dump() << "\n";
  }
  // Sampling at temperature 1 from a 7M code model may write strings until max_tokens; greedy
  // ones and most sampled ones end.
  EXPECT_GE(n_finished * 10, runs.size() * 8) << n_finished << " of " << runs.size() << " ended";
  // Alone, each gives the same tokens as in the batch (the mask and the seed are per sequence).
  for (size_t i = 0; i < runs.size(); i += 4) {
    const auto alone = run({runs[i]}, max_tokens);
    EXPECT_EQ(alone.at(runs[i].id).tokens, together.at(runs[i].id).tokens) << runs[i].id;
  }
}

// Drafts from a known continuation, some corrupted, or random tokens.
class replay_proposer final : public proposer {
 public:
  enum class mode { oracle, corrupted, random };
  replay_proposer(mode m, std::map<std::string, std::vector<token_id>> want) : mode_(m), want_(std::move(want)) {}
  draft propose(const sequence& s, int32_t max_tokens) override {
    draft d;
    const auto& w = want_[s.id];
    for (int32_t i = 0; i < max_tokens; ++i) {
      const auto at = static_cast<size_t>(s.completion() + i);
      token_id t = mode_ == mode::random || at >= w.size() ? std::uniform_int_distribution<token_id>(0, 8000)(rng_) : w[at];
      if (mode_ == mode::corrupted && rng_() % 3 == 0) t = (t + 1) % 8000;
      d.tokens.push_back(t);
    }
    return d;
  }
  const char* name() const override { return "replay"; }

 private:
  mode mode_;
  std::map<std::string, std::vector<token_id>> want_;
  std::mt19937 rng_{5};
};

TEST_F(constrained_engine, speculative_decoding_under_a_constraint_equals_plain) {
  std::ifstream in(testing::source_dir() + "/tests/runtime/structured/data/schemas.json");
  const ojson schemas = ojson::parse(in);
  std::vector<run_spec> runs;
  for (const auto& s : schemas) {
    run_spec r;
    r.id = s["name"].get<std::string>();
    r.spec = structured::json_schema_spec(s["schema"]);
    r.prompt = bundle_->tok->encode("data = ", true, false);
    runs.push_back(r);
  }
  const auto plain = run(runs, 120);
  std::map<std::string, std::vector<token_id>> want;
  for (const auto& [id, o] : plain) want[id] = o.tokens;
  for (auto m : {replay_proposer::mode::oracle, replay_proposer::mode::corrupted, replay_proposer::mode::random}) {
    int64_t drafted = 0;
    const auto spec = run(runs, 120, std::make_unique<replay_proposer>(m, want), &drafted);
    for (const auto& r : runs) EXPECT_EQ(spec.at(r.id).tokens, want[r.id]) << r.id << " mode " << static_cast<int>(m);
    // Oracle drafts are all allowed; random ones are mostly trimmed by the grammar before
    // verification.
    if (m == replay_proposer::mode::oracle) {
      EXPECT_GT(drafted, 0);
    }
  }
}

TEST_F(constrained_engine, a_finished_grammar_ends_the_sequence_without_an_end_token) {
  run_spec r;
  r.id = "x";
  r.spec = structured::json_schema_spec(ojson::parse(R"({"enum": ["yes", "no"]})"));
  r.prompt = bundle_->tok->encode("answer = ", true, false);
  const auto out = run({r}, 50);
  ASSERT_EQ(out.count("x"), 1u);
  EXPECT_EQ(out.at("x").finish, "stop");
  EXPECT_TRUE(out.at("x").text == "\"yes\"" || out.at("x").text == "\"no\"") << out.at("x").text;
}

}  // namespace
}  // namespace troupe
