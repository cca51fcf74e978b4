// The one tree builder of the model drafters (runtime/engine/draft_tree.hpp: draft_pick and
// draft_of_chain, used by DraftTarget's draft_model_proposer and by MTP's and Eagle-3's
// head_chain): "the chain of argmaxes plus the top-w siblings" position by position, cut to the
// first k positions; and the spine's nodes and a draft's depth, which the adaptive draft length
// reads from every tree verification.
#include <vector>

#include <gtest/gtest.h>

#include "runtime/engine/draft_tree.hpp"

namespace troupe {
namespace {

TEST(draft_tree_builder, the_chain_of_argmaxes_with_the_next_best_as_leaves) {
  // Three draft positions over a vocabulary of 5.
  const std::vector<std::vector<float>> rows = {{0.1f, 0.9f, 0.5f, 0.7f, -1.0f},
                                                {2.0f, 0.0f, 2.0f, 1.0f, 3.0f},
                                                {0.0f, 0.0f, 0.0f, 0.0f, 1.0f}};
  std::vector<token_id> chain;
  std::vector<std::vector<token_id>> siblings;
  for (const auto& r : rows) chain.push_back(draft_pick(r.data(), 5, 3, &siblings));
  EXPECT_EQ(chain, (std::vector<token_id>{1, 4, 4}));
  ASSERT_EQ(siblings.size(), 3u);
  EXPECT_EQ(siblings[0], (std::vector<token_id>{3, 2}));
  EXPECT_EQ(siblings[1], (std::vector<token_id>{0, 2})) << "ties to the lower id";
  EXPECT_EQ(siblings[2], (std::vector<token_id>{0, 1}));

  // Width 1 (or no siblings asked): the argmax alone, the first of equals, nothing appended.
  std::vector<std::vector<token_id>> none;
  EXPECT_EQ(draft_pick(rows[1].data(), 5, 1, &none), 4);
  EXPECT_EQ(draft_pick(rows[1].data(), 4, 1, &none), 0) << "only the first n ids count";
  EXPECT_EQ(draft_pick(rows[0].data(), 5, 3, nullptr), 1);
  EXPECT_TRUE(none.empty());

  // The draft of the first two positions: the chain 1 -> 4, then the leaves beside each.
  const draft two = draft_of_chain(chain, siblings, 2);
  EXPECT_EQ(two.tokens, (std::vector<token_id>{1, 4, 3, 2, 0, 2}));
  EXPECT_EQ(two.parents, (std::vector<int32_t>{-1, 0, -1, -1, 0, 0}));
  EXPECT_EQ(draft_spine_nodes(two), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(draft_depth(two), 2);
  // Asking past what was drafted gives what there is; no siblings gives the chain.
  EXPECT_EQ(draft_of_chain(chain, siblings, 9).tokens.size(), 3u + 6u);
  const draft plain = draft_of_chain(chain, {}, 2);
  EXPECT_EQ(plain.tokens, (std::vector<token_id>{1, 4}));
  EXPECT_FALSE(plain.is_tree());
  EXPECT_EQ(draft_spine_nodes(plain), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(draft_depth(plain), 2);
  EXPECT_TRUE(draft_of_chain(chain, siblings, 0).empty());
}

TEST(draft_tree_builder, a_wide_tree_stops_at_the_node_ceiling) {
  std::vector<float> row(100);
  for (size_t i = 0; i < row.size(); ++i) row[i] = static_cast<float>(i % 17);
  std::vector<token_id> chain;
  std::vector<std::vector<token_id>> siblings;
  for (int pos = 0; pos < 20; ++pos) chain.push_back(draft_pick(row.data(), 100, kMaxSpecTreeWidth, &siblings));
  const draft d = draft_of_chain(chain, siblings, 20);
  EXPECT_EQ(static_cast<int32_t>(d.tokens.size()), kMaxTreeNodes - 1);
  EXPECT_EQ(draft_spine_nodes(d).size(), 20u) << "the chain first, then the leaves that fit";
  EXPECT_EQ(draft_depth(d), 20);
}

}  // namespace
}  // namespace troupe
