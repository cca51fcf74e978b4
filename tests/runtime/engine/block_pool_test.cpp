// Proves the block pool's radix tree: longest-prefix matching in whole blocks, pins that
// keep blocks, least-recently-used eviction of unpinned leaves only, the recycling bound,
// and KV events whose replay reproduces the cached set exactly under random workloads.
#include "runtime/engine/block_pool.hpp"

#include <algorithm>
#include <random>
#include <set>

#include <gtest/gtest.h>

namespace troupe {
namespace {

std::vector<block_hash> chain(std::vector<token_id> tokens, int32_t bs = 2) {
  return hash_full_blocks(tokens, bs, 42);
}

// Replays events into a set of hashes, as a router's indexer would.
struct replayer {
  std::set<uint64_t> cached;
  uint64_t next_id = 0;
  void apply(const std::vector<kv_event>& events) {
    for (const kv_event& e : events) {
      ASSERT_EQ(e.event_id, next_id++) << "event ids increase by one";
      switch (e.type) {
        case kv_event::kind::block_stored:
          if (e.parent_hash) {
            ASSERT_TRUE(cached.count(*e.parent_hash)) << "a stored chain's parent is cached";
          }
          for (uint64_t h : e.block_hashes) ASSERT_TRUE(cached.insert(h).second);
          break;
        case kv_event::kind::block_removed:
          for (uint64_t h : e.block_hashes) ASSERT_EQ(cached.erase(h), 1u);
          break;
        case kv_event::kind::all_blocks_cleared: cached.clear(); break;
      }
    }
  }
};

TEST(block_pool, matches_the_longest_cached_prefix_and_pins_it) {
  block_pool p(8, 2, true, -1);
  auto a = chain({1, 2, 3, 4, 5, 6});
  auto blocks = *p.allocate(3);
  p.cache_full_blocks(blocks, a, std::nullopt);
  p.release(blocks);
  EXPECT_EQ(p.n_cached(), 3);
  EXPECT_EQ(p.n_available(), 8);  // cached but unpinned blocks can still be handed out
  auto b = chain({1, 2, 3, 4, 9, 9});
  EXPECT_EQ(p.count_cached_prefix(b), 2u);
  auto got = p.match(b);
  EXPECT_EQ(got, std::vector<int32_t>(blocks.begin(), blocks.begin() + 2));
  EXPECT_EQ(p.n_available(), 6);
  p.release(got);
}

TEST(block_pool, evicts_unpinned_leaves_least_recently_used_first) {
  block_pool p(4, 2, true, -1);
  replayer r;
  auto x = chain({1, 1, 2, 2});  // two blocks: x0 <- x1
  auto y = chain({3, 3});
  auto bx = *p.allocate(2);
  p.cache_full_blocks(bx, x, std::nullopt);
  auto by = *p.allocate(1);
  p.cache_full_blocks(by, y, std::nullopt);
  p.release(bx);  // x1 is the older leaf, then y0
  p.release(by);
  r.apply(p.drain_events());
  // One free block, then the LRU leaf x1; then x0, a leaf now and older than y0.
  auto one = *p.allocate(2);
  r.apply(p.drain_events());
  EXPECT_EQ(r.cached, std::set<uint64_t>({x[0].value, y[0].value}));
  auto two = *p.allocate(1);
  r.apply(p.drain_events());
  EXPECT_EQ(r.cached, std::set<uint64_t>({y[0].value}));
  EXPECT_FALSE(p.allocate(2).has_value());
  p.release(one);
  p.release(two);
}

TEST(block_pool, pinned_blocks_are_never_evicted) {
  block_pool p(2, 2, true, -1);
  auto x = chain({1, 1, 2, 2});
  auto bx = *p.allocate(2);
  p.cache_full_blocks(bx, x, std::nullopt);
  EXPECT_FALSE(p.allocate(1).has_value());
  p.release(bx);
  EXPECT_TRUE(p.allocate(2).has_value());
}

TEST(block_pool, a_duplicate_block_is_replaced_by_the_cached_one) {
  block_pool p(4, 2, true, -1);
  auto x = chain({1, 1, 2, 2});
  auto a = *p.allocate(2), b = *p.allocate(2);
  const auto a0 = a;
  p.cache_full_blocks(a, x, std::nullopt);
  p.cache_full_blocks(b, x, std::nullopt);  // the same prefix computed twice at once
  EXPECT_EQ(p.n_cached(), 2);
  EXPECT_EQ(b, a0) << "the second sequence adopts the cached blocks";
  EXPECT_EQ(p.n_available(), 2);  // its own two went back
  p.release(b);
  p.release(a);
  EXPECT_EQ(p.n_available(), 4);
}

TEST(block_pool, recycling_bound_limits_finished_sequences) {
  block_pool p(16, 2, true, 2);
  std::vector<std::vector<block_hash>> chains;
  for (token_id s = 0; s < 4; ++s) {
    auto c = chain({s, s, s, s});
    auto b = *p.allocate(2);
    p.cache_full_blocks(b, c, std::nullopt);
    p.release(b);
    p.retire_sequence(c);
    chains.push_back(c);
  }
  EXPECT_EQ(p.n_cached(), 4);  // the two most recent finished sequences keep theirs
  EXPECT_EQ(p.count_cached_prefix(chains[0]), 0u);
  EXPECT_EQ(p.count_cached_prefix(chains[1]), 0u);
  EXPECT_EQ(p.count_cached_prefix(chains[3]), 2u);
}

TEST(block_pool, clear_forgets_everything_and_says_so) {
  block_pool p(4, 2, true, -1);
  replayer r;
  auto b = *p.allocate(2);
  p.cache_full_blocks(b, chain({5, 5, 6, 6}), std::nullopt);
  p.clear_cache();
  r.apply(p.drain_events());
  EXPECT_TRUE(r.cached.empty());
  EXPECT_EQ(p.n_cached(), 0);
  p.release(b);
  EXPECT_EQ(p.n_available(), 4);
}

TEST(block_pool, event_replay_reproduces_the_cached_set_under_random_workloads) {
  for (unsigned seed = 0; seed < 20; ++seed) {
    std::mt19937 rng(seed);
    block_pool p(24, 2, true, seed % 3 == 0 ? 3 : -1);
    replayer r;
    struct live {
      std::vector<int32_t> blocks;
      std::vector<block_hash> hashes;
    };
    std::vector<live> running;
    for (int op = 0; op < 400; ++op) {
      const int what = std::uniform_int_distribution<int>(0, 9)(rng);
      if (what < 5) {  // a new sequence sharing random prefixes (few distinct tokens)
        std::vector<token_id> toks(std::uniform_int_distribution<size_t>(2, 10)(rng));
        for (auto& t : toks) t = std::uniform_int_distribution<token_id>(0, 2)(rng);
        auto hashes = chain(toks);
        auto got = p.match(hashes);
        auto more = p.allocate(static_cast<int32_t>(hashes.size() - got.size()));
        if (!more) {
          p.release(got);
          continue;
        }
        live l{got, hashes};
        l.blocks.insert(l.blocks.end(), more->begin(), more->end());
        // Sometimes a sequence computes blocks that another has cached meanwhile.
        if (!got.empty() && what == 0) {
          if (auto fresh = p.allocate(1)) {
            p.release(std::vector<int32_t>{l.blocks[0]});
            l.blocks[0] = (*fresh)[0];
            p.cache_full_blocks(std::span(l.blocks).first(1), std::span(hashes).first(1), std::nullopt);
          }
        }
        const size_t from = got.size();
        p.cache_full_blocks(std::span(l.blocks).subspan(from), std::span(hashes).subspan(from),
                            from ? std::optional(hashes[from - 1]) : std::nullopt);
        running.push_back(std::move(l));
      } else if (what < 9 && !running.empty()) {  // one finishes
        const size_t i = std::uniform_int_distribution<size_t>(0, running.size() - 1)(rng);
        p.release(running[i].blocks);
        p.retire_sequence(running[i].hashes);
        running.erase(running.begin() + static_cast<ptrdiff_t>(i));
      } else if (what == 9 && op % 50 == 0) {
        p.clear_cache();
      }
      r.apply(p.drain_events());
      const auto have = p.cached_hashes();
      ASSERT_EQ(std::vector<uint64_t>(r.cached.begin(), r.cached.end()), have) << "seed " << seed << " op " << op;
    }
    for (auto& l : running) p.release(l.blocks);
    EXPECT_EQ(p.n_available(), p.n_blocks()) << "no block leaked";
  }
}

}  // namespace
}  // namespace troupe
