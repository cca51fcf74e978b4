// Proves what the engine computes from a prompt alone, on the f32 reference path: embeddings
// (mean- and last-token-pooled final hidden states, L2-normalised) equal the numpy reference
// forward's (scripts/reference_forward.py), and prompt logprobs equal the log-softmax of its
// logits; both come out the same batched with other requests as alone, chunked as whole, and
// (prompt logprobs) after a prefix-cache hit as cold.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/model_config.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/test_data.hpp"

namespace troupe {
namespace {

std::string model_path(const std::string& model) { return testing::build_dir() + "/testmodels/" + model; }

struct outcome {
  std::vector<float> embedding;
  std::vector<sampled> prompt_logprobs;
  std::vector<token_id> tokens;
  bool finished = false;
};

class harness {
 public:
  explicit harness(const std::string& model) {
    auto ck = checkpoint::open(model_path(model));
    EXPECT_TRUE(ck.ok()) << ck.message();
    ck_ = std::make_shared<const checkpoint>(std::move(*ck));
    cpu_executor_options o;
    o.n_threads = 2;
    o.kv_block_size = 4;
    o.kv_n_blocks = 256;
    auto ex = make_cpu_executor(ck_, o);
    EXPECT_TRUE(ex.ok()) << ex.message();
    ex_ = std::move(*ex);
  }

  std::unique_ptr<engine> make(engine_config c = {}) {
    c.model_identity = "embedding-test";
    auto e = engine::create(c, model_info_of(*ex_, nullptr), nullptr);
    EXPECT_TRUE(e.ok()) << e.message();
    return std::move(*e);
  }

  std::map<std::string, outcome> drain(engine& e) {
    std::map<std::string, outcome> out;
    for (int i = 0; i < 5000 && e.has_work(); ++i) {
      auto s = e.step(*ex_);
      EXPECT_TRUE(s.ok()) << s.message();
      if (!s.ok()) break;
      for (auto& o : s->outputs) {
        auto& r = out[o.id];
        if (!o.embedding.empty()) r.embedding = o.embedding;
        r.prompt_logprobs.insert(r.prompt_logprobs.end(), o.prompt_logprobs.begin(), o.prompt_logprobs.end());
        r.tokens.insert(r.tokens.end(), o.tokens.begin(), o.tokens.end());
        r.finished = r.finished || o.finished.has_value();
      }
    }
    EXPECT_FALSE(e.has_work());
    EXPECT_EQ(e.kv_blocks_free(), e.kv_blocks_total()) << "every block is free or only cached";
    return out;
  }

  std::map<std::string, outcome> run(const std::vector<request>& reqs, engine_config c = {}) {
    auto e = make(c);
    for (const request& r : reqs) EXPECT_TRUE(e->add_request(r).ok()) << r.id;
    return drain(*e);
  }

  const model_config& config() const { return ex_->config(); }

 private:
  std::shared_ptr<const checkpoint> ck_;
  std::unique_ptr<executor> ex_;
};

request embed(std::string id, std::vector<token_id> prompt, pooling p) {
  request r;
  r.id = std::move(id);
  r.prompt = std::move(prompt);
  r.pool = p;
  return r;
}

request generate(std::string id, std::vector<token_id> prompt, int32_t max_tokens, int32_t prompt_logprobs = -1) {
  request r;
  r.id = std::move(id);
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  r.params.prompt_logprobs = prompt_logprobs;
  return r;
}

// The reference test prompts of a model (make_reference_outputs.py): lengths 1, 5, 19, 37.
std::vector<std::vector<token_id>> reference_prompts(const std::string& model) {
  std::ifstream in(model_path(model) + ".ref.json");
  EXPECT_TRUE(in.good()) << model;
  std::vector<std::vector<token_id>> out;
  if (!in.good()) return out;
  const nlohmann::json j = nlohmann::json::parse(in);
  for (const auto& p : j["prompts"]) out.push_back(p["tokens"].get<std::vector<token_id>>());
  EXPECT_EQ(out.size(), 4u) << model;
  return out;
}

// The numpy reference's pooled embeddings of prompts: {"prompts": [{"mean", "last"}]}.
nlohmann::json numpy_embeddings(const std::string& model, const std::vector<std::vector<token_id>>& prompts) {
  const auto out = std::filesystem::temp_directory_path() / ("troupe_embed_" + model + "_" + std::to_string(getpid()));
  const std::string cmd = testing::python() + " '" + testing::source_dir() + "/scripts/reference_forward.py' --model '" +
                          model_path(model) + "' --prompts '" + nlohmann::json(prompts).dump() + "' --out '" +
                          out.string() + "' --embeddings";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream in(out.string() + ".json");
  EXPECT_TRUE(in.good()) << cmd;
  if (!in.good()) return {};
  auto j = nlohmann::json::parse(in);
  std::filesystem::remove(out.string() + ".json");
  return j;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

// f32 sums against float64: each component of a unit vector within 1e-4.
constexpr double embedding_tolerance = 1e-4;

class embedding_reference : public ::testing::TestWithParam<std::string> {};

TEST_P(embedding_reference, pooled_embeddings_equal_numpys) {
  const std::string model = GetParam();
  harness h(model);
  const auto prompts = reference_prompts(model);
  ASSERT_FALSE(prompts.empty());
  const nlohmann::json ref = numpy_embeddings(model, prompts);
  ASSERT_EQ(ref["prompts"].size(), prompts.size());
  std::vector<request> reqs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    reqs.push_back(embed("mean" + std::to_string(i), prompts[i], pooling::mean));
    reqs.push_back(embed("last" + std::to_string(i), prompts[i], pooling::last));
  }
  auto out = h.run(reqs);
  for (size_t i = 0; i < prompts.size(); ++i) {
    for (const char* kind : {"mean", "last"}) {
      const outcome& o = out[kind + std::to_string(i)];
      ASSERT_TRUE(o.finished) << kind << i;
      ASSERT_EQ(o.embedding.size(), static_cast<size_t>(h.config().n_embd));
      EXPECT_TRUE(o.tokens.empty()) << "an embedding request samples nothing";
      double norm = 0;
      for (float v : o.embedding) norm += static_cast<double>(v) * v;
      EXPECT_NEAR(norm, 1.0, 1e-5) << kind << i;
      EXPECT_LT(max_abs_diff(o.embedding, ref["prompts"][i][kind].get<std::vector<double>>()), embedding_tolerance)
          << kind << " pooling of prompt " << i << " (" << prompts[i].size() << " tokens)";
    }
  }
}

// The reference's logits at every prompt position (make_reference_outputs.py's .ref.bin).
std::vector<std::vector<float>> reference_logits(const std::string& model, size_t prompt, int64_t n_vocab) {
  std::ifstream in(model_path(model) + ".ref.json");
  auto j = nlohmann::json::parse(in);
  const auto& p = j["prompts"][prompt];
  const size_t T = p["tokens"].size(), offset = p["logits_offset"];
  std::ifstream bin(model_path(model) + ".ref.bin", std::ios::binary);
  bin.seekg(static_cast<std::streamoff>(offset * sizeof(float)));
  std::vector<std::vector<float>> rows(T, std::vector<float>(static_cast<size_t>(n_vocab)));
  for (auto& r : rows) bin.read(reinterpret_cast<char*>(r.data()), static_cast<std::streamsize>(r.size() * sizeof(float)));
  EXPECT_TRUE(bin.good());
  return rows;
}

TEST_P(embedding_reference, prompt_logprobs_equal_numpys_log_softmax) {
  const std::string model = GetParam();
  harness h(model);
  const auto prompts = reference_prompts(model);
  ASSERT_FALSE(prompts.empty());
  std::vector<request> reqs;
  for (size_t i = 0; i < prompts.size(); ++i) reqs.push_back(generate("p" + std::to_string(i), prompts[i], 2, 20));
  auto out = h.run(reqs);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const outcome& o = out["p" + std::to_string(i)];
    ASSERT_EQ(o.prompt_logprobs.size(), prompts[i].size() - 1) << "one per prompt token but the first";
    const auto rows = reference_logits(model, i, h.config().n_vocab);
    for (size_t pos = 0; pos + 1 < prompts[i].size(); ++pos) {
      const std::vector<float>& row = rows[pos];
      double mx = -1e300, scale = 1;
      for (float v : row) {
        mx = std::max(mx, static_cast<double>(v));
        scale = std::max(scale, static_cast<double>(std::abs(v)));
      }
      double sum = 0;
      for (float v : row) sum += std::exp(v - mx);
      const double lse = mx + std::log(sum);
      const sampled& s = o.prompt_logprobs[pos];
      const token_id want = prompts[i][pos + 1];
      EXPECT_EQ(s.id, want);
      // The logits are within 1e-3 of the largest magnitude (forward_reference_test); a
      // log-softmax moves by at most twice that.
      const double tol = 2e-3 * scale;
      EXPECT_NEAR(s.logprob, row[static_cast<size_t>(want)] - lse, tol) << "prompt " << i << " position " << pos;
      ASSERT_EQ(s.top.size(), 20u);
      EXPECT_NEAR(s.top[0].logprob, mx - lse, tol);
      for (const token_logprob& t : s.top) EXPECT_NEAR(t.logprob, row[static_cast<size_t>(t.id)] - lse, tol);
    }
  }
}

TEST(prompt_logprobs_engine, max_tokens_zero_scores_the_prompt_alone) {
  harness h("qwen2-hf-f32");
  const auto prompts = reference_prompts("qwen2-hf-f32");
  std::vector<request> reqs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    reqs.push_back(generate("score" + std::to_string(i), prompts[i], 0, 3));
    reqs.push_back(generate("gen" + std::to_string(i), prompts[i], 2, 3));
  }
  EXPECT_FALSE(h.make()->add_request(generate("no-logprobs", prompts[1], 0)).ok()) << "max_tokens 0 needs prompt_logprobs";
  auto out = h.run(reqs);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const outcome& s = out["score" + std::to_string(i)];
    const outcome& g = out["gen" + std::to_string(i)];
    EXPECT_TRUE(s.finished);
    EXPECT_TRUE(s.tokens.empty());
    ASSERT_EQ(s.prompt_logprobs.size(), prompts[i].size() - 1);
    ASSERT_EQ(g.prompt_logprobs.size(), s.prompt_logprobs.size());
    for (size_t k = 0; k < s.prompt_logprobs.size(); ++k)
      EXPECT_EQ(s.prompt_logprobs[k].logprob, g.prompt_logprobs[k].logprob) << i << " " << k;
  }
  // A prompt may fill the whole context when nothing is generated.
  engine_config c;
  c.max_seq_len = 16;
  auto e = h.make(c);
  EXPECT_TRUE(e->add_request(generate("full", std::vector<token_id>(16, 5), 0, 0)).ok());
  EXPECT_FALSE(e->add_request(generate("full-gen", std::vector<token_id>(16, 5), 1, 0)).ok());
  EXPECT_EQ(h.drain(*e)["full"].prompt_logprobs.size(), 15u);
}

INSTANTIATE_TEST_SUITE_P(models, embedding_reference, ::testing::Values("qwen2-hf-f32", "qwen3-hf-f32", "llama3-hf-f32"));

std::vector<std::vector<token_id>> random_prompts(int n, unsigned seed) {
  std::vector<std::vector<token_id>> out;
  std::mt19937 rng(seed);
  for (int i = 0; i < n; ++i) {
    std::vector<token_id> p(std::uniform_int_distribution<size_t>(1, 45)(rng));
    for (token_id& t : p) t = std::uniform_int_distribution<token_id>(0, 30000)(rng);
    out.push_back(std::move(p));
  }
  return out;
}

TEST(embedding_engine, batched_and_chunked_equal_alone_and_whole) {
  harness h("qwen2-hf-f32");
  const auto prompts = random_prompts(12, 3);
  std::map<std::string, std::vector<float>> alone;
  for (size_t i = 0; i < prompts.size(); ++i)
    for (pooling p : {pooling::mean, pooling::last}) {
      const std::string id = std::string(pooling_name(p)) + std::to_string(i);
      alone[id] = h.run({embed(id, prompts[i], p)})[id].embedding;
    }
  // Everything at once, beside generation requests, in chunks of at most 8 tokens a step.
  std::vector<request> all;
  for (size_t i = 0; i < prompts.size(); ++i) {
    for (pooling p : {pooling::mean, pooling::last})
      all.push_back(embed(std::string(pooling_name(p)) + std::to_string(i), prompts[i], p));
    all.push_back(generate("gen" + std::to_string(i), prompts[i], 5));
  }
  for (int32_t budget : {8192, 24}) {
    engine_config c;
    c.max_num_tokens = budget;
    c.max_batch_size = 16;
    auto out = h.run(all, c);
    for (auto& [id, e] : alone) EXPECT_EQ(out[id].embedding, e) << id << " with max_num_tokens " << budget;
  }
}

TEST(embedding_engine, a_second_request_for_the_same_input_after_its_kv_was_cached_gives_the_same_vector) {
  harness h("qwen2-hf-f32");
  std::vector<token_id> prompt;
  for (token_id t = 0; t < 22; ++t) prompt.push_back(100 + 37 * t);  // five whole blocks of 4 to cache, and two tokens
  const auto cold = h.run({embed("mean", prompt, pooling::mean), embed("last", prompt, pooling::last)});
  // One engine: the first pair leaves the prompt's blocks in the prefix cache; last pooling may
  // start from them, mean pooling recomputes every token.
  auto e = h.make();
  for (const char* round : {"a", "b"}) {
    ASSERT_TRUE(e->add_request(embed(std::string(round) + "mean", prompt, pooling::mean)).ok());
    ASSERT_TRUE(e->add_request(embed(std::string(round) + "last", prompt, pooling::last)).ok());
    auto out = h.drain(*e);
    EXPECT_EQ(out[std::string(round) + "mean"].embedding, cold.at("mean").embedding) << round;
    EXPECT_EQ(out[std::string(round) + "last"].embedding, cold.at("last").embedding) << round;
  }
  EXPECT_FALSE(e->cached_block_hashes().empty());
}

TEST(embedding_engine, an_input_may_fill_the_whole_context_and_no_more) {
  harness h("qwen2-hf-f32");
  engine_config c;
  c.max_seq_len = 32;
  auto e = h.make(c);
  EXPECT_TRUE(e->add_request(embed("full", std::vector<token_id>(32, 7), pooling::mean)).ok());
  EXPECT_FALSE(e->add_request(embed("over", std::vector<token_id>(33, 7), pooling::mean)).ok());
  EXPECT_FALSE(e->add_request(embed("empty", {}, pooling::mean)).ok());
  auto out = h.drain(*e);
  EXPECT_EQ(out["full"].embedding.size(), static_cast<size_t>(h.config().n_embd));
}

TEST(prompt_logprobs_engine, batched_chunked_and_after_a_cache_hit_equal_alone) {
  harness h("qwen2-hf-f32");
  const auto prompts = random_prompts(8, 5);
  std::map<std::string, outcome> alone;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string id = "p" + std::to_string(i);
    alone[id] = h.run({generate(id, prompts[i], 3, 4)})[id];
  }
  std::vector<request> all;
  for (size_t i = 0; i < prompts.size(); ++i) {
    all.push_back(generate("warm" + std::to_string(i), prompts[i], 2));  // fills the prefix cache first
    all.push_back(generate("p" + std::to_string(i), prompts[i], 3, 4));
  }
  engine_config c;
  c.max_num_tokens = 16;
  c.max_batch_size = 8;
  auto out = h.run(all, c);
  for (auto& [id, a] : alone) {
    const outcome& b = out[id];
    EXPECT_EQ(b.tokens, a.tokens) << id;
    ASSERT_EQ(b.prompt_logprobs.size(), a.prompt_logprobs.size()) << id;
    for (size_t k = 0; k < a.prompt_logprobs.size(); ++k) {
      EXPECT_EQ(b.prompt_logprobs[k].id, a.prompt_logprobs[k].id);
      EXPECT_EQ(b.prompt_logprobs[k].logprob, a.prompt_logprobs[k].logprob) << id << " position " << k;
      ASSERT_EQ(b.prompt_logprobs[k].top.size(), a.prompt_logprobs[k].top.size());
      for (size_t t = 0; t < a.prompt_logprobs[k].top.size(); ++t)
        EXPECT_EQ(b.prompt_logprobs[k].top[t].id, a.prompt_logprobs[k].top[t].id);
    }
  }
}

}  // namespace
}  // namespace troupe
