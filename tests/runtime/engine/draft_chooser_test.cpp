// The adaptive draft length's chooser (runtime/engine/draft_chooser.hpp) on synthetic step
// costs and acceptance: where verifying costs more than it saves it drafts nothing, where a
// step's fixed cost dominates and drafts are accepted it drafts to the ceiling, and in between
// it gives the longer drafts to the sequences whose drafts are accepted more; a drafter's
// catch-up cost per emitted token is charged, and probes go to the sequence owing least.
#include <numeric>
#include <random>
#include <tuple>

#include <gtest/gtest.h>

#include "runtime/engine/draft_chooser.hpp"

namespace troupe {
namespace {

std::vector<int32_t> same(size_t n, int32_t v) { return std::vector<int32_t>(n, v); }

TEST(draft_chooser, a_large_batch_with_poor_acceptance_on_a_compute_bound_device_drafts_nothing) {
  const std::vector<double> alphas(32, 0.3);
  // 32 sequences; a step costs 0.2 ms + 0.1 ms per token.
  EXPECT_EQ(draft_chooser::allocate(alphas, same(32, 4), 2e-4, 1e-4, 0), same(32, 0));
  // Even a good acceptance does not pay where a token costs what a whole step costs.
  EXPECT_EQ(draft_chooser::allocate(std::vector<double>(32, 0.9), same(32, 4), 0, 1e-4, 0), same(32, 0));
}

TEST(draft_chooser, batch_one_with_high_acceptance_drafts_to_the_ceiling) {
  // A step costs 5 ms fixed + 0.05 ms per token: drafts are nearly free.
  EXPECT_EQ(draft_chooser::allocate(std::vector<double>{0.8}, same(1, 4), 5e-3, 5e-5, 0), same(1, 4));
  EXPECT_EQ(draft_chooser::allocate(std::vector<double>{0.8}, same(1, 7), 5e-3, 5e-5, 1e-5), same(1, 7));
  // ... but never past a sequence's own room.
  EXPECT_EQ(draft_chooser::allocate(std::vector<double>{0.8}, same(1, 2), 5e-3, 5e-5, 0), same(1, 2));
  // An expensive drafter (2 ms per draft token) shortens the draft.
  const auto k = draft_chooser::allocate(std::vector<double>{0.8}, same(1, 4), 5e-3, 5e-5, 2e-3);
  EXPECT_GT(k[0], 0);
  EXPECT_LT(k[0], 4);
}

TEST(draft_chooser, in_between_the_better_accepted_sequences_draft_longer) {
  // Batch 8 where the fixed cost equals 8 tokens' cost.
  std::vector<double> alphas = {0.95, 0.95, 0.2, 0.2, 0.6, 0.6, 0.05, 0.05};
  const auto k = draft_chooser::allocate(alphas, same(8, 4), 8e-4, 1e-4, 0);
  EXPECT_GT(k[0], k[4]);
  EXPECT_GE(k[4], k[2]);
  EXPECT_EQ(k[6], 0);
  // The choice maximises expected tokens per second over every uniform length too.
  auto rate = [&](const std::vector<int32_t>& ks) {
    double tokens = 0, time = 8e-4;
    for (size_t s = 0; s < ks.size(); ++s) {
      double g = 1;
      tokens += 1;
      for (int32_t j = 1; j <= ks[s]; ++j) tokens += (g *= alphas[s]);
      time += 1e-4 * (1 + ks[s]);
    }
    return tokens / time;
  };
  for (int32_t u = 0; u <= 4; ++u) EXPECT_GE(rate(k), rate(same(8, u))) << u;
}

TEST(draft_chooser, learns_the_step_cost_and_acceptance_online_and_probes_when_idle) {
  draft_chooser c;
  // Unfitted: the ceiling for one sequence (the one owing the least catch-up) and nothing, in
  // turn (two step sizes to fit from).
  const std::vector<int32_t> owed = {40, 2, 9, 2};
  EXPECT_EQ(c.choose(std::vector<double>(4, 0.5), same(4, 3), owed), (std::vector<int32_t>{0, 3, 0, 0}));
  EXPECT_EQ(c.choose(std::vector<double>(4, 0.5), same(4, 3), owed), same(4, 0));
  EXPECT_EQ(c.choose(std::vector<double>(4, 0.5), same(4, 3)), (std::vector<int32_t>{3, 0, 0, 0}));
  // Steps of 8..16 tokens at 1 ms + 0.5 ms per token.
  for (int i = 0; i < 40; ++i) c.observe_step(8 + i % 9, 1e-3 + 5e-4 * (8 + i % 9));
  ASSERT_TRUE(c.cost_known());
  EXPECT_NEAR(c.step_fixed_s(), 1e-3, 1e-6);
  EXPECT_NEAR(c.step_per_token_s(), 5e-4, 1e-8);
  // Acceptance: a sequence whose drafts are always rejected falls below the drafter's average,
  // one whose drafts are always accepted rises above it.
  spec_acceptance bad, good;
  for (int i = 0; i < 10; ++i) {
    c.observe_verify(bad, 4, 0);
    c.observe_verify(good, 4, 4);
  }
  EXPECT_LT(c.alpha(bad), c.alpha_drafter());
  EXPECT_GT(c.alpha(good), c.alpha_drafter());
  EXPECT_GT(c.alpha(good), 0.8);
  // Compute-bound enough at batch 16 that poor drafts are not worth it; every 32nd idle step one
  // sequence, in turn, drafts to its room so that acceptance is still measured.
  const std::vector<double> poor(16, c.alpha(bad));
  // The alternation lasts kFitSteps steps in all.
  for (int i = 3; i < draft_chooser::kFitSteps; ++i) EXPECT_EQ(c.choose(poor, same(16, 4))[0], i % 2 == 0 ? 4 : 0);
  int probes = 0;
  for (int step = 1; step <= 64; ++step) {
    const auto k = c.choose(poor, same(16, 4));
    const int sum = std::accumulate(k.begin(), k.end(), 0);
    if (sum > 0) {
      ++probes;
      EXPECT_EQ(sum, 4);
      EXPECT_EQ(step % draft_chooser::kProbeEvery, 0);
    }
  }
  EXPECT_EQ(probes, 2);
}

TEST(draft_chooser, a_catch_up_cost_per_emitted_token_can_stop_drafts) {
  // Batch 1, 1 ms fixed + 0.2 ms per token, drafts free, alpha 0.6: drafting pays without
  // catch-up; a head whose catch-up costs 2 ms per emitted token (more than a step) never drafts.
  const std::vector<double> a = {0.6};
  EXPECT_GT(draft_chooser::allocate(a, same(1, 4), 1e-3, 2e-4, 0, 0)[0], 0);
  EXPECT_EQ(draft_chooser::allocate(a, same(1, 4), 1e-3, 2e-4, 0, 2e-3), same(1, 0));
  // At batch 8 the well accepted sequences still draft, the poorly accepted ones less or not.
  const std::vector<double> mixed = {0.95, 0.3, 0.95, 0.3, 0.95, 0.3, 0.95, 0.3};
  const auto m = draft_chooser::allocate(mixed, same(8, 4), 4e-3, 2e-4, 0, 1e-4);
  EXPECT_GT(m[0], 0);
  EXPECT_GE(m[0], m[1]);
}

TEST(draft_chooser, probes_the_sequence_owing_least_and_only_when_the_probe_is_cheap) {
  draft_chooser c;
  for (int i = 0; i < 40; ++i) c.observe_step(8 + i % 9, 1e-3 + 5e-4 * (8 + i % 9));
  ASSERT_TRUE(c.cost_known());
  c.observe_catch_up(100, 1e-2);  // 0.1 ms per catch-up row
  spec_acceptance bad;
  for (int i = 0; i < 10; ++i) c.observe_verify(bad, 4, 0);
  const std::vector<double> poor(16, c.alpha(bad));
  for (int i = 0; i < draft_chooser::kFitSteps; ++i) c.choose(poor, same(16, 4));
  // 32 idle steps of ~9 ms: a probe owing 20 rows (2 ms + 2 ms of drafts) is cheap enough.
  std::vector<int32_t> owed(16, 500);
  owed[7] = 20;
  std::vector<int32_t> k;
  for (int step = 1; step <= draft_chooser::kProbeEvery; ++step) {
    // The scheduler asks the drafter what each sequence owes only when a probe may come.
    EXPECT_EQ(c.wants_owed(), step == draft_chooser::kProbeEvery) << step;
    k = c.choose(poor, same(16, 4), owed);
  }
  std::vector<int32_t> want(16, 0);
  want[7] = 4;
  EXPECT_EQ(k, want);
  // Every sequence owing 500 rows (50 ms): no probe within 128 idle steps (~1.2 s; 2% is 23 ms).
  const std::vector<int32_t> all_owe(16, 500);
  for (int step = 1; step <= 128; ++step) {
    k = c.choose(poor, same(16, 4), all_owe);
    EXPECT_EQ(k, same(16, 0)) << step;
  }
  // ... but once enough idle time has passed, it does (the probe costs at most 2% of it).
  bool probed = false;
  for (int step = 1; step <= 400 && !probed; ++step) {
    k = c.choose(poor, same(16, 4), all_owe);
    probed = std::accumulate(k.begin(), k.end(), 0) > 0;
  }
  EXPECT_TRUE(probed);
}

// Trees (spec_tree_width > 1 with the adaptive length): allocate_tree's choice of depth and
// shape per sequence, and choose_tree's learning and probing.

// Expected tokens per second of a choice, the quantity allocate_tree maximises.
double tree_rate(const std::vector<draft_shape>& k, const std::vector<double>& chain, const std::vector<double>& tree,
                 double c, double a, double b, double d) {
  double tokens = 0, time = a;
  for (size_t s = 0; s < k.size(); ++s) {
    double g = 1;
    tokens += 1;
    time += b;
    for (int32_t j = 1; j <= k[s].depth; ++j) tokens += (g *= k[s].tree ? tree[s] : chain[s]);
    time += k[s].depth * ((k[s].tree ? c : 1.0) * b + d);
  }
  return tokens / time;
}

TEST(draft_chooser_tree, equal_acceptance_makes_chains_of_the_chain_allocations_lengths) {
  const std::vector<double> alphas = {0.95, 0.95, 0.2, 0.2, 0.6, 0.6, 0.05, 0.05};
  for (const auto& [a, b, d] : std::vector<std::tuple<double, double, double>>{
           {8e-4, 1e-4, 0}, {5e-3, 5e-5, 0}, {2e-4, 1e-4, 0}, {5e-3, 5e-5, 2e-3}}) {
    const auto chains = draft_chooser::allocate(alphas, same(8, 4), a, b, d);
    const auto shapes = draft_chooser::allocate_tree(alphas, alphas, same(8, 4), 3, a, b, d);
    for (size_t s = 0; s < alphas.size(); ++s) {
      EXPECT_EQ(shapes[s].depth, chains[s]) << s << " a=" << a;
      EXPECT_FALSE(shapes[s].tree) << s << ": a tree level costs more for the same acceptance";
    }
  }
}

TEST(draft_chooser_tree, trees_where_their_acceptance_pays_for_their_rows_and_nothing_where_verifying_does_not) {
  // Batch 1, a step's fixed cost dominating: a tree of width 3 that accepts 0.8 a level beats a
  // chain that accepts 0.5, to the ceiling.
  const auto one = draft_chooser::allocate_tree(std::vector<double>{0.5}, std::vector<double>{0.8}, same(1, 4), 3, 5e-3,
                                                5e-5, 0);
  EXPECT_EQ(one[0], (draft_shape{4, true}));
  // ... but where a row costs what a step does, the tree's three rows a level do not pay for
  // 0.8 over 0.5: a chain, or nothing.
  const auto dear = draft_chooser::allocate_tree(std::vector<double>{0.5}, std::vector<double>{0.8}, same(1, 4), 3, 1e-4,
                                                 1e-4, 0);
  EXPECT_FALSE(dear[0].tree);
  // A large batch on a compute-bound device: nothing at all, trees or chains.
  const auto big = draft_chooser::allocate_tree(std::vector<double>(32, 0.6), std::vector<double>(32, 0.9), same(32, 4),
                                                3, 0, 1e-4, 0);
  for (const draft_shape& x : big) EXPECT_EQ(x, draft_shape{});
  // Never past a sequence's own room.
  const auto room = draft_chooser::allocate_tree(std::vector<double>{0.5, 0.5}, std::vector<double>{0.9, 0.9},
                                                 std::vector<int32_t>{2, 0}, 2, 5e-3, 5e-5, 0);
  EXPECT_EQ(room[0], (draft_shape{2, true}));
  EXPECT_EQ(room[1], draft_shape{});
}

TEST(draft_chooser_tree, the_choice_is_the_best_of_every_depth_and_shape_combination) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  for (int trial = 0; trial < 300; ++trial) {
    const std::vector<double> chain = {u(rng), u(rng)};
    const std::vector<double> tree = {std::min(0.999, chain[0] + 0.4 * u(rng)), std::min(0.999, chain[1] + 0.4 * u(rng))};
    const double c = 1 + 3 * u(rng), a = 1e-3 * u(rng), b = 1e-4 * (0.1 + u(rng)), d = 1e-4 * u(rng) * u(rng);
    const std::vector<int32_t> caps = {3, 3};
    const auto got = draft_chooser::allocate_tree(chain, tree, caps, c, a, b, d);
    const double best = tree_rate(got, chain, tree, c, a, b, d);
    for (int32_t k0 = 0; k0 <= 3; ++k0)
      for (int32_t k1 = 0; k1 <= 3; ++k1)
        for (int t0 = 0; t0 < 2; ++t0)
          for (int t1 = 0; t1 < 2; ++t1) {
            const std::vector<draft_shape> other = {{k0, t0 == 1}, {k1, t1 == 1}};
            EXPECT_GE(best, tree_rate(other, chain, tree, c, a, b, d) * (1 - 1e-9))
                << "trial " << trial << ": " << k0 << t0 << " " << k1 << t1;
          }
  }
}

TEST(draft_chooser_tree, learns_both_acceptances_from_trees_and_probes_trees_when_only_chains_pay) {
  draft_chooser c;
  // Unfitted: chains at the ceiling with one tree (in turn), and nothing, in turn.
  const std::vector<double> half(4, 0.5);
  std::vector<draft_shape> first(4, draft_shape{3, false}), second = first;
  first[0].tree = true;
  second[1].tree = true;
  EXPECT_EQ(c.choose_tree(half, half, same(4, 3), 3), first);
  EXPECT_EQ(c.choose_tree(half, half, same(4, 3), 3), std::vector<draft_shape>(4, draft_shape{}));
  EXPECT_EQ(c.choose_tree(half, half, same(4, 3), 3), second);
  EXPECT_EQ(c.choose_tree(half, half, same(4, 3), 3), std::vector<draft_shape>(4, draft_shape{}));
  EXPECT_DOUBLE_EQ(c.nodes_per_level(3), 3) << "the width until a tree is seen";
  c.observe_tree_shape(8, 4);
  EXPECT_DOUBLE_EQ(c.nodes_per_level(3), 2);
  // A tree whose accepted path always leaves the spine at its first node: the chain's count
  // learns 0 of 4, the tree's 4 of 4.
  spec_acceptance s;
  for (int i = 0; i < 10; ++i) c.observe_tree_verify(s, 4, 4, 4, 0);
  EXPECT_LT(c.alpha(s), 0.2);
  EXPECT_GT(c.alpha_tree(s), 0.8);
  EXPECT_GT(c.alpha_tree_drafter(), 0.8);
  EXPECT_LT(c.alpha_drafter(), 0.2);
  // A fixed step cost dominating, and chains accepted as well as trees: chains only, and every
  // 32nd such step one drafting sequence (in turn) verifies a tree.
  for (int i = 0; i < 40; ++i) c.observe_step(1 + i % 9, 5e-3 + 5e-5 * (1 + i % 9));
  ASSERT_TRUE(c.cost_known());
  const std::vector<double> good(4, 0.8);
  int probes = 0;
  for (int step = 1; step <= 64; ++step) {
    const auto k = c.choose_tree(good, good, same(4, 3), 3);
    int trees = 0;
    for (const draft_shape& x : k) {
      EXPECT_EQ(x.depth, 3);
      trees += x.tree;
    }
    if (trees > 0) {
      ++probes;
      EXPECT_EQ(trees, 1);
      EXPECT_EQ(step % draft_chooser::kProbeEvery, 0);
    }
  }
  EXPECT_EQ(probes, 2);
}

}  // namespace
TEST(draft_chooser, a_margin_leaves_out_drafts_that_barely_pay) {
  // Batch 1, a 1 ms step, verification free, a draft token 0.48 ms, alpha 0.5: it pays by 4%
  // (0.5 > 1000 * 0.48e-3); choose's margin (kMargin, 10%) leaves it out.
  const std::vector<double> a = {0.5};
  EXPECT_EQ(draft_chooser::allocate(a, same(1, 1), 1e-3, 0, 4.8e-4, 0), same(1, 1));
  EXPECT_EQ(draft_chooser::allocate(a, same(1, 1), 1e-3, 0, 4.8e-4, 0, draft_chooser::kMargin), same(1, 0));
  // One that pays well still drafts.
  EXPECT_EQ(draft_chooser::allocate(std::vector<double>{0.9}, same(1, 1), 1e-3, 0, 4.8e-4, 0, draft_chooser::kMargin),
            same(1, 1));
}

TEST(draft_chooser, may_pay_bounds_a_draft_by_the_drafter_cost_alone) {
  draft_chooser c;
  EXPECT_TRUE(c.may_pay(0.01)) << "nothing measured yet";
  c.observe_step(1, 6e-4);          // a plain step at batch 1: 0.6 ms a token
  c.observe_drafter(3, 1.5e-3);     // 0.5 ms a draft token
  EXPECT_NEAR(c.plain_token_s(), 6e-4, 1e-12);
  EXPECT_FALSE(c.may_pay(0.3));     // 0.18 ms gained at best against 0.5 ms
  EXPECT_TRUE(c.may_pay(0.99));     // 0.594 ms against 0.5 ms
  // A verify step does not count as a plain one.
  c.observe_step(4, 1e-3, 3);
  EXPECT_NEAR(c.plain_token_s(), 6e-4, 1e-12);
  // A head's catch-up, 0.1 ms a row and a row per emitted token, is charged too.
  c.set_catch_up_per_token(1);
  c.observe_catch_up(10, 1e-3);
  EXPECT_FALSE(c.may_pay(0.99));    // 0.594 ms against 0.5 + 0.099 ms
}

TEST(draft_chooser, the_fit_skips_drafts_that_cannot_pay_but_still_probes) {
  draft_chooser c;
  const std::vector<double> poor = {0.2}, good = {0.99};
  // The first fitting step drafts at the ceiling (nothing is known yet) and measures the
  // drafter (0.5 ms a token) beside plain steps of 0.6 ms.
  EXPECT_EQ(c.choose(poor, same(1, 3), same(1, 100)), same(1, 3));
  c.observe_drafter(3, 1.5e-3);
  c.observe_step(4, 1.2e-3, 3);
  EXPECT_EQ(c.choose(poor, same(1, 3), same(1, 0)), same(1, 0));
  c.observe_step(1, 6e-4);
  // Poor acceptance: the next fitting draft cannot pay (0.2 * 0.6 ms < 0.5 ms): none.
  EXPECT_EQ(c.choose(poor, same(1, 3), same(1, 0)), same(1, 0));
  // Good acceptance would be worth fitting for.
  EXPECT_EQ(c.choose(good, same(1, 3), same(1, 0)), same(1, 0));  // (the other turn)
  EXPECT_EQ(c.choose(good, same(1, 3), same(1, 0)), same(1, 3));
  // Skipped fitting drafts count as idle steps: a probe (1.5 ms of drafts) comes once they add
  // up to 1 / kProbeShare times its cost (75 ms: 125 steps of 0.6 ms), not before.
  draft_chooser p;
  p.choose(poor, same(1, 3), same(1, 0));
  p.observe_drafter(3, 1.5e-3);
  p.observe_step(1, 6e-4);
  int first_probe = 0, probes = 0;
  for (int step = 1; step <= 300; ++step)
    if (p.choose(poor, same(1, 3), same(1, 0))[0] > 0) {
      ++probes;
      if (first_probe == 0) first_probe = step;
    }
  EXPECT_GE(probes, 1);
  EXPECT_GE(first_probe, 120);
  EXPECT_LE(probes, 3);
}

}  // namespace troupe
