// Proves the scheduler's plan: each sequence's phase is explicit (prefill, decode, verify), a
// verify carries its drafts with a logit row for each plus one, drafts never reach past
// max_tokens or the token budget, drafts whose slots do not fit are dropped before anyone is
// preempted, the plan names the blocks each table gained, and chunked mode alternates.
#include "runtime/engine/scheduler.hpp"

#include <gtest/gtest.h>

#include "runtime/engine/engine.hpp"
#include "runtime/engine/kv_cache_manager.hpp"
#include "runtime/engine/proposer.hpp"
#include "runtime/engine/sequence.hpp"

namespace troupe {
namespace {

// Drafts `n` copies of token 9 (fewer if asked for fewer).
class fixed_proposer final : public proposer {
 public:
  explicit fixed_proposer(int32_t n) : n_(n) {}
  draft propose(const sequence&, int32_t max_tokens) override {
    draft d;
    d.tokens.assign(static_cast<size_t>(std::min(n_, max_tokens)), 9);
    asked.push_back(max_tokens);
    return d;
  }
  const char* name() const override { return "fixed"; }
  std::vector<int32_t> asked;

 private:
  int32_t n_;
};

struct fixture {
  engine_config cfg;
  sequence_table seqs;
  kv_cache_manager kv;
  std::unique_ptr<fixed_proposer> prop;
  std::unique_ptr<scheduler> sched;

  explicit fixture(int32_t n_blocks = 64, int32_t drafts = 0, engine_config c = {})
      : cfg(c), kv(n_blocks, 4, true, 8, 1) {
    cfg.max_seq_len = 1000;
    if (drafts > 0) {
      prop = std::make_unique<fixed_proposer>(drafts);
      if (cfg.max_draft_len == 0) cfg.max_draft_len = drafts;
    }
    sched = std::make_unique<scheduler>(cfg, seqs, kv, prop.get());
  }
  uint64_t add(int n_prompt, int32_t max_tokens = 20) {
    const uint64_t id = seqs.size();
    sampling_params sp;
    sp.temperature = 0;
    sp.max_tokens = max_tokens;
    std::vector<token_id> prompt(static_cast<size_t>(n_prompt), 5);
    seqs.emplace(id, std::make_unique<sequence>(id, "r" + std::to_string(id), 0, prompt, sp, nullptr));
    sched->add_waiting(id);
    return id;
  }
  // Applies a plan as the engine would when every draft is rejected: computed tokens advance,
  // one token is sampled where a row asks.
  void complete(const step_plan& p) {
    for (const scheduled_seq& s : p.seqs) {
      sequence& q = *seqs.at(s.seq);
      q.n_computed += s.n_new - static_cast<int32_t>(s.drafted.tokens.size());
      if (s.n_logits > 0) q.tokens.push_back(7);
      kv.truncate(s.seq, q.size());
    }
  }
};

TEST(scheduler, every_sequence_has_an_explicit_phase) {
  fixture f;
  const uint64_t a = f.add(10);
  step_plan p = f.sched->schedule();
  ASSERT_EQ(p.seqs.size(), 1u);
  EXPECT_EQ(p.seqs[0].seq, a);
  EXPECT_EQ(p.seqs[0].phase, seq_phase::prefill);
  EXPECT_EQ(p.seqs[0].n_new, 10);
  EXPECT_EQ(p.seqs[0].n_logits, 1);
  EXPECT_EQ(p.seqs[0].new_blocks.size(), 3u);
  EXPECT_EQ(p.batch.n_tokens(), 10);
  f.complete(p);
  p = f.sched->schedule();
  ASSERT_EQ(p.seqs.size(), 1u);
  EXPECT_EQ(p.seqs[0].phase, seq_phase::decode);
  EXPECT_EQ(p.seqs[0].n_past, 10);
  EXPECT_EQ(p.seqs[0].n_new, 1);
  EXPECT_TRUE(p.seqs[0].new_blocks.empty());  // position 10 fits the third block
  EXPECT_EQ(p.stats.n_decode_seqs, 1);
}

TEST(scheduler, a_verify_carries_its_drafts_and_a_row_for_each_plus_one) {
  fixture f(64, 3);
  f.add(10);
  f.complete(f.sched->schedule());
  step_plan p = f.sched->schedule();
  ASSERT_EQ(p.seqs.size(), 1u);
  const scheduled_seq& s = p.seqs[0];
  EXPECT_EQ(s.phase, seq_phase::verify);
  EXPECT_EQ(s.n_new, 4);
  EXPECT_EQ(s.n_logits, 4);
  EXPECT_EQ(s.drafted.tokens, std::vector<token_id>({9, 9, 9}));
  EXPECT_EQ(p.batch.tokens, std::vector<token_id>({7, 9, 9, 9}));  // the last token, then drafts
  EXPECT_EQ(p.batch.n_logit_rows(), 4);
  EXPECT_EQ(s.new_blocks.size(), 1u);  // positions 10..13 reach a fourth block
  EXPECT_EQ(p.stats.n_draft_tokens, 3);
  EXPECT_EQ(p.stats.n_scheduled_tokens, 4);
}

TEST(scheduler, drafts_never_reach_past_max_tokens_or_the_budget) {
  {
    fixture f(64, 8);
    f.add(10, 3);  // 3 tokens at most: after the first, two more, so one draft at most
    f.complete(f.sched->schedule());
    step_plan p = f.sched->schedule();
    EXPECT_EQ(p.seqs.at(0).drafted.tokens.size(), 1u);
    EXPECT_EQ(f.prop->asked.back(), 1);
  }
  {
    engine_config c;
    c.max_num_tokens = 6;
    c.max_batch_size = 2;
    fixture f(64, 8, c);
    f.add(3);
    f.add(3);
    f.complete(f.sched->schedule());
    step_plan p = f.sched->schedule();
    int32_t total = 0;
    for (const auto& s : p.seqs) total += s.n_new;
    EXPECT_LE(total, 6);
    EXPECT_EQ(p.seqs.at(0).drafted.tokens.size(), 5u);  // the first takes what the budget leaves
  }
}

TEST(scheduler, drafts_that_do_not_fit_are_dropped_before_anyone_is_preempted) {
  fixture f(3, 6);  // 3 blocks of 4 tokens
  f.add(6);
  f.add(3);
  f.complete(f.sched->schedule());  // both prefilled: 2 blocks + 1 block
  step_plan p = f.sched->schedule();
  ASSERT_EQ(p.seqs.size(), 2u);
  for (const auto& s : p.seqs) EXPECT_EQ(s.phase, seq_phase::decode) << s.seq;
  EXPECT_EQ(p.stats.n_preempted, 0);
}

TEST(scheduler, chunked_mode_alternates_prefill_and_decode_steps) {
  engine_config c;
  c.prefill = prefill_mode::chunked;
  fixture f(64, 0, c);
  f.add(5);
  f.complete(f.sched->schedule());  // a decodes from now on
  f.add(5);
  step_plan p1 = f.sched->schedule();
  step_plan p2 = f.sched->schedule();
  ASSERT_EQ(p1.seqs.size(), 1u);
  ASSERT_EQ(p2.seqs.size(), 1u);
  // The step before was a prefill (a's), so a decode comes first, then b's prefill.
  EXPECT_EQ(p1.seqs[0].phase, seq_phase::decode);
  EXPECT_EQ(p2.seqs[0].phase, seq_phase::prefill);
}

}  // namespace
}  // namespace troupe
