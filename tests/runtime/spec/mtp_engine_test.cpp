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
#include "tests/runtime/spec/head_drafter_harness.hpp"

namespace troupe {
namespace {

using testing::draft_log;
using testing::outcome;
using testing::run_totals;
using only_s_proposer = testing::only_s_proposer<mtp_proposer>;

class mtp_engine : public testing::head_drafter_fixture {
 protected:
  static std::unique_ptr<mtp_proposer> make_mtp(int32_t k) { return make_mtp_pending(k, 512); }
  // max_pending: rows a paused sequence keeps before its head's layer runs over them.
  static std::unique_ptr<mtp_proposer> make_mtp_pending(int32_t k, int32_t max_pending, int32_t window = 0) {
    mtp_options o;
    o.max_pending = max_pending;
    o.catch_up_window = window;
    o.draft_len = k;
    o.n_threads = 2;
    o.n_blocks = 600;
    auto p = mtp_proposer::create(bundle_->weights, o);
    EXPECT_TRUE(p.ok()) << p.message();
    return p.ok() ? std::move(*p) : nullptr;
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
  EXPECT_EQ(t.head_blocks_after, 0) << "the MTP layer's KV blocks are all freed";
  EXPECT_EQ(t.head_tracked_after, 0u);
}

TEST_F(mtp_engine, batched_drafts_equal_drafts_alone) { expect_batched_drafts_equal_drafts_alone(make_mtp); }

TEST_F(mtp_engine, paused_head_resumes_with_the_drafts_of_an_always_on_head) {
  expect_paused_drafts_equal_always_on_drafts(make_mtp);
}

// A sequence paused for max_pending rows (3 here) has its head's layer run over them at once:
// the drafts after a pause are still the always-on head's.
TEST_F(mtp_engine, a_long_pause_catches_up_at_max_pending_rows_and_drafts_the_same) {
  expect_paused_drafts_equal_always_on_drafts([](int32_t k) { return make_mtp_pending(k, 3); });
}

// The adaptive draft length's catch-up window is lossless and runs fewer rows.
TEST_F(mtp_engine, a_catch_up_window_runs_only_the_latest_rows_and_stays_lossless) {
  expect_catch_up_window_is_lossless([](int32_t k, int32_t window) { return make_mtp_pending(k, 6, window); });
}

TEST_F(mtp_engine, greedy_equals_plain_at_draft_lengths_with_prefix_cache_hits) {
  expect_greedy_equals_plain_with_prefix_cache_hits(make_mtp);
}

TEST_F(mtp_engine, trees_give_plain_greedy_output_beside_plain_decodes) {
  expect_trees_give_plain_greedy_output(make_mtp);
}

TEST_F(mtp_engine, adaptive_trees_give_plain_greedy_output_beside_plain_decodes) {
  expect_adaptive_trees_give_plain_greedy_output(make_mtp);
}

TEST_F(mtp_engine, greedy_equals_plain_under_preemption) { expect_greedy_equals_plain_under_preemption(make_mtp); }

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
