// Proves Eagle-3 speculative decoding in the engine on the project's own target
// (models/troupe-py-7m) and its Eagle-3 head (models/troupe-py-eagle3), on the f32 path (EXACT):
// the executor hands out the target's residual stream at the head's aux layers; the drafts
// equal PyTorch's (scripts/torch_reference.py recorded them in reference_greedy.json, an
// independent implementation of the head), batched; greedy output with Eagle drafts is plain
// greedy decoding token for token, with speculating sequences batched beside plain ones, with
// prefix-cache hits and under preemption; every KV block of the target and of the head is free
// afterwards; a head that is missing, of another architecture, or reads a layer the target
// lacks is refused naming speculative_model_dir.
// eagle3_one_model true (the head's catch-up inside the target's forward) drafts exactly the
// tokens two-model drafts, and keeps every equivalence above; it runs through the factory on the
// CPU executor and is refused, naming the field, by an executor that cannot run it.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "kernels/cpu/matmul.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/spec/eagle3_proposer.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/weight_matrix_of.hpp"
#include "tests/runtime/spec/head_drafter_harness.hpp"

namespace troupe {
namespace {

using testing::draft_log;
using testing::outcome;
using testing::run_totals;
using only_s_proposer = testing::only_s_proposer<eagle3_proposer>;

std::string eagle_dir() { return testing::source_dir() + "/models/troupe-py-eagle3"; }

class eagle3_engine : public testing::head_drafter_fixture {
 protected:
  static std::unique_ptr<eagle3_proposer> make_head(int32_t k, bool one_model, int32_t window = 0) {
    eagle3_options o;
    o.catch_up_window = window;
    o.dir = eagle_dir();
    o.draft_len = k;
    o.n_threads = 2;
    o.n_blocks = 600;
    o.one_model = one_model;
    auto p = eagle3_proposer::create(bundle_->weights, o);
    EXPECT_TRUE(p.ok()) << p.message();
    return p.ok() ? std::move(*p) : nullptr;
  }
  static std::unique_ptr<eagle3_proposer> make_eagle(int32_t k) { return make_head(k, false); }
  static std::unique_ptr<eagle3_proposer> make_eagle_one(int32_t k) { return make_head(k, true); }
};

// The executor's seam: a hidden row carries the final state, then the residual stream entering
// each aux layer; the stream entering layer 0 is the token's embedding, and asking for aux
// columns changes neither the logits nor the final state.
TEST_F(eagle3_engine, executor_hands_out_aux_layers) {
  auto ex = make_executor();
  ASSERT_TRUE(ex);
  const std::vector<token_id> toks = encode("def f(x):\n    return x");
  const std::vector<int32_t> blocks = {0, 1, 2};
  forward_batch plain;
  plain.add(0, toks, blocks, 1, static_cast<int32_t>(toks.size()));
  std::vector<float> l0, h0, l1, h1;
  ASSERT_TRUE(ex->forward_hidden(plain, l0, h0).ok());
  forward_batch aux = plain;
  aux.aux_layers = {0, 1, 3, 5};
  ASSERT_TRUE(ex->forward_hidden(aux, l1, h1).ok());
  const int64_t H = ex->config().n_embd, W = hidden_row_width(aux, H);
  ASSERT_EQ(W, 5 * H);
  ASSERT_EQ(h1.size(), toks.size() * static_cast<size_t>(W));
  EXPECT_EQ(l0, l1);
  std::vector<float> emb(static_cast<size_t>(H));
  const cpu::weight_matrix embd = weight_matrix_of(bundle_->weights->weights().tok_embd);
  for (size_t t = 0; t < toks.size(); ++t) {
    for (int64_t j = 0; j < H; ++j) ASSERT_EQ(h1[t * W + j], h0[t * H + j]) << "row " << t;
    cpu::dequantize_rows(embd, toks[t], toks[t] + 1, emb.data());
    for (int64_t j = 0; j < H; ++j) ASSERT_EQ(h1[t * W + H + j], emb[static_cast<size_t>(j)]) << "row " << t;
    // Layers 1, 3 and 5 see a stream that the layers before have changed.
    EXPECT_NE(std::vector<float>(h1.begin() + t * W + 2 * H, h1.begin() + t * W + 3 * H), emb) << "row " << t;
  }
  forward_batch bad = plain;
  bad.aux_layers = {6};
  const status s = ex->forward_hidden(bad, l1, h1);
  EXPECT_FALSE(s.ok());
}

// The first 4 drafts after the prompt and the target's first token, for the held-out prompts of
// reference_greedy.json, all in one batch: PyTorch's Eagle-3 chain (scripts/torch_reference.py).
TEST_F(eagle3_engine, drafts_equal_pytorch) {
  std::ifstream in(testing::source_dir() + "/models/troupe-py-7m/reference_greedy.json");
  ASSERT_TRUE(in.good());
  const nlohmann::json ref = nlohmann::json::parse(in);
  const auto& cases = ref["cases"];
  ASSERT_GE(cases.size(), 3u);
  auto ex = make_executor();
  ASSERT_TRUE(ex);
  engine_config c;
  c.max_draft_len = 4;
  auto e = engine::create(c, model_info_of(*ex, bundle_->tok.get()), bundle_->tok.get(), make_eagle(4));
  ASSERT_TRUE(e.ok()) << e.message();
  for (size_t i = 0; i < cases.size(); ++i) {
    request r;
    r.id = std::to_string(i);
    r.prompt = cases[i]["prompt_ids"].get<std::vector<token_id>>();
    r.params.temperature = 0;
    r.params.max_tokens = 16;
    ASSERT_TRUE((*e)->add_request(std::move(r)).ok());
  }
  // Step 1: every prompt prefilled, the first token sampled, the head filled and drafting.
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
              cases[i]["drafts_after_first_token"]["eagle3"].get<std::vector<token_id>>())
        << "case " << i;
  }
}

TEST_F(eagle3_engine, greedy_equals_plain_batched_with_plain_sequences) {
  const auto reqs = requests(40, /*mixed=*/true);
  const auto plain = run({reqs}, nullptr);
  run_totals t;
  auto head = make_eagle(3);
  ASSERT_TRUE(head);
  EXPECT_STREQ(head->mode(), "two-model");
  const auto spec = run({reqs}, std::make_unique<only_s_proposer>(std::move(head), true), &t);
  ASSERT_EQ(plain.size(), reqs.size());
  for (const request& r : reqs) {
    EXPECT_EQ(spec.at(r.id).tokens, plain.at(r.id).tokens) << r.id;
    EXPECT_EQ(spec.at(r.id).finish, "length") << r.id;
    EXPECT_EQ(spec.at(r.id).tokens.size(), static_cast<size_t>(r.params.max_tokens)) << r.id;
  }
  EXPECT_GT(t.drafted, 0);
  EXPECT_GT(t.accepted, 0) << "the head agrees with the target some of the time";
  EXPECT_GT(t.mixed_steps, 0) << "verifications rode beside plain decodes";
  EXPECT_GT(t.head_rows, 0) << "the head ran as its own model after the target's steps";
  EXPECT_FALSE(t.target_leaked);
  EXPECT_EQ(t.head_blocks_after, 0) << "the head's KV blocks are all freed";
  EXPECT_EQ(t.head_tracked_after, 0u);
}

TEST_F(eagle3_engine, batched_drafts_equal_drafts_alone) { expect_batched_drafts_equal_drafts_alone(make_eagle); }

TEST_F(eagle3_engine, paused_head_resumes_with_the_drafts_of_an_always_on_head) {
  expect_paused_drafts_equal_always_on_drafts(make_eagle);
}

// The adaptive draft length's catch-up window (two-model: the rows kept hold the aux columns
// only) is lossless and runs fewer rows.
TEST_F(eagle3_engine, a_catch_up_window_runs_only_the_latest_rows_and_stays_lossless) {
  expect_catch_up_window_is_lossless([](int32_t k, int32_t window) { return make_head(k, false, window); });
}

TEST_F(eagle3_engine, greedy_equals_plain_at_draft_lengths_with_prefix_cache_hits) {
  expect_greedy_equals_plain_with_prefix_cache_hits(make_eagle);
}

TEST_F(eagle3_engine, trees_give_plain_greedy_output_beside_plain_decodes) {
  expect_trees_give_plain_greedy_output(make_eagle);
}

TEST_F(eagle3_engine, adaptive_trees_give_plain_greedy_output_beside_plain_decodes) {
  expect_adaptive_trees_give_plain_greedy_output(make_eagle);
}

TEST_F(eagle3_engine, greedy_equals_plain_under_preemption) { expect_greedy_equals_plain_under_preemption(make_eagle); }

// Through the factory (what serve and the workers use): speculative_config Eagle with the head's
// directory, relative to the project's root.
TEST_F(eagle3_engine, factory_makes_the_drafter) {
  engine_spec s;
  s.decoding_type = "Eagle";
  s.speculative_model_dir = "models/troupe-py-eagle3";
  s.threads = 2;
  auto p = make_proposer(s, nullptr, nullptr, bundle_->weights);
  ASSERT_TRUE(p.ok()) << p.message();
  EXPECT_STREQ((*p)->name(), "Eagle");
  EXPECT_EQ((*p)->aux_hidden_layers(), (std::vector<int32_t>{1, 3, 5}));
  EXPECT_EQ(engine_config_of(s, "m").max_draft_len, kDefaultMtpMaxDraftLen);
}

// A copy of the head's directory with config.json edited by edit (the weights linked).
std::string edited_head(const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("troupe-eagle3-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ifstream in(eagle_dir() + "/config.json");
  nlohmann::json c = nlohmann::json::parse(in);
  edit(c);
  std::ofstream(dir / "config.json") << c.dump(2);
  fs::create_symlink(fs::path(eagle_dir()) / "model.safetensors", dir / "model.safetensors");
  return dir.string();
}

TEST_F(eagle3_engine, unfit_heads_are_refused_naming_the_dir) {
  const std::string field = "speculative_model_dir";
  auto try_dir = [&](const std::string& dir) {
    eagle3_options o;
    o.dir = dir;
    o.n_threads = 1;
    o.n_blocks = 8;
    auto p = eagle3_proposer::create(bundle_->weights, o);
    EXPECT_FALSE(p.ok()) << dir;
    return p.ok() ? std::string() : p.message();
  };
  std::string m = try_dir(testing::source_dir() + "/models/no-such-head");
  EXPECT_NE(m.find(field), std::string::npos) << m;
  EXPECT_NE(m.find("no such directory"), std::string::npos) << m;
  m = try_dir(testing::source_dir() + "/models/troupe-py-draft");
  EXPECT_NE(m.find(field), std::string::npos) << m;
  EXPECT_NE(m.find("LlamaForCausalLMEagle3"), std::string::npos) << m;
  const std::string deep = edited_head("deep", [](nlohmann::json& c) { c["eagle_aux_hidden_state_layer_ids"] = {1, 3, 6}; });
  m = try_dir(deep);
  EXPECT_NE(m.find(field), std::string::npos) << m;
  EXPECT_NE(m.find("beyond the target's 6 layers"), std::string::npos) << m;
  const std::string wide = edited_head("wide", [](nlohmann::json& c) { c["target_hidden_size"] = 512; });
  m = try_dir(wide);
  EXPECT_NE(m.find(field), std::string::npos) << m;
  EXPECT_NE(m.find("target_hidden_size 512"), std::string::npos) << m;

  // The configuration's check (POST /v1/llm_models, serve) says the same before any engine.
  config::speculative_settings s;
  s.type = config::decoding_type::eagle;
  const std::string model = testing::source_dir() + "/models/troupe-py-7m";
  s.speculative_model_dir = "models/troupe-py-eagle3";
  {
    const auto fits = config::eagle_head_unfit(s, model);
    EXPECT_FALSE(fits) << "the shipped head fits the shipped model: " << fits->message;
  }
  for (const std::string& dir : {testing::source_dir() + "/models/no-such-head", testing::source_dir() + "/models/troupe-py-draft", deep, wide}) {
    s.speculative_model_dir = dir;
    auto e = config::eagle_head_unfit(s, model);
    ASSERT_TRUE(e) << dir;
    EXPECT_EQ(e->path, "llm_config.speculative_config.speculative_model_dir") << e->message;
  }
  std::filesystem::remove_all(std::filesystem::path(deep));
  std::filesystem::remove_all(std::filesystem::path(wide));
}

// eagle3_one_model true: the same head on the same target drafts exactly the tokens two-model
// drafts (every draft at every length, chains and trees, batched beside plain sequences; f32),
// and the output is plain greedy decoding. The target's forward ran part of the catch-up (keys
// and values of the rows whose next token it held) for every sequence; two-model catches up
// lazily, only the sequences asked for drafts (the 's' ones), so it runs fewer rows in all.
TEST_F(eagle3_engine, one_model_drafts_exactly_what_two_model_drafts) {
  const auto reqs = requests(40, /*mixed=*/true);
  const auto plain = run({reqs}, nullptr);
  for (int32_t width : {1, 3}) {
    draft_log two_log, one_log;
    run_totals two, one;
    auto h1 = make_eagle_one(3);
    ASSERT_TRUE(h1);
    EXPECT_STREQ(h1->mode(), "one-model");
    const auto two_out = run({reqs}, wrap(make_eagle, 3, true, &two_log), &two, false, 3, 512, width);
    const auto one_out =
        run({reqs}, std::make_unique<only_s_proposer>(std::move(h1), true, &one_log), &one, false, 3, 512, width);
    EXPECT_FALSE(one_log.empty());
    EXPECT_EQ(one_log.size(), two_log.size()) << "width " << width;
    EXPECT_TRUE(one_log == two_log) << "width " << width;
    for (const auto& [key, d] : two_log)
      if (one_log.count(key)) {
        EXPECT_EQ(one_log.at(key), d) << key.first << " at " << key.second << " width " << width;
      }
    for (const request& r : reqs) {
      EXPECT_EQ(one_out.at(r.id).tokens, plain.at(r.id).tokens) << r.id << " width " << width;
      EXPECT_EQ(two_out.at(r.id).tokens, plain.at(r.id).tokens) << r.id << " width " << width;
    }
    EXPECT_EQ(one.drafted, two.drafted) << "width " << width;
    EXPECT_EQ(one.accepted, two.accepted) << "width " << width;
    EXPECT_GT(one.accepted, 0);
    EXPECT_GT(one.mixed_steps, 0);
    if (width > 1) {
      EXPECT_GT(one.moved_steps, 0) << "an accepted path left the spine";
    }
    EXPECT_EQ(two.fused_rows, 0);
    EXPECT_GT(one.fused_rows, 0) << "the head ran inside the target's forward";
    EXPECT_LT(two.catch_up_rows, one.fused_rows + one.catch_up_rows) << "width " << width;
    std::cout << "width " << width << ": two-model catch-up rows " << two.catch_up_rows << "; one-model "
              << one.fused_rows << " rows in the forward, " << one.catch_up_rows << " after\n";
    EXPECT_FALSE(one.target_leaked);
    EXPECT_EQ(one.head_blocks_after, 0) << "the head's KV blocks are all freed";
    EXPECT_EQ(one.head_tracked_after, 0u);
  }
}

TEST_F(eagle3_engine, one_model_batched_drafts_equal_drafts_alone) {
  expect_batched_drafts_equal_drafts_alone(make_eagle_one);
}

TEST_F(eagle3_engine, one_model_greedy_equals_plain_at_draft_lengths_with_prefix_cache_hits) {
  expect_greedy_equals_plain_with_prefix_cache_hits(make_eagle_one);
}

TEST_F(eagle3_engine, one_model_trees_give_plain_greedy_output_beside_plain_decodes) {
  expect_trees_give_plain_greedy_output(make_eagle_one);
}

TEST_F(eagle3_engine, one_model_greedy_equals_plain_under_preemption) {
  expect_greedy_equals_plain_under_preemption(make_eagle_one);
}

// Through the factory and the configuration (what serve, the Management API and the workers
// use): eagle3_one_model true is built (not refused) and runs on the CPU executor, every batch
// carrying the head, with plain greedy output; an executor that cannot run the head inside its
// forward (here the simulated one; CUDA likewise) is refused naming the field.
TEST_F(eagle3_engine, one_model_through_the_factory_and_refused_where_it_cannot_act) {
  config::speculative_settings cs;
  cs.type = config::decoding_type::eagle;
  cs.speculative_model_dir = "models/troupe-py-eagle3";
  cs.eagle3_one_model = true;
  EXPECT_FALSE(config::unbuilt_decoding_type(cs)) << "one-model Eagle is built";

  engine_spec s;
  s.decoding_type = "Eagle";
  s.speculative_model_dir = "models/troupe-py-eagle3";
  s.threads = 2;
  s.max_draft_len = 3;
  s.eagle3_one_model = true;
  const auto reqs = requests(24, false);
  const auto plain = run({reqs}, nullptr);
  auto ex = make_executor();
  ASSERT_TRUE(ex);
  auto e = make_engine(s, *ex, bundle_->tok.get(), "troupe-py-7m", nullptr, bundle_->weights);
  ASSERT_TRUE(e.ok()) << e.message();
  EXPECT_STREQ((*e)->decoding_type(), "Eagle");
  for (const request& r : reqs) ASSERT_TRUE((*e)->add_request(r).ok());
  std::map<std::string, std::vector<token_id>> got;
  int64_t drafted = 0, accepted = 0;
  while ((*e)->has_work()) {
    step_plan p = (*e)->schedule();
    if (!p.empty()) {
      EXPECT_TRUE(p.batch.head) << "every batch carries the head";
    }
    std::vector<float> logits, hidden;
    if (!p.empty()) {
      ASSERT_TRUE(ex->forward_hidden(p.batch, logits, hidden).ok());
      EXPECT_EQ(hidden.size(), static_cast<size_t>(p.batch.n_hidden_rows() * 2 * ex->config().n_embd))
          << "a hidden row is [final state, g]";
    }
    step_output out = (*e)->complete(std::move(p), logits, -1, hidden);
    for (const request_output& o : out.outputs) {
      got[o.id].insert(got[o.id].end(), o.tokens.begin(), o.tokens.end());
      drafted += o.n_drafted;
      accepted += o.n_draft_accepted;
    }
  }
  for (const request& r : reqs) EXPECT_EQ(got[r.id], plain.at(r.id).tokens) << r.id;
  EXPECT_GT(drafted, 0);
  EXPECT_GT(accepted, 0);

  executor_factory f;
  engine_spec sim = s;
  sim.simulate = R"({"prefill_token_ms": 0.1, "decode_step_ms": {"1": 1, "8": 2}})";
  auto sx = f.make_executor(bundle_->weights, testing::source_dir() + "/models/troupe-py-7m", sim);
  ASSERT_TRUE(sx.ok()) << sx.message();
  EXPECT_FALSE((*sx)->runs_fused_head());
  auto refused = make_engine(s, **sx, bundle_->tok.get(), "troupe-py-7m", nullptr, bundle_->weights);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("llm_config.speculative_config.eagle3_one_model"), std::string::npos)
      << refused.message();
  EXPECT_NE(refused.message().find("CPU executor"), std::string::npos) << refused.message();
}

}  // namespace
}  // namespace troupe
