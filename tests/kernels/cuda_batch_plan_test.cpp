// Proves the CUDA executor's host-side layout of a batch (kernels/cuda/batch_plan.hpp), which
// needs no GPU: token ids, positions and KV slots from block tables; the logit rows; prefill
// tiles of (token, head) rows; decode items and their splits; graph keys, padding, and section
// offsets that depend on the batch size only; copy-on-write waves.
#include <gtest/gtest.h>

#include <numeric>

#include "kernels/cuda/batch_plan.hpp"

namespace troupe::cuda {
namespace {

plan_options opts(int32_t block_size = 4, int32_t n_head = 8, int32_t n_head_kv = 2) {
  plan_options o;
  o.block_size = block_size;
  o.n_head = n_head;
  o.n_head_kv = n_head_kv;
  o.split_tokens = 16;
  o.max_splits = 4;
  o.graph_batch_sizes = {1, 2, 4, 8};
  return o;
}

std::vector<int32_t> v(std::span<const int32_t> s) { return {s.begin(), s.end()}; }

TEST(cuda_batch_plan, slots_positions_and_logit_rows_follow_the_block_tables) {
  forward_batch b;
  const std::vector<token_id> t0 = {10, 11, 12, 13, 14}, t1 = {20, 21};
  const std::vector<int32_t> blocks0 = {7, 3}, blocks1 = {5, 9, 2};
  b.add(0, t0, blocks0, 1);  // a prompt: logits for its last token
  b.add(6, t1, blocks1, 2);  // a chunk continuing at position 6, logits for both
  const batch_plan p = make_plan(b, opts());
  EXPECT_FALSE(p.graph);  // not a pure decode step
  EXPECT_EQ(p.n_tokens, 7);
  EXPECT_EQ(v(p.tokens()), (std::vector<int32_t>{10, 11, 12, 13, 14, 20, 21}));
  EXPECT_EQ(v(p.positions()), (std::vector<int32_t>{0, 1, 2, 3, 4, 6, 7}));
  // Position p lives at block table[p / 4], offset p % 4.
  EXPECT_EQ(v(p.slots()), (std::vector<int32_t>{28, 29, 30, 31, 12, 9 * 4 + 2, 9 * 4 + 3}));
  EXPECT_EQ(v(p.logit_rows()), (std::vector<int32_t>{4, 5, 6}));
  EXPECT_EQ(p.n_real_logits, 3);
  // Block tables are packed as far as each context reaches: 5 tokens need 2 blocks, 8 need 2.
  EXPECT_EQ(v(p.section(p.layout.block_tables, 4)), (std::vector<int32_t>{7, 3, 5, 9}));
  EXPECT_EQ(p.layout.total, p.layout.block_tables + 4);
}

TEST(cuda_batch_plan, prefill_tiles_cover_every_token_and_head_of_a_group) {
  forward_batch b;
  std::vector<token_id> t(9, 1);
  const std::vector<int32_t> blocks = {0, 1, 2, 3};
  b.add(3, t, blocks, 1);  // 9 tokens at positions 3..11, group of 4 heads: 36 rows
  const batch_plan p = make_plan(b, opts());
  ASSERT_EQ(p.n_prefill, 2);  // 36 rows in tiles of 32
  ASSERT_EQ(p.n_decode, 0);
  const prefill_item* it = p.prefill_items();
  EXPECT_EQ(it[0].q_row, 0);
  EXPECT_EQ(it[0].n_q, 9);
  EXPECT_EQ(it[0].pos0, 3);
  EXPECT_EQ(it[0].row0, 0);
  EXPECT_EQ(it[1].row0, prefill_tile_rows);
  EXPECT_EQ(it[1].table_offset, 0);
}

TEST(cuda_batch_plan, one_new_token_uses_decode_attention_in_a_mixed_batch) {
  forward_batch b;
  const std::vector<token_id> prompt = {1, 2, 3}, one = {4};
  const std::vector<int32_t> a = {0, 1}, c = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  b.add(0, prompt, a, 1);
  b.add(36, one, c, 1);  // context 37
  const batch_plan p = make_plan(b, opts());
  ASSERT_EQ(p.n_decode, 1);
  ASSERT_EQ(p.n_prefill, 1);
  EXPECT_FALSE(p.graph);
  const decode_item d = p.decode_items()[0];
  EXPECT_EQ(d.q_row, 3);
  EXPECT_EQ(d.n_ctx, 37);
  EXPECT_EQ(d.table_offset, 1);  // after the prompt's one block
  // 37 keys in chunks of 16: 3 chunks, rounded up to 4, at most 4 splits of 16.
  EXPECT_EQ(p.split.ctx_chunks, 4);
  EXPECT_EQ(p.split.n_splits, 4);
  EXPECT_EQ(p.split.split_len, 16);
  const std::vector<int32_t> want_table = {0, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_EQ(v(p.section(p.layout.block_tables, 10)), want_table);
}

TEST(cuda_batch_plan, splits_grow_longer_once_there_are_max_splits) {
  EXPECT_EQ(splits_for(1, 256, 64).n_splits, 1);
  EXPECT_EQ(splits_for(256, 256, 64).n_splits, 1);
  EXPECT_EQ(splits_for(257, 256, 64).n_splits, 2);
  const split_plan s = splits_for(100000, 256, 64);  // 391 chunks -> 512
  EXPECT_EQ(s.ctx_chunks, 512);
  EXPECT_EQ(s.n_splits, 64);
  EXPECT_EQ(s.split_len, 512 / 64 * 256);
  EXPECT_GE(static_cast<int64_t>(s.n_splits) * s.split_len, 100000);
}

TEST(cuda_batch_plan, pure_decode_steps_get_a_graph_key_and_padding) {
  forward_batch b;
  std::vector<std::vector<int32_t>> tables = {{0, 1}, {2}, {3, 4, 5}};
  const int32_t past[] = {5, 2, 9};
  for (int s = 0; s < 3; ++s) {
    const token_id t = 100 + s;
    b.add(past[s], std::span(&t, 1), tables[static_cast<size_t>(s)], 1);
  }
  const batch_plan p = make_plan(b, opts());
  ASSERT_TRUE(p.graph);
  EXPECT_EQ(p.graph->batch, 4);       // padded up to the next captured size
  EXPECT_EQ(p.graph->ctx_chunks, 1);  // 10 keys fit one chunk of 16
  EXPECT_EQ(p.n_tokens, 4);
  EXPECT_EQ(p.n_real_tokens, 3);
  EXPECT_EQ(p.n_logits, 4);
  EXPECT_EQ(p.n_real_logits, 3);
  EXPECT_EQ(p.tokens()[3], 0);
  EXPECT_EQ(p.slots()[3], -1);  // padding stores nothing
  EXPECT_EQ(p.logit_rows()[3], 3);
  const decode_item pad = p.decode_items()[3];
  EXPECT_EQ(pad.n_ctx, 0);  // and attends to nothing
  EXPECT_EQ(p.decode_items()[2].n_ctx, 10);
  EXPECT_EQ(p.decode_items()[2].table_offset, 2 + 1);
  EXPECT_EQ(p.slots()[2], 5 * 4 + 1);  // position 9: block 5, offset 1
}

TEST(cuda_batch_plan, a_graph_reads_every_step_at_the_same_offsets) {
  // Two decode steps of 3 sequences with different contexts: same key, same section offsets
  // (only the block tables, last, differ in length).
  auto step = [](int32_t past) {
    forward_batch b;
    std::vector<int32_t> table(8);
    std::iota(table.begin(), table.end(), 0);
    for (int s = 0; s < 3; ++s) {
      const token_id t = s;
      b.add(past + s, std::span(&t, 1), table, 1);
    }
    return make_plan(b, opts());
  };
  const batch_plan a = step(3), c = step(12);
  ASSERT_TRUE(a.graph && c.graph);
  EXPECT_EQ(*a.graph, *c.graph);
  EXPECT_EQ(a.layout.tokens, c.layout.tokens);
  EXPECT_EQ(a.layout.positions, c.layout.positions);
  EXPECT_EQ(a.layout.slots, c.layout.slots);
  EXPECT_EQ(a.layout.logit_rows, c.layout.logit_rows);
  EXPECT_EQ(a.layout.decode_items, c.layout.decode_items);
  EXPECT_EQ(a.layout.block_tables, c.layout.block_tables);
  EXPECT_NE(a.layout.total, c.layout.total);
}

TEST(cuda_batch_plan, graph_keys_separate_context_buckets_and_sizes) {
  auto key = [](int n_seqs, int32_t past) {
    forward_batch b;
    std::vector<int32_t> table(64);
    std::iota(table.begin(), table.end(), 0);
    for (int s = 0; s < n_seqs; ++s) {
      const token_id t = 1;
      b.add(past, std::span(&t, 1), table, 1);
    }
    return make_plan(b, opts()).graph;
  };
  EXPECT_EQ(key(1, 3)->batch, 1);
  EXPECT_EQ(key(2, 3)->batch, 2);
  EXPECT_EQ(key(5, 3)->batch, 8);
  EXPECT_FALSE(key(9, 3));  // larger than every captured size: eager
  EXPECT_EQ(key(1, 15)->ctx_chunks, 1);
  EXPECT_EQ(key(1, 16)->ctx_chunks, 2);   // 17 keys
  EXPECT_EQ(key(1, 40)->ctx_chunks, 4);   // 41 keys: 3 chunks, rounded up
  EXPECT_EQ(key(1, 200)->ctx_chunks, 16);  // 201 keys: 13 chunks
  EXPECT_TRUE(graph_key({1, 2}) < graph_key({1, 4}));
  EXPECT_TRUE(graph_key({1, 8}) < graph_key({2, 1}));
}

TEST(cuda_batch_plan, decode_asking_no_logits_or_several_is_not_graphed) {
  forward_batch b;
  const std::vector<int32_t> table = {0, 1};
  const token_id t = 1;
  b.add(2, std::span(&t, 1), table, 0);
  EXPECT_FALSE(make_plan(b, opts()).graph);
  plan_options no_graphs = opts();
  no_graphs.graph_batch_sizes.clear();
  forward_batch c;
  c.add(2, std::span(&t, 1), table, 1);
  EXPECT_FALSE(make_plan(c, no_graphs).graph);
  EXPECT_TRUE(make_plan(c, opts()).graph);
}

TEST(cuda_batch_plan, graph_batch_for_picks_the_smallest_size_that_fits) {
  const std::vector<int32_t> sizes = {1, 2, 4, 8, 16};
  EXPECT_EQ(graph_batch_for(1, sizes), 1);
  EXPECT_EQ(graph_batch_for(3, sizes), 4);
  EXPECT_EQ(graph_batch_for(16, sizes), 16);
  EXPECT_EQ(graph_batch_for(17, sizes), 0);
  EXPECT_EQ(graph_batch_for(1, {}), 0);
}

TEST(cuda_batch_plan, copy_waves_keep_the_order_that_matters) {
  // Independent pairs share a wave; a pair reading a block that the wave writes, or writing
  // one it reads, starts a new one; copies onto themselves are dropped.
  const std::vector<int32_t> src = {1, 2, 3, 4, 6, 6}, dst = {5, 6, 7, 3, 6, 8};
  const auto w = copy_waves(src, dst);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0], (std::vector<std::pair<int32_t, int32_t>>{{1, 5}, {2, 6}, {3, 7}}));
  // 4 -> 3 writes 3, which the first wave reads; 6 -> 8 reads 6, written by the first wave.
  EXPECT_EQ(w[1], (std::vector<std::pair<int32_t, int32_t>>{{4, 3}, {6, 8}}));
  EXPECT_TRUE(copy_waves(std::vector<int32_t>{}, std::vector<int32_t>{}).empty());
}

TEST(cuda_batch_plan, copy_waves_equal_sequential_copies) {
  // Simulate: apply waves in parallel (reads before writes within a wave) and sequentially.
  const std::vector<int32_t> src = {0, 1, 2, 3, 1, 4, 0, 5}, dst = {1, 2, 3, 4, 5, 0, 6, 7};
  std::vector<int> seq(8), par(8);
  std::iota(seq.begin(), seq.end(), 100);
  par = seq;
  for (size_t i = 0; i < src.size(); ++i) seq[static_cast<size_t>(dst[i])] = seq[static_cast<size_t>(src[i])];
  for (const auto& wave : copy_waves(src, dst)) {
    std::vector<std::pair<int32_t, int>> writes;
    for (auto [s, d] : wave) writes.emplace_back(d, par[static_cast<size_t>(s)]);
    for (auto [d, val] : writes) par[static_cast<size_t>(d)] = val;
  }
  EXPECT_EQ(par, seq);
}

}  // namespace
}  // namespace troupe::cuda
