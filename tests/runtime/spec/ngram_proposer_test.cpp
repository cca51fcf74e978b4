// Proves the NGram drafter's lookup: the longest suffix match wins, the most recent among
// equally long ones, sizes outside [min, max] are not tried, drafts stop at the end of what is
// known and at max_tokens, and nothing is proposed when nothing recurs; with a tree width, every
// match's continuation goes into a trie; and the tree helpers (trim, spine, top-w, siblings).
#include "runtime/spec/ngram_proposer.hpp"

#include <vector>

#include <gtest/gtest.h>

#include "runtime/engine/draft_tree.hpp"
#include "runtime/engine/sequence.hpp"

namespace troupe {
namespace {

std::vector<token_id> lookup(const std::vector<token_id>& t, int32_t max_n, int32_t min_n, int32_t k) {
  const auto s = ngram_lookup(t, {max_n, min_n}, k);
  return {s.begin(), s.end()};
}

TEST(ngram_lookup, proposes_what_followed_the_longest_match) {
  //                      0  1  2  3  4  5  6  7  8  9
  const std::vector<token_id> t = {1, 2, 3, 9, 8, 2, 3, 7, 6, 1, 2, 3};
  // Suffix 1 2 3 matches at 0..2 (length 3); 2 3 also at 5..6, but shorter.
  EXPECT_EQ(lookup(t, 4, 1, 3), (std::vector<token_id>{9, 8, 2}));
  // With the maximum at 2, the most recent 2 3 (at 5..6) wins.
  EXPECT_EQ(lookup(t, 2, 1, 3), (std::vector<token_id>{7, 6, 1}));
}

TEST(ngram_lookup, respects_the_minimum_and_max_tokens_and_the_end) {
  const std::vector<token_id> t = {5, 6, 7, 1, 2, 4, 6};
  EXPECT_EQ(lookup(t, 3, 1, 5), (std::vector<token_id>{7, 1, 2, 4, 6}));  // "6" recurs: length 1
  EXPECT_TRUE(lookup(t, 3, 2, 5).empty()) << "no match of two tokens";
  EXPECT_EQ(lookup(t, 3, 1, 2), (std::vector<token_id>{7, 1}));
  // The match just before the end: only what is known is proposed.
  const std::vector<token_id> r = {4, 4, 4};
  EXPECT_EQ(lookup(r, 2, 1, 8), (std::vector<token_id>{4}));
}

TEST(ngram_lookup, nothing_recurs_nothing_is_proposed) {
  EXPECT_TRUE(lookup({1, 2, 3, 4}, 3, 1, 4).empty());
  EXPECT_TRUE(lookup({1}, 3, 1, 4).empty());
  EXPECT_TRUE(lookup({}, 3, 1, 4).empty());
  EXPECT_TRUE(lookup({1, 1}, 3, 1, 0).empty());
}

TEST(ngram_proposer, drafts_from_prompt_and_output_and_refuses_bad_sizes) {
  EXPECT_FALSE(ngram_proposer::create({2, 3}).ok());
  EXPECT_FALSE(ngram_proposer::create({2, 0}).ok());
  auto p = ngram_proposer::create({3, 1});
  ASSERT_TRUE(p.ok()) << p.message();
  sampling_params sp;
  sequence s(0, "a", 0, {10, 11, 12, 13, 14}, sp, nullptr);
  s.tokens.push_back(11);  // generated: the output so far counts too
  s.tokens.push_back(12);
  EXPECT_EQ((*p)->propose(s, 2).tokens, (std::vector<token_id>{13, 14}));
  EXPECT_TRUE((*p)->propose(s, 2).probs.empty()) << "deterministic drafts";
  EXPECT_STREQ((*p)->name(), "NGram");
}

// Trees (spec_tree_width > 1): every match's continuation, best first, inserted into a trie.
TEST(ngram_proposer, a_tree_holds_every_matchs_continuation_branching_where_they_diverge) {
  // "1 2" occurs three times before the end: followed by 3 4, 3 5 and 6 7 (most recent last).
  const std::vector<token_id> t = {1, 2, 3, 4, 9, 1, 2, 3, 5, 9, 1, 2, 6, 7, 9, 1, 2};
  const auto m = ngram_matches(t, {2, 1}, 2, 8);
  ASSERT_GE(m.size(), 3u);
  EXPECT_EQ(std::vector<token_id>(m[0].begin(), m[0].end()), (std::vector<token_id>{6, 7})) << "ngram_lookup's first";
  EXPECT_EQ(std::vector<token_id>(m[1].begin(), m[1].end()), (std::vector<token_id>{3, 5}));
  EXPECT_EQ(std::vector<token_id>(m[2].begin(), m[2].end()), (std::vector<token_id>{3, 4}));
  auto p = ngram_proposer::create({2, 2});
  ASSERT_TRUE(p.ok());
  sampling_params sp;
  sequence s(0, "a", 0, t, sp, nullptr);
  (*p)->set_tree_width(3);
  const draft d = (*p)->propose(s, 2);
  // Spine 6 7; 3 beside 6 at the root, with children 5 and 4.
  EXPECT_EQ(d.tokens, (std::vector<token_id>{6, 7, 3, 5, 4}));
  EXPECT_EQ(d.parents, (std::vector<int32_t>{-1, 0, -1, 2, 2}));
  EXPECT_TRUE(d.probs.empty());
  // Width 1 at a node: the others stop where they would branch; a single path is a chain.
  const draft one = draft_tree_of_paths(std::vector<std::vector<token_id>>{{6, 7}, {3, 5}}, 1, 8);
  EXPECT_EQ(one.tokens, (std::vector<token_id>{6, 7}));
  EXPECT_FALSE(one.is_tree());
  (*p)->set_tree_width(2);
  EXPECT_EQ((*p)->propose(s, 2).tokens, (std::vector<token_id>{6, 7, 3, 5})) << "2 children per node";
}

TEST(draft_tree, trimming_keeps_parents_before_children_and_the_spine_is_a_chain) {
  draft d;
  d.tokens = {10, 11, 12, 13, 14, 15};
  d.parents = {-1, 0, -1, 1, 2, 3};  // 10 -> 11 -> 13 -> 15; 12 -> 14
  EXPECT_EQ(draft_depths(d), (std::vector<int32_t>{1, 2, 1, 3, 2, 4}));
  draft a = d;
  trim_draft_tree(a, 2, 64);
  EXPECT_EQ(a.tokens, (std::vector<token_id>{10, 11, 12, 14}));
  EXPECT_EQ(a.parents, (std::vector<int32_t>{-1, 0, -1, 2}));
  draft b = d;
  trim_draft_tree(b, 8, 2);
  EXPECT_EQ(b.tokens, (std::vector<token_id>{10, 11}));
  EXPECT_FALSE(b.is_tree()) << "one path left: a chain";
  draft c = d;
  draft_spine(c);
  EXPECT_EQ(c.tokens, (std::vector<token_id>{10, 11, 13, 15}));
  EXPECT_FALSE(c.is_tree());
  const float row[] = {0.1f, 0.9f, 0.5f, 0.9f, -1.0f};
  EXPECT_EQ(draft_top_tokens(row, 5, 3), (std::vector<token_id>{1, 3, 2})) << "ties to the lower id";
  const draft s = draft_tree_with_siblings(std::vector<token_id>{1, 2}, std::vector<std::vector<token_id>>{{3, 1}, {4}}, 64);
  EXPECT_EQ(s.tokens, (std::vector<token_id>{1, 2, 3, 4}));
  EXPECT_EQ(s.parents, (std::vector<int32_t>{-1, 0, -1, 0}));
}

}  // namespace
}  // namespace troupe
