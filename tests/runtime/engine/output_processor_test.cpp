// Proves the output processor on hand-made logit rows: plain decoding; greedy verification
// keeps drafts while they are the argmax and replaces the first miss; ends (stop tokens,
// max_tokens) inside a verified run stop it there; and speculative sampling (accept with
// min(1, p/q), resample from max(p - q, 0)) emits tokens distributed as the target's
// distribution, for deterministic and for sampled drafts (chi-square over many seeded draws).
#include "runtime/engine/output_processor.hpp"

#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "runtime/engine/sequence.hpp"

namespace troupe {
namespace {

constexpr int64_t V = 8;

std::vector<float> one_hot_rows(std::initializer_list<token_id> argmaxes) {
  std::vector<float> rows;
  for (token_id t : argmaxes) {
    std::vector<float> r(V, 0.0f);
    r[static_cast<size_t>(t)] = 5.0f;
    rows.insert(rows.end(), r.begin(), r.end());
  }
  return rows;
}

scheduled_seq verify_plan(std::vector<token_id> drafts, std::vector<float> probs = {}) {
  scheduled_seq p;
  p.phase = drafts.empty() ? seq_phase::decode : seq_phase::verify;
  p.n_new = 1 + static_cast<int32_t>(drafts.size());
  p.n_logits = p.n_new;
  p.drafted.tokens = std::move(drafts);
  p.drafted.probs = std::move(probs);
  return p;
}

std::unique_ptr<sequence> greedy_seq(int32_t max_tokens = 10) {
  sampling_params sp;
  sp.temperature = 0;
  sp.max_tokens = max_tokens;
  sp.logprobs = 1;
  auto s = std::make_unique<sequence>(0, "a", 0, std::vector<token_id>{1, 2, 3}, sp, nullptr);
  s->n_computed = 2;
  return s;
}

TEST(output_processor, decodes_one_row) {
  output_processor op(V, V, {7}, 100);
  auto s = greedy_seq();
  seq_result r = op.process(*s, verify_plan({}), one_hot_rows({4}));
  EXPECT_EQ(r.tokens, std::vector<token_id>({4}));
  ASSERT_EQ(r.logprobs.size(), 1u);
  EXPECT_EQ(r.logprobs[0].id, 4);
  EXPECT_EQ(s->tokens.back(), 4);
  EXPECT_FALSE(r.finished);
  EXPECT_EQ(r.n_drafted, 0);
}

TEST(output_processor, greedy_verification_keeps_drafts_while_they_are_the_argmax) {
  output_processor op(V, V, {7}, 100);
  {
    auto s = greedy_seq();  // all three drafts right: they and the bonus token
    seq_result r = op.process(*s, verify_plan({4, 5, 6}), one_hot_rows({4, 5, 6, 2}));
    EXPECT_EQ(r.tokens, std::vector<token_id>({4, 5, 6, 2}));
    EXPECT_EQ(r.n_drafted, 3);
    EXPECT_EQ(r.n_draft_accepted, 3);
    EXPECT_EQ(r.logprobs.size(), 4u);
  }
  {
    auto s = greedy_seq();  // the second draft wrong: the first kept, the second replaced
    seq_result r = op.process(*s, verify_plan({4, 1, 6}), one_hot_rows({4, 5, 6, 2}));
    EXPECT_EQ(r.tokens, std::vector<token_id>({4, 5}));
    EXPECT_EQ(r.n_draft_accepted, 1);
    EXPECT_EQ(s->tokens, std::vector<token_id>({1, 2, 3, 4, 5}));
  }
}

TEST(output_processor, an_end_inside_a_verified_run_stops_it_there) {
  output_processor op(V, V, {7}, 100);
  {
    auto s = greedy_seq();  // the stop token is drafted and right: nothing after it
    seq_result r = op.process(*s, verify_plan({4, 7, 6}), one_hot_rows({4, 7, 6, 2}));
    EXPECT_EQ(r.tokens, std::vector<token_id>({4, 7}));
    EXPECT_EQ(r.finished, finish_reason::stop);
  }
  {
    auto s = greedy_seq(2);  // max_tokens 2: never a third token, whatever was drafted
    seq_result r = op.process(*s, verify_plan({4, 5, 6}), one_hot_rows({4, 5, 6, 2}));
    EXPECT_EQ(r.tokens, std::vector<token_id>({4, 5}));
    EXPECT_EQ(r.finished, finish_reason::length);
  }
}

// Target logits for the first position after the prompt, and a drafter's distribution.
const std::vector<float> kTarget = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, 1.5f, -1.0f, 0.7f};
const std::vector<float> kDraftQ = {0.05f, 0.05f, 0.3f, 0.1f, 0.3f, 0.1f, 0.05f, 0.05f};

std::vector<double> softmax(const std::vector<float>& l) {
  std::vector<double> p(l.size());
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) z += p[i] = std::exp(static_cast<double>(l[i]));
  for (double& x : p) x /= z;
  return p;
}

// Chi-square statistic of counts against probabilities p.
double chi_square(const std::vector<int>& counts, const std::vector<double>& p, int n) {
  double x2 = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double e = p[i] * n;
    x2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  return x2;
}

// The first emitted token of n seeded sequences; draft(i) gives each one's draft and probs.
struct draws {
  std::vector<int> counts = std::vector<int>(V, 0);
  int accepted = 0;
  bool operator==(const draws&) const = default;
};
template <class DraftFn>
draws first_tokens(int n, DraftFn draft_of) {
  output_processor op(V, V, {}, 100);
  draws out;
  std::vector<float> rows = kTarget;
  rows.insert(rows.end(), kTarget.begin(), kTarget.end());  // the row after the draft
  for (int i = 0; i < n; ++i) {
    sampling_params sp;
    sp.temperature = 1;
    sp.max_tokens = 10;
    sp.seed = static_cast<uint64_t>(i) + 1;
    sequence s(0, "a", 0, {1, 2, 3}, sp, nullptr);
    s.n_computed = 2;
    auto [tok, probs] = draft_of(i);
    seq_result r = op.process(s, verify_plan({tok}, probs), rows);
    ++out.counts[static_cast<size_t>(r.tokens.at(0))];
    out.accepted += r.n_draft_accepted;
  }
  return out;
}

// 7 degrees of freedom: P(X2 > 24.3) = 0.001. The tests are seeded, so they do not flake.
constexpr double kChi2Limit = 24.3;

TEST(output_processor, speculative_sampling_follows_the_target_distribution_for_fixed_drafts) {
  const int n = 40000;
  for (token_id d : {3, 6}) {  // a likely draft and an unlikely one
    auto got = first_tokens(n, [&](int) { return std::pair<token_id, std::vector<float>>(d, {}); });
    EXPECT_LT(chi_square(got.counts, softmax(kTarget), n), kChi2Limit) << "draft " << d;
    // A deterministic draft is accepted with probability p(d).
    EXPECT_NEAR(static_cast<double>(got.accepted) / n, softmax(kTarget)[static_cast<size_t>(d)], 0.01) << d;
  }
}

TEST(output_processor, speculative_sampling_follows_the_target_distribution_for_sampled_drafts) {
  const int n = 40000;
  std::mt19937 rng(11);
  std::discrete_distribution<int> q(kDraftQ.begin(), kDraftQ.end());
  std::vector<float> probs(kDraftQ.begin(), kDraftQ.end());
  probs.resize(2 * V, 0.0f);  // (only the first drafted position matters here)
  auto got = first_tokens(n, [&](int) { return std::pair<token_id, std::vector<float>>(q(rng), probs); });
  EXPECT_LT(chi_square(got.counts, softmax(kTarget), n), kChi2Limit);
  // Acceptance is what theory says: the sum over tokens of min(p, q).
  const auto p = softmax(kTarget);
  double expect_accept = 0;
  for (size_t i = 0; i < V; ++i) expect_accept += std::min(p[i], static_cast<double>(kDraftQ[i]));
  EXPECT_NEAR(static_cast<double>(got.accepted) / n, expect_accept, 0.01);
}

TEST(output_processor, the_same_seed_gives_the_same_tokens) {
  auto run = [] {
    return first_tokens(500, [](int i) { return std::pair<token_id, std::vector<float>>(i % V, {}); });
  };
  EXPECT_EQ(run(), run());
}

// Trees: a draft with parents; rows are the root's, then each node's.
scheduled_seq tree_plan(std::vector<token_id> tokens, std::vector<int32_t> parents) {
  scheduled_seq p = verify_plan(std::move(tokens));
  p.drafted.parents = std::move(parents);
  return p;
}

TEST(output_processor, greedy_tree_verification_follows_the_child_that_is_the_argmax) {
  output_processor op(V, V, {}, 100);
  auto s = greedy_seq();
  // Root's children: 4 (node 0), 5 (node 1); node 1's children: 6 (node 2), 2 (node 3).
  // Target: after the root 5, after node 1 then 2, after node 3 then 7.
  const auto rows = one_hot_rows({5, 0, 2, 0, 7});
  seq_result r = op.process(*s, tree_plan({4, 5, 6, 2}, {-1, -1, 1, 1}), rows);
  EXPECT_EQ(r.tokens, (std::vector<token_id>{5, 2, 7}));
  EXPECT_EQ(r.accepted_nodes, (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(r.logprobs.size(), 3u) << "a logprob per emitted token";
  EXPECT_EQ(r.n_draft_accepted, 2);
  EXPECT_EQ(r.n_drafted, 4);
  // No child agrees: the target's token alone.
  auto s2 = greedy_seq();
  seq_result r2 = op.process(*s2, tree_plan({4, 6}, {-1, -1}), one_hot_rows({3, 0, 0}));
  EXPECT_EQ(r2.tokens, (std::vector<token_id>{3}));
  EXPECT_TRUE(r2.accepted_nodes.empty());
}

// Multi-candidate rejection over siblings (deterministic drafts): the first token is distributed
// as the target's, and a sibling set is accepted with probability the sum of p over it.
TEST(output_processor, tree_rejection_sampling_follows_the_target_distribution) {
  const int n = 40000;
  output_processor op(V, V, {}, 100);
  const auto p = softmax(kTarget);
  for (const std::vector<token_id>& kids : {std::vector<token_id>{3, 6, 1}, std::vector<token_id>{6, 0}}) {
    std::vector<float> rows;
    for (size_t i = 0; i <= kids.size(); ++i) rows.insert(rows.end(), kTarget.begin(), kTarget.end());
    std::vector<int> counts(V, 0);
    int accepted = 0;
    for (int i = 0; i < n; ++i) {
      sampling_params sp;
      sp.temperature = 1;
      sp.max_tokens = 10;
      sp.seed = static_cast<uint64_t>(i) + 1;
      sequence s(0, "a", 0, {1, 2, 3}, sp, nullptr);
      s.n_computed = 2;
      seq_result r = op.process(s, tree_plan(kids, std::vector<int32_t>(kids.size(), -1)), rows);
      ++counts[static_cast<size_t>(r.tokens.at(0))];
      accepted += r.n_draft_accepted;
    }
    EXPECT_LT(chi_square(counts, p, n), kChi2Limit) << kids.size() << " siblings";
    double mass = 0;
    for (token_id t : kids) mass += p[static_cast<size_t>(t)];
    EXPECT_NEAR(static_cast<double>(accepted) / n, mass, 0.01) << kids.size() << " siblings";
  }
}

}  // namespace
}  // namespace troupe
