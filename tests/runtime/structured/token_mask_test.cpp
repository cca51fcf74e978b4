// Proves the token mask over real vocabularies (Qwen3's 151k byte-level BPE, Llama 2's
// SentencePiece, the shipped model's): the sorted-prefix walk gives exactly the tokens a
// one-by-one check allows, a cached mask equals a cold one, sampling through masks always
// ends in a complete match, and the constraint's drafts and rollbacks leave no trace.
#include "runtime/structured/token_mask.hpp"

#include <random>

#include <gtest/gtest.h>

#include "runtime/structured/constraint_spec.hpp"
#include "runtime/structured/json_schema.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/test_data.hpp"

namespace troupe::structured {
namespace {

using ojson = nlohmann::ordered_json;

std::shared_ptr<const vocab_index> vocab_of(const std::string& dir) {
  static std::map<std::string, std::shared_ptr<const vocab_index>> cache;
  if (auto it = cache.find(dir); it != cache.end()) return it->second;
  auto tok = tokenizer::from_hf_files(dir + "/tokenizer.json", dir + "/tokenizer_config.json");
  EXPECT_TRUE(tok.ok()) << (tok.ok() ? "" : tok.message());
  if (!tok.ok()) return nullptr;
  auto v = vocab_index::of(*tok, tok->stop_ids(), tok->n_vocab());
  cache[dir] = v;
  return v;
}

std::vector<std::string> vocab_dirs() {
  return {testing::test_data_dir() + "/hf/qwen3", testing::test_data_dir() + "/hf/llama2",
          testing::source_dir() + "/models/troupe-py-7m"};
}

const char* k_schema = R"({"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "tags": {"type": "array", "items": {"enum": ["a", "bb", "ccc"]}, "maxItems": 3},
    "ok": {"type": "boolean"}}, "required": ["name", "age"], "additionalProperties": false})";

bool bit(std::span<const uint64_t> bits, token_id t) { return (bits[static_cast<size_t>(t) >> 6] >> (t & 63)) & 1; }

// Samples a token uniformly among those the mask allows; when wrapping up, it ends where it
// may and otherwise mostly closes what is open (a uniform pick over 151k tokens rarely
// closes a string).
token_id pick(std::span<const uint64_t> bits, const vocab_index& v, std::mt19937& rng, bool wrap_up) {
  std::vector<token_id> allowed, closing;
  for (token_id t = 0; t < v.n_rows(); ++t)
    if (bit(bits, t)) {
      allowed.push_back(t);
      const std::string_view b = v.bytes_of(t);
      if (!b.empty() && b.find_first_not_of("\"}]") == std::string_view::npos) closing.push_back(t);
    }
  if (allowed.empty()) return -1;
  if (wrap_up) {
    for (token_id t : allowed)
      if (v.is_end(t)) return t;
    if (!closing.empty() && rng() % 4 != 0)
      return closing[std::uniform_int_distribution<size_t>(0, closing.size() - 1)(rng)];
  }
  return allowed[std::uniform_int_distribution<size_t>(0, allowed.size() - 1)(rng)];
}

TEST(token_mask, the_prefix_walk_equals_checking_every_token) {
  for (const auto& dir : vocab_dirs()) {
    auto v = vocab_of(dir);
    ASSERT_TRUE(v);
    auto g = compile_json_schema(ojson::parse(k_schema));
    ASSERT_TRUE(g.ok()) << g.message();
    auto cg = std::make_shared<compiled_grammar>(std::move(g).value(), v);
    std::mt19937 rng(7);
    grammar_constraint c(cg);
    for (int step = 0; step < 40 && !c.finished(); ++step) {
      const std::vector<uint64_t> bits(c.mask().begin(), c.mask().end());
      size_t n_allowed = 0;
      // Every 97th token, and every allowed one, against the one-token check.
      for (token_id t = 0; t < v->n_rows(); ++t) {
        const bool b = bit(bits, t);
        n_allowed += b;
        if (b || t % 97 == 0) {
          ASSERT_EQ(b, c.allows(t)) << dir << " step " << step << " token " << t;
        }
      }
      ASSERT_GT(n_allowed, 0u) << dir << " step " << step;
      const token_id t = pick(bits, *v, rng, step > 30);
      ASSERT_TRUE(c.accept(t));
    }
  }
}

TEST(token_mask, sampling_through_masks_always_completes_the_grammar) {
  auto v = vocab_of(testing::test_data_dir() + "/hf/qwen3");
  ASSERT_TRUE(v);
  constraint_factory f(v);
  std::mt19937 rng(11);
  for (int run = 0; run < 20; ++run) {
    auto c = f.make(json_schema_spec(ojson::parse(k_schema)));
    ASSERT_TRUE(c.ok());
    auto* gc = static_cast<grammar_constraint*>(c->get());
    std::string text;
    int steps = 0;
    while (!gc->finished() && steps < 400) {
      const std::vector<uint64_t> bits(gc->mask().begin(), gc->mask().end());
      const token_id t = pick(bits, *v, rng, steps > 60);
      ASSERT_GE(t, 0) << "no token allowed after " << text;
      ASSERT_TRUE(gc->accept(t));
      if (!v->is_end(t)) text += v->bytes_of(t);
      ++steps;
    }
    ASSERT_TRUE(gc->finished()) << text;
    const ojson j = ojson::parse(text, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << text;
    EXPECT_TRUE(j.contains("name") && j.contains("age")) << text;
  }
  // The runs shared one compiled grammar, so most masks came from its cache.
  EXPECT_LT(f.stats().computed * 2, f.stats().masks);
}

TEST(token_mask, masks_allow_end_tokens_only_where_the_output_may_end) {
  auto v = vocab_of(testing::source_dir() + "/models/troupe-py-7m");
  ASSERT_TRUE(v);
  ASSERT_FALSE(v->end_ids().empty());
  const token_id eos = v->end_ids()[0];
  constraint_factory f(v);
  auto c = f.make(json_schema_spec(ojson::parse(R"({"type": "integer", "minimum": 0, "maximum": 99})")));
  ASSERT_TRUE(c.ok());
  token_constraint& k = **c;
  EXPECT_FALSE(k.allows(eos));
  std::vector<float> logits(static_cast<size_t>(v->n_rows()), 0.0f);
  k.mask_logits(logits);
  EXPECT_TRUE(std::isinf(logits[static_cast<size_t>(eos)]));
  // Feed "4" and "2" as whatever tokens the vocabulary has for them.
  auto tok = tokenizer::from_hf_files(testing::source_dir() + "/models/troupe-py-7m/tokenizer.json", "");
  ASSERT_TRUE(tok.ok());
  for (token_id t : tok->encode("42", false, false)) ASSERT_TRUE(k.accept(t));
  EXPECT_TRUE(k.allows(eos));
  // No third digit fits under 99: the end is the only way on.
  for (token_id t : tok->encode("0", false, false)) EXPECT_FALSE(k.allows(t));
  std::vector<float> after(static_cast<size_t>(v->n_rows()), 0.0f);
  k.mask_logits(after);
  for (size_t t = 0; t < after.size(); ++t) EXPECT_EQ(std::isinf(after[t]), static_cast<token_id>(t) != eos) << t;
  ASSERT_TRUE(k.accept(eos));
  EXPECT_TRUE(k.finished());
}

TEST(token_mask, drafts_and_rollbacks_leave_no_trace) {
  auto v = vocab_of(testing::source_dir() + "/models/troupe-py-7m");
  auto tok = tokenizer::from_hf_files(testing::source_dir() + "/models/troupe-py-7m/tokenizer.json", "");
  ASSERT_TRUE(tok.ok() && v);
  constraint_factory f(v);
  auto c = f.make(json_schema_spec(ojson::parse(R"({"type": "object", "properties": {"a": {"type": "string"}},
                                                  "required": ["a"], "additionalProperties": false})")));
  ASSERT_TRUE(c.ok());
  token_constraint& k = **c;
  const std::vector<token_id> good = tok->encode(R"({"a": "xy"})", false, false);
  std::vector<token_id> draft = tok->encode(R"({"a": 1})", false, false);
  const size_t n_ok = k.allowed_prefix(draft);
  // The draft is fine up to the value; the mask afterwards is the mask before.
  EXPECT_LT(n_ok, draft.size());
  EXPECT_EQ(k.allowed_prefix(good), good.size());
  std::vector<float> before(static_cast<size_t>(v->n_rows()), 0.0f), after = before;
  k.mask_logits(before);
  ASSERT_TRUE(k.accept(good[0]));
  ASSERT_TRUE(k.accept(good[1]));
  k.rollback(2);
  k.mask_logits(after);
  EXPECT_EQ(before, after);
  for (token_id t : good) ASSERT_TRUE(k.accept(t));
  EXPECT_TRUE(k.finished());
  EXPECT_FALSE(k.accept(good[0]));
}

TEST(token_mask, tool_calls_spec_makes_well_formed_calls) {
  auto v = vocab_of(testing::test_data_dir() + "/hf/qwen3");
  ASSERT_TRUE(v);
  const ojson tools = ojson::parse(R"([{"name": "get_weather", "parameters": {"type": "object",
      "properties": {"city": {"type": "string"}}, "required": ["city"]}}, {"name": "now"}])");
  constraint_factory f(v);
  std::mt19937 rng(3);
  for (bool parallel : {false, true})
    for (int run = 0; run < 5; ++run) {
      auto c = f.make(tool_calls_spec(tools, parallel));
      ASSERT_TRUE(c.ok()) << c.message();
      auto* gc = static_cast<grammar_constraint*>(c->get());
      std::string text;
      for (int steps = 0; !gc->finished() && steps < 300; ++steps) {
        const std::vector<uint64_t> bits(gc->mask().begin(), gc->mask().end());
        const token_id t = pick(bits, *v, rng, steps > 40);
        ASSERT_TRUE(gc->accept(t));
        if (!v->is_end(t)) text += v->bytes_of(t);
      }
      const ojson j = ojson::parse(text, nullptr, false);
      ASSERT_TRUE(j.is_array() && !j.empty()) << text;
      if (!parallel) {
        EXPECT_EQ(j.size(), 1u);
      }
      for (const auto& call : j) {
        ASSERT_TRUE(call["name"] == "get_weather" || call["name"] == "now") << text;
        ASSERT_TRUE(call["parameters"].is_object()) << text;
        if (call["name"] == "get_weather") {
          EXPECT_TRUE(call["parameters"]["city"].is_string()) << text;
        }
      }
    }
}

}  // namespace
}  // namespace troupe::structured
