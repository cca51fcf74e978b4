// Proves the NGram drafter's lookup: the longest suffix match wins, the most recent among
// equally long ones, sizes outside [min, max] are not tried, drafts stop at the end of what is
// known and at max_tokens, and nothing is proposed when nothing recurs.
#include "runtime/spec/ngram_proposer.hpp"

#include <vector>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace troupe
