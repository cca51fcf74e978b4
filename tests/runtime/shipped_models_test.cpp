// Proves the engine on the project's own trained models (models/, see models/MODEL_CARD.md)
// against PyTorch (scripts/torch_reference.py wrote models/troupe-py-7m/reference_greedy.json):
// the tokenizer gives PyTorch's prompt ids, the logits at the last prompt position match
// PyTorch's fingerprint of them, the engine's greedy continuations of every held-out prompt,
// run together in one batch, equal PyTorch's token for token and as text, and the draft model's
// greedy drafts equal PyTorch's. The target is checked both as Hugging Face safetensors and as
// its GGUF twin (models/troupe-py-7m.gguf).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/test_data.hpp"

namespace troupe {
namespace {

std::string models_dir() { return testing::source_dir() + "/models"; }

nlohmann::json load_reference() {
  const std::string path = models_dir() + "/troupe-py-7m/reference_greedy.json";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path << " is missing (scripts/torch_reference.py writes it)";
  if (!in) return nlohmann::json::object({{"cases", nlohmann::json::array()}});
  return nlohmann::json::parse(in);
}

struct loaded {
  model_bundle bundle;
  std::unique_ptr<executor> ex;
};

loaded load(const std::string& path) {
  loaded l;
  auto b = load_model(path);
  EXPECT_TRUE(b.ok()) << b.message();
  if (!b.ok()) return l;
  l.bundle = std::move(*b);
  EXPECT_TRUE(l.bundle.tok) << path << ": no tokenizer";
  cpu_executor_options o;
  o.n_threads = 2;
  o.kv_block_size = 16;
  o.kv_n_blocks = 256;
  // PyTorch's f32 forward is the reference here: the engine's reference path (the fast path's
  // bf16 rounding may swap near-tied tokens; forward_reference_test bounds it).
  o.precision = cpu::precision::f32;
  auto ex = make_cpu_executor(l.bundle.weights, o);
  EXPECT_TRUE(ex.ok()) << ex.message();
  if (ex.ok()) l.ex = std::move(*ex);
  return l;
}

struct generated {
  std::vector<token_id> tokens;
  std::string text;
};

// Greedy continuations of every prompt, all in one engine (so they batch together).
std::map<std::string, generated> greedy_all(loaded& m, const std::vector<std::vector<token_id>>& prompts,
                                            int32_t max_tokens) {
  engine_config c;
  c.model_identity = m.bundle.name;
  auto e = engine::create(c, model_info_of(*m.ex, m.bundle.tok.get()), m.bundle.tok.get());
  EXPECT_TRUE(e.ok()) << e.message();
  std::map<std::string, generated> out;
  if (!e.ok()) return out;
  for (size_t i = 0; i < prompts.size(); ++i) {
    request r;
    r.id = std::to_string(i);
    r.prompt = prompts[i];
    r.params.temperature = 0;
    r.params.max_tokens = max_tokens;
    r.params.ignore_eos = true;  // PyTorch's greedy loop does not stop at the end-of-text token
    EXPECT_TRUE((*e)->add_request(r).ok());
  }
  for (int step = 0; step < 10000 && (*e)->has_work(); ++step) {
    auto s = (*e)->step(*m.ex);
    EXPECT_TRUE(s.ok()) << s.message();
    if (!s.ok()) break;
    for (auto& o : s->outputs) {
      out[o.id].tokens.insert(out[o.id].tokens.end(), o.tokens.begin(), o.tokens.end());
      out[o.id].text += o.text;
    }
  }
  EXPECT_FALSE((*e)->has_work());
  return out;
}

class shipped_target : public ::testing::TestWithParam<std::string> {};

TEST_P(shipped_target, tokenizer_logits_and_greedy_continuations_equal_pytorch) {
  const nlohmann::json ref = load_reference();
  const auto& cases = ref["cases"];
  ASSERT_GE(cases.size(), 3u);
  loaded m = load(models_dir() + "/" + GetParam());
  ASSERT_TRUE(m.ex && m.bundle.tok);
  const tokenizer& tok = *m.bundle.tok;
  const int64_t V = m.bundle.weights->config().n_vocab;

  std::vector<std::vector<token_id>> prompts;
  size_t max_new = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const auto ids = c["prompt_ids"].get<std::vector<token_id>>();
    EXPECT_EQ(tok.encode(c["prompt"].get<std::string>(), true, false), ids) << "case " << i;
    prompts.push_back(ids);
    max_new = std::max(max_new, c["greedy_ids"].size());

    // The last prompt position's logits against PyTorch's fingerprint of them. Both compute in
    // float32 from the same bf16 weights; they differ by summation order only.
    std::vector<float> logits;
    forward_batch b;
    std::vector<int32_t> blocks(64);
    for (int32_t k = 0; k < 64; ++k) blocks[static_cast<size_t>(k)] = k;
    b.add(0, ids, blocks, 1);
    ASSERT_TRUE(m.ex->forward(b, logits).ok());
    ASSERT_EQ(logits.size(), static_cast<size_t>(V));
    const auto& fp = c["last_logits"];
    double max_abs = 1.0;
    for (float v : logits) max_abs = std::max(max_abs, std::fabs(static_cast<double>(v)));
    const double tol = 2e-3 * max_abs;
    for (const auto& kv : fp["top"]) {
      const auto id = kv[0].get<size_t>();
      EXPECT_NEAR(logits[id], kv[1].get<double>(), tol) << "case " << i << " top id " << id;
    }
    for (const auto& kv : fp["every_512th"]) {
      const auto id = kv[0].get<size_t>();
      EXPECT_NEAR(logits[id], kv[1].get<double>(), tol) << "case " << i << " id " << id;
    }
    double mx = logits[0], sum = 0;
    for (float v : logits) mx = std::max(mx, static_cast<double>(v));
    for (float v : logits) sum += std::exp(v - mx);
    EXPECT_NEAR(mx + std::log(sum), fp["logsumexp"].get<double>(), tol) << "case " << i;
    // The argmax is the first greedy token (the reference's top-1).
    EXPECT_EQ(std::max_element(logits.begin(), logits.end()) - logits.begin(),
              fp["top"][0][0].get<int64_t>()) << "case " << i;
  }

  auto out = greedy_all(m, prompts, static_cast<int32_t>(max_new));
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    auto want = c["greedy_ids"].get<std::vector<token_id>>();
    auto got = out[std::to_string(i)].tokens;
    got.resize(std::min(got.size(), want.size()));
    EXPECT_EQ(got, want) << "case " << i << " (" << c["file"].get<std::string>() << ":"
                         << c["first_line"] << ", smallest top-2 margin " << c["min_top2_margin"] << ")";
    if (want.size() == max_new) {
      EXPECT_EQ(out[std::to_string(i)].text, c["greedy_text"].get<std::string>()) << "case " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(formats, shipped_target, ::testing::Values("troupe-py-7m", "troupe-py-7m.gguf"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           return p.param.ends_with(".gguf") ? std::string("gguf") : std::string("safetensors");
                         });

TEST(shipped_draft, greedy_drafts_equal_pytorch) {
  const nlohmann::json ref = load_reference();
  const auto& cases = ref["cases"];
  ASSERT_GE(cases.size(), 3u);
  loaded m = load(models_dir() + "/troupe-py-draft");
  ASSERT_TRUE(m.ex && m.bundle.tok);
  // The draft model drafts from the prompt plus the target's first token.
  std::vector<std::vector<token_id>> prompts;
  for (const auto& c : cases) {
    auto ids = c["prompt_ids"].get<std::vector<token_id>>();
    ids.push_back(c["greedy_ids"][0].get<token_id>());
    prompts.push_back(std::move(ids));
  }
  auto out = greedy_all(m, prompts, 4);
  for (size_t i = 0; i < cases.size(); ++i)
    EXPECT_EQ(out[std::to_string(i)].tokens,
              cases[i]["drafts_after_first_token"]["draft_model"].get<std::vector<token_id>>())
        << "case " << i;
}

TEST(shipped_models, default_model_is_the_shipped_target) {
  std::error_code ec;
  EXPECT_TRUE(std::filesystem::equivalent(default_model_path(), models_dir() + "/troupe-py-7m", ec))
      << default_model_path() << " is not " << models_dir() << "/troupe-py-7m";
}

}  // namespace
}  // namespace troupe
