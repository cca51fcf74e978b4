// Proves the KV cache manager's contract: slots for new and lookahead tokens, what changed per
// allocation, truncation of rejected drafts (never of cached blocks), commits that let only
// computed full blocks into the prefix cache, the cached prefix of a new sequence, export and
// import naming the right blocks, and, under random operations, that every block comes back.
#include "runtime/engine/kv_cache_manager.hpp"

#include <algorithm>
#include <numeric>
#include <random>
#include <map>
#include <set>

#include <gtest/gtest.h>

namespace troupe {
namespace {

std::vector<token_id> tokens(int n, int base = 100) {
  std::vector<token_id> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), base);
  return t;
}

size_t stored_blocks(kv_cache_manager& kv) {
  size_t n = 0;
  for (const kv_event& e : kv.drain_events())
    if (e.type == kv_event::kind::block_stored) n += e.block_hashes.size();
  return n;
}

TEST(kv_cache_manager, allocates_slots_for_new_and_lookahead_tokens_and_says_what_changed) {
  kv_cache_manager kv(16, 4, true, 8, 1);
  ASSERT_TRUE(kv.allocate_slots(1, 0, 6));
  EXPECT_EQ(kv.blocks(1).size(), 2u);
  EXPECT_EQ(kv.last_allocated(1).size(), 2u);
  ASSERT_TRUE(kv.allocate_slots(1, 6, 1, 3));  // one token and three drafts: positions 6..9
  EXPECT_EQ(kv.blocks(1).size(), 3u);
  ASSERT_EQ(kv.last_allocated(1).size(), 1u);
  EXPECT_EQ(kv.last_allocated(1)[0], kv.blocks(1)[2]);
  ASSERT_TRUE(kv.allocate_slots(1, 7, 1));  // covered already: nothing new
  EXPECT_TRUE(kv.last_allocated(1).empty());
  EXPECT_EQ(kv.n_pinned(), 3);
}

TEST(kv_cache_manager, a_failed_allocation_changes_nothing) {
  kv_cache_manager kv(4, 4, true, 8, 1);
  ASSERT_TRUE(kv.allocate_slots(1, 0, 12));
  const std::vector<int32_t> before(kv.blocks(1).begin(), kv.blocks(1).end());
  EXPECT_FALSE(kv.allocate_slots(1, 12, 1, 8));  // needs 6 blocks, the pool has 4
  EXPECT_EQ(std::vector<int32_t>(kv.blocks(1).begin(), kv.blocks(1).end()), before);
  EXPECT_EQ(kv.n_available(), 1);
}

TEST(kv_cache_manager, truncate_returns_rejected_draft_slots_but_never_cached_blocks) {
  kv_cache_manager kv(16, 4, true, 8, 1);
  const auto t = tokens(20);
  ASSERT_TRUE(kv.allocate_slots(1, 0, 9));
  kv.commit(1, t, 9);  // two full blocks cached
  EXPECT_EQ(stored_blocks(kv), 2u);
  ASSERT_TRUE(kv.allocate_slots(1, 9, 1, 6));  // drafts up to position 15: 4 blocks
  EXPECT_EQ(kv.blocks(1).size(), 4u);
  kv.truncate(1, 11);  // two drafts accepted: 11 tokens need 3 blocks
  EXPECT_EQ(kv.blocks(1).size(), 3u);
  kv.truncate(1, 1);  // asking for less than the cached prefix keeps it
  EXPECT_EQ(kv.blocks(1).size(), 2u);
  EXPECT_EQ(kv.n_available(), 16 - 2);
}

TEST(kv_cache_manager, only_committed_full_blocks_enter_the_prefix_cache) {
  kv_cache_manager kv(16, 4, true, 8, 1);
  const auto t = tokens(16);
  ASSERT_TRUE(kv.allocate_slots(1, 0, 1, 15));  // 16 slots, as if 15 were drafts
  kv.commit(1, t, 5);  // only 5 computed and kept: one full block
  EXPECT_EQ(stored_blocks(kv), 1u);
  EXPECT_EQ(kv.cached_hashes().size(), 1u);
  kv.commit(1, t, 12);
  EXPECT_EQ(stored_blocks(kv), 2u);
  EXPECT_EQ(kv.cached_hashes().size(), 3u);
}

TEST(kv_cache_manager, a_new_sequence_finds_and_pins_the_cached_prefix) {
  kv_cache_manager kv(16, 4, true, 8, 1);
  const auto t = tokens(14);
  ASSERT_TRUE(kv.allocate_slots(1, 0, 14));
  kv.commit(1, t, 14);  // three full blocks
  kv.free(1);           // retired, kept for reuse
  EXPECT_EQ(kv.n_available(), 16);
  // The same 14 tokens: three blocks cached, but at least one token must be computed: 12.
  EXPECT_EQ(kv.count_cached_prefix(2, t), 12);
  // Exactly 12 tokens: the last block is left to compute.
  const std::vector<token_id> twelve(t.begin(), t.begin() + 12);
  EXPECT_EQ(kv.count_cached_prefix(3, twelve), 8);
  EXPECT_EQ(kv.pin_prefix(2, t, 3), 12);
  EXPECT_EQ(kv.blocks(2).size(), 3u);
  EXPECT_EQ(kv.n_pinned(), 3);
  // A different salt (another model) shares nothing.
  kv_cache_manager other(16, 4, true, 8, 2);
  EXPECT_EQ(other.count_cached_prefix(1, t), 0);
}

TEST(kv_cache_manager, release_keeps_the_hash_chain_and_free_retires_it) {
  kv_cache_manager kv(8, 4, true, 0, 1);  // keep no finished sequence's blocks
  const auto t = tokens(9);
  ASSERT_TRUE(kv.allocate_slots(1, 0, 9));
  kv.commit(1, t, 9);
  kv.release(1);  // preempted: its cached blocks stay cached, unpinned
  EXPECT_EQ(kv.cached_hashes().size(), 2u);
  EXPECT_EQ(kv.count_cached_prefix(1, t), 8);
  EXPECT_EQ(kv.pin_prefix(1, t, 2), 8);
  kv.free(1);  // finished, and no finished sequence may keep blocks: evicted
  EXPECT_TRUE(kv.cached_hashes().empty());
  EXPECT_EQ(kv.n_available(), 8);
}

TEST(kv_cache_manager, export_and_import_name_the_blocks_to_move_and_skip_those_held) {
  kv_cache_manager a(16, 4, true, 8, 7), b(16, 4, true, 8, 7);
  const auto t = tokens(14);
  ASSERT_TRUE(a.allocate_slots(1, 0, 14));
  a.commit(1, t, 14);
  const kv_export ex = a.export_blocks(1, t, 14);
  EXPECT_EQ(ex.n_tokens, 14);
  EXPECT_EQ(ex.blocks.size(), 4u);  // 3 full and a partial one
  EXPECT_EQ(ex.hashes.size(), 3u);
  // b holds the first 8 tokens already (a shared system prompt).
  ASSERT_TRUE(b.allocate_slots(5, 0, 8));
  b.commit(5, t, 8);
  b.free(5);
  auto imp = b.import_blocks(9, t, 14);
  ASSERT_TRUE(imp.has_value());
  EXPECT_EQ(imp->first_block, 2);
  EXPECT_EQ(imp->blocks.size(), 2u);
  EXPECT_EQ(b.blocks(9).size(), 4u);
  b.commit(9, t, 14);
  EXPECT_EQ(b.cached_hashes(), a.cached_hashes());
  // No room: nothing is taken.
  kv_cache_manager tiny(2, 4, true, 8, 7);
  EXPECT_FALSE(tiny.import_blocks(1, t, 14).has_value());
  EXPECT_EQ(tiny.n_available(), 2);
  EXPECT_FALSE(tiny.holds(1));
}

TEST(kv_cache_manager, random_operations_return_every_block) {
  for (unsigned seed = 0; seed < 20; ++seed) {
    std::mt19937 rng(seed);
    const int32_t bs = 1 + static_cast<int32_t>(seed % 5);
    kv_cache_manager kv(48, bs, seed % 3 != 0, 4, 1);
    struct seq_state {
      std::vector<token_id> t;
      int32_t computed = 0;
    };
    std::map<uint64_t, seq_state> live;
    uint64_t next = 0;
    auto pick = [&]() -> uint64_t {
      auto it = live.begin();
      std::advance(it, std::uniform_int_distribution<size_t>(0, live.size() - 1)(rng));
      return it->first;
    };
    for (int op = 0; op < 2000; ++op) {
      const int what = std::uniform_int_distribution<int>(0, 9)(rng);
      if (what < 2 || live.empty()) {  // a new sequence over a shared vocabulary (prefix hits)
        seq_state s;
        const int len = std::uniform_int_distribution<int>(2, 30)(rng);
        for (int i = 0; i < len; ++i) s.t.push_back(std::uniform_int_distribution<token_id>(0, 2)(rng));
        const uint64_t id = next++;
        const int32_t cached = kv.count_cached_prefix(id, s.t);
        kv.pin_prefix(id, s.t, cached / bs);
        if (!kv.allocate_slots(id, cached, 1)) {
          kv.free(id);
          continue;
        }
        s.computed = cached;
        live[id] = s;
      } else if (what < 6) {  // a step: new tokens and drafts, some accepted
        const uint64_t id = pick();
        seq_state& s = live[id];
        const int32_t k = std::uniform_int_distribution<int32_t>(0, 5)(rng);
        const int32_t n = std::max(1, std::min<int32_t>(static_cast<int32_t>(s.t.size()) - s.computed, 7));
        if (!kv.allocate_slots(id, s.computed, n, k)) continue;
        const int32_t kept = std::uniform_int_distribution<int32_t>(0, k)(rng);
        for (int32_t i = 0; i < kept + 1; ++i) s.t.push_back(std::uniform_int_distribution<token_id>(0, 2)(rng));
        s.computed = std::min<int32_t>(s.computed + n + kept, static_cast<int32_t>(s.t.size()) - 1);
        kv.commit(id, s.t, s.computed);
        kv.truncate(id, static_cast<int32_t>(s.t.size()));
        ASSERT_GE(static_cast<int32_t>(kv.blocks(id).size()) * bs, s.computed);
      } else if (what < 8) {
        const uint64_t id = pick();
        kv.free(id);
        live.erase(id);
      } else {
        const uint64_t id = pick();
        kv.release(id);
        live[id].computed = 0;
        if (!kv.allocate_slots(id, 0, 1)) {
          kv.free(id);
          live.erase(id);
        }
      }
      // No block is in two tables unless it is a shared cached one.
      std::map<int32_t, int> owners;
      for (auto& [id, s] : live)
        for (int32_t b : kv.blocks(id)) ++owners[b];
      ASSERT_LE(static_cast<int32_t>(owners.size()), kv.n_pinned()) << "seed " << seed;
    }
    for (auto& [id, s] : live) kv.free(id);
    EXPECT_EQ(kv.n_available(), kv.n_blocks()) << "seed " << seed << ": every block came back";
    EXPECT_EQ(kv.n_pinned(), 0) << "seed " << seed;
  }
}

}  // namespace
}  // namespace troupe
