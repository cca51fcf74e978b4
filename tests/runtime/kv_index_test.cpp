// Proves the KV index: against a brute-force model (a set of hashes per worker, walked block
// by block) under random event streams with lost events, dumps, cleared caches and lost and
// new workers; against real block pools, whose own prefix lookups are the truth; sequence
// numbers (stale and gap outcomes); the entry cap evicting the oldest entries; counted mode;
// and snapshots that round-trip and refuse corrupt or foreign bytes.
#include "runtime/kv_index.hpp"

#include <map>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "runtime/block_hash.hpp"
#include "runtime/engine/block_pool.hpp"
#include "runtime/kv_snapshot.hpp"

namespace troupe {
namespace {

std::vector<uint64_t> values(const std::vector<block_hash>& hs) {
  std::vector<uint64_t> out;
  for (auto h : hs) out.push_back(h.value);
  return out;
}

// A request's chained hashes over a small alphabet, so that random requests share prefixes.
std::vector<uint64_t> random_chain(std::mt19937& rng, size_t max_blocks) {
  std::vector<token_id> toks(2 * std::uniform_int_distribution<size_t>(1, max_blocks)(rng));
  for (auto& t : toks) t = std::uniform_int_distribution<token_id>(0, 2)(rng);
  return values(hash_full_blocks(toks, 2, 7));
}

kv_event event(uint64_t id, kv_event::kind k, std::vector<uint64_t> hashes = {}) {
  kv_event e;
  e.event_id = id;
  e.type = k;
  e.block_hashes = std::move(hashes);
  return e;
}

// The model: per worker the set of hashes it holds.
uint32_t brute_overlap(const std::set<uint64_t>& held, const std::vector<uint64_t>& chain) {
  uint32_t n = 0;
  while (n < chain.size() && held.count(chain[n])) ++n;
  return n;
}

TEST(kv_index, overlaps_are_the_longest_held_prefix_per_worker) {
  kv_index ix;
  const auto a = ix.add_worker(), b = ix.add_worker(), c = ix.add_worker();
  ix.store(a, std::vector<uint64_t>{1, 2, 3, 4});
  ix.store(b, std::vector<uint64_t>{1, 2});
  ix.store(c, std::vector<uint64_t>{2, 3, 4});  // not the first block: no prefix
  std::vector<uint32_t> out;
  ix.overlaps(std::vector<uint64_t>{1, 2, 3, 4, 5}, out);
  EXPECT_EQ(out, (std::vector<uint32_t>{4, 2, 0}));
  ix.remove(a, std::vector<uint64_t>{2});  // a hole: the prefix stops there
  ix.overlaps(std::vector<uint64_t>{1, 2, 3}, out);
  EXPECT_EQ(out, (std::vector<uint32_t>{1, 2, 0}));
  ix.remove_worker(b);
  ix.overlaps(std::vector<uint64_t>{1, 2, 3}, out);
  EXPECT_EQ(out, (std::vector<uint32_t>{1, 0, 0})) << "a lost worker's blocks leave at once";
  EXPECT_EQ(ix.add_worker(), b) << "its slot is reused";
  ix.overlaps(std::vector<uint64_t>{1}, out);
  EXPECT_EQ(out[b], 0u) << "the new worker starts empty";
}

TEST(kv_index, sequence_numbers_detect_stale_events_and_gaps) {
  kv_index ix;
  const auto w = ix.add_worker(5);
  EXPECT_EQ(ix.apply(w, event(4, kv_event::kind::block_stored, {1})), kv_index::apply_outcome::stale);
  EXPECT_EQ(ix.apply(w, event(5, kv_event::kind::block_stored, {1})), kv_index::apply_outcome::applied);
  EXPECT_EQ(ix.apply(w, event(7, kv_event::kind::block_stored, {2})), kv_index::apply_outcome::gap);
  EXPECT_FALSE(ix.in_sync(w));
  EXPECT_EQ(ix.apply(w, event(8, kv_event::kind::block_stored, {3})), kv_index::apply_outcome::out_of_sync);
  std::vector<uint32_t> out;
  ix.overlaps(std::vector<uint64_t>{1, 2}, out);
  EXPECT_EQ(out[w], 1u) << "the view stays as it was until the dump";
  ix.replace(w, std::vector<uint64_t>{1, 2, 3}, 9);
  EXPECT_TRUE(ix.in_sync(w));
  EXPECT_EQ(ix.next_event(w), 9u);
  ix.overlaps(std::vector<uint64_t>{1, 2, 3}, out);
  EXPECT_EQ(out[w], 3u);
  EXPECT_EQ(ix.apply(w, event(9, kv_event::kind::all_blocks_cleared)), kv_index::apply_outcome::applied);
  ix.overlaps(std::vector<uint64_t>{1}, out);
  EXPECT_EQ(out[w], 0u);
}

TEST(kv_index, matches_a_brute_force_model_under_random_streams) {
  for (unsigned seed = 0; seed < 30; ++seed) {
    std::mt19937 rng(seed);
    kv_index ix;
    struct model_worker {
      kv_index::worker_slot slot;
      std::set<uint64_t> held;
      uint64_t next = 0;  // the engine's next event id
    };
    std::vector<model_worker> ws;
    for (int i = 0; i < 4; ++i) ws.push_back({ix.add_worker(), {}, 0});
    int gaps = 0;
    for (int op = 0; op < 600; ++op) {
      const int what = std::uniform_int_distribution<int>(0, 19)(rng);
      if (what == 0 && ws.size() > 1) {  // a worker is lost
        const size_t i = std::uniform_int_distribution<size_t>(0, ws.size() - 1)(rng);
        ix.remove_worker(ws[i].slot);
        ws.erase(ws.begin() + static_cast<ptrdiff_t>(i));
      } else if (what == 1 && ws.size() < 8) {  // one joins, its engine already running
        model_worker m{0, {}, std::uniform_int_distribution<uint64_t>(0, 50)(rng)};
        for (uint64_t h : random_chain(rng, 4)) m.held.insert(h);
        m.slot = ix.add_worker(0);
        ix.mark_out_of_sync(m.slot);
        const std::vector<uint64_t> dump(m.held.begin(), m.held.end());
        ix.replace(m.slot, dump, m.next);
        ws.push_back(std::move(m));
      } else if (!ws.empty()) {
        model_worker& m = ws[std::uniform_int_distribution<size_t>(0, ws.size() - 1)(rng)];
        kv_event e;
        if (what < 12) {
          e = event(m.next, kv_event::kind::block_stored, random_chain(rng, 5));
          m.held.insert(e.block_hashes.begin(), e.block_hashes.end());
        } else if (what < 18) {
          std::vector<uint64_t> gone;
          for (uint64_t h : m.held)
            if (std::uniform_int_distribution<int>(0, 3)(rng) == 0) gone.push_back(h);
          for (uint64_t h : gone) m.held.erase(h);
          e = event(m.next, kv_event::kind::block_removed, gone);
        } else {
          m.held.clear();
          e = event(m.next, kv_event::kind::all_blocks_cleared);
        }
        ++m.next;
        if (std::uniform_int_distribution<int>(0, 15)(rng) == 0) {
          // The event is lost on the way; the router sees the next one and asks for a dump.
          ++gaps;
          kv_event after = event(m.next++, kv_event::kind::block_stored, random_chain(rng, 3));
          m.held.insert(after.block_hashes.begin(), after.block_hashes.end());
          ASSERT_EQ(ix.apply(m.slot, after), kv_index::apply_outcome::gap);
          const std::vector<uint64_t> dump(m.held.begin(), m.held.end());
          ix.replace(m.slot, dump, m.next);
        } else {
          ASSERT_EQ(ix.apply(m.slot, e), kv_index::apply_outcome::applied);
        }
      }
      std::vector<uint32_t> out;
      for (int q = 0; q < 4; ++q) {
        const auto chain = random_chain(rng, 6);
        ix.overlaps(chain, out);
        ASSERT_EQ(out.size(), ix.n_slots());
        std::vector<uint32_t> want(ix.n_slots(), 0);
        for (auto& m : ws) want[m.slot] = brute_overlap(m.held, chain);
        ASSERT_EQ(out, want) << "seed " << seed << " op " << op;
      }
      size_t entries = 0;
      for (auto& m : ws) {
        ASSERT_EQ(ix.n_entries(m.slot), m.held.size());
        entries += m.held.size();
      }
      ASSERT_EQ(ix.n_entries(), entries);
    }
    EXPECT_GT(gaps, 0);
  }
}

TEST(kv_index, follows_real_block_pools_exactly) {
  // Three engines' block pools under random sequences; the index fed only by their events
  // must give each request the prefix each pool itself would match.
  std::mt19937 rng(11);
  kv_index ix;
  struct engine_side {
    block_pool pool{40, 2, true, 4};
    kv_index::worker_slot slot = 0;
    std::vector<std::pair<std::vector<int32_t>, std::vector<block_hash>>> running;
  };
  std::vector<engine_side> es(3);
  for (auto& e : es) e.slot = ix.add_worker();
  for (int op = 0; op < 3000; ++op) {
    engine_side& e = es[std::uniform_int_distribution<size_t>(0, es.size() - 1)(rng)];
    if (std::uniform_int_distribution<int>(0, 2)(rng) < 2) {
      std::vector<token_id> toks(2 * std::uniform_int_distribution<size_t>(1, 6)(rng));
      for (auto& t : toks) t = std::uniform_int_distribution<token_id>(0, 2)(rng);
      auto hashes = hash_full_blocks(toks, 2, 7);
      auto got = e.pool.match(hashes);
      auto more = e.pool.allocate(static_cast<int32_t>(hashes.size() - got.size()));
      if (!more) {
        e.pool.release(got);
      } else {
        const size_t from = got.size();
        got.insert(got.end(), more->begin(), more->end());
        e.pool.cache_full_blocks(std::span(got).subspan(from), std::span(hashes).subspan(from),
                                 from ? std::optional(hashes[from - 1]) : std::nullopt);
        e.running.emplace_back(std::move(got), std::move(hashes));
      }
    } else if (!e.running.empty()) {
      auto [blocks, hashes] = std::move(e.running.front());
      e.running.erase(e.running.begin());
      e.pool.release(blocks);
      e.pool.retire_sequence(hashes);
    }
    for (auto& x : es)
      for (const kv_event& ev : x.pool.drain_events()) ASSERT_EQ(ix.apply(x.slot, ev), kv_index::apply_outcome::applied);
    std::vector<token_id> q(12);
    for (auto& t : q) t = std::uniform_int_distribution<token_id>(0, 2)(rng);
    const auto chain = hash_full_blocks(q, 2, 7);
    std::vector<uint32_t> out;
    ix.overlaps(values(chain), out);
    for (auto& x : es) ASSERT_EQ(out[x.slot], x.pool.count_cached_prefix(chain)) << "op " << op;
  }
}

TEST(kv_index, its_table_stays_exact_through_growth_deletion_and_lost_workers) {
  // Many nodes with random keys (and keys crowded onto few home slots): every node's holders
  // must match the model after stores, removals and a worker's loss (a rebuild).
  std::mt19937_64 rng(5);
  kv_index ix;
  std::vector<kv_index::worker_slot> ws;
  for (int i = 0; i < 5; ++i) ws.push_back(ix.add_worker());
  std::map<uint64_t, std::set<kv_index::worker_slot>> model;
  std::vector<uint64_t> keys;
  for (int i = 0; i < 20000; ++i) keys.push_back(i % 3 == 0 ? rng() : (rng() & 0xFFF) << 52);  // some share their top bits
  auto check = [&] {
    std::vector<uint32_t> out;
    for (uint64_t k : keys) {
      ix.overlaps(std::vector<uint64_t>{k}, out);
      std::set<kv_index::worker_slot> got;
      for (kv_index::worker_slot w = 0; w < out.size(); ++w)
        if (out[w]) got.insert(w);
      const auto it = model.find(k);
      ASSERT_EQ(got, it == model.end() ? std::set<kv_index::worker_slot>{} : it->second) << std::hex << k;
    }
    size_t nodes = 0;
    for (auto& [k, h] : model) nodes += !h.empty();
    ASSERT_EQ(ix.n_nodes(), nodes);
  };
  for (int round = 0; round < 6; ++round) {
    for (int i = 0; i < 30000; ++i) {
      const uint64_t k = keys[rng() % keys.size()];
      const kv_index::worker_slot w = ws[rng() % ws.size()];
      if (rng() % 3) {
        ix.store(w, std::vector<uint64_t>{k});
        model[k].insert(w);
      } else {
        ix.remove(w, std::vector<uint64_t>{k});
        model[k].erase(w);
      }
    }
    check();
    if (round == 3) {
      ix.remove_worker(ws[1]);
      for (auto& [k, h] : model) h.erase(ws[1]);
      ws.erase(ws.begin() + 1);
      check();
    }
  }
  EXPECT_LE(ix.memory_bytes(), ix.n_nodes() * 96 + ix.n_entries() * 64 + 4096 * 24);
}

TEST(kv_index, the_cap_evicts_the_oldest_entries) {
  kv_index::options o;
  o.max_entries = 4;
  kv_index ix(o);
  const auto a = ix.add_worker(), b = ix.add_worker();
  ix.store(a, std::vector<uint64_t>{1, 2});
  ix.store(b, std::vector<uint64_t>{1});
  ix.store(a, std::vector<uint64_t>{1});  // stored again: young again
  ix.store(b, std::vector<uint64_t>{3, 4});
  EXPECT_EQ(ix.n_entries(), 4u);
  EXPECT_EQ(ix.n_evicted(), 1u);
  auto held = ix.hashes_by_worker();
  std::sort(held[a].begin(), held[a].end());
  std::sort(held[b].begin(), held[b].end());
  EXPECT_EQ(held[a], (std::vector<uint64_t>{1})) << "a's block 2 was the oldest entry";
  EXPECT_EQ(held[b], (std::vector<uint64_t>{1, 3, 4}));
  // Many more stores stay within the cap, and the queue of stores stays bounded.
  for (uint64_t h = 10; h < 100000; ++h) ix.store(h % 2 ? a : b, std::vector<uint64_t>{h % 7 + 10});
  EXPECT_LE(ix.n_entries(), 4u);
  EXPECT_LT(ix.memory_bytes(), 4 * (kv_index::bytes_per_entry() + kv_index::bytes_per_node()) + 4096 * 32);
}

TEST(kv_index, counted_mode_keeps_an_entry_until_every_store_is_removed) {
  kv_index::options o;
  o.counted = true;
  kv_index ix(o);
  const auto w = ix.add_worker();
  ix.store(w, std::vector<uint64_t>{1, 2});
  ix.store(w, std::vector<uint64_t>{1, 3});
  ix.remove(w, std::vector<uint64_t>{1, 2});
  std::vector<uint32_t> out;
  ix.overlaps(std::vector<uint64_t>{1, 3}, out);
  EXPECT_EQ(out[w], 2u);
  ix.remove(w, std::vector<uint64_t>{1, 3});
  EXPECT_EQ(ix.n_entries(), 0u);
}

TEST(kv_snapshot, round_trips_and_refuses_corrupt_or_foreign_bytes) {
  kv_snapshot s;
  s.router = "control/router";
  s.workers.push_back({"node-a/w0", "m", 77, 9, 16, 1234, {5, 6, 7}});
  s.workers.push_back({"node-b/w0", "m", 78, 9, 16, 0, {}});
  const std::string bytes = encode(s);
  auto back = decode_kv_snapshot(bytes);
  ASSERT_TRUE(back.ok()) << back.message();
  ASSERT_EQ(back->workers.size(), 2u);
  EXPECT_EQ(back->router, "control/router");
  EXPECT_EQ(back->workers[0].name, "node-a/w0");
  EXPECT_EQ(back->workers[0].instance, 77u);
  EXPECT_EQ(back->workers[0].next_event, 1234u);
  EXPECT_EQ(back->workers[0].hashes, (std::vector<uint64_t>{5, 6, 7}));

  EXPECT_FALSE(decode_kv_snapshot("").ok());
  EXPECT_FALSE(decode_kv_snapshot("{\"json\": true}").ok());
  std::string flipped = bytes;
  flipped[flipped.size() - 3] ^= 1;
  auto bad = decode_kv_snapshot(flipped);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("checksum"), std::string::npos);
  for (size_t cut = 0; cut < bytes.size(); cut += 7) EXPECT_FALSE(decode_kv_snapshot(bytes.substr(0, cut)).ok());
  std::string other = bytes;
  other[8] = 2;  // another version
  EXPECT_NE(decode_kv_snapshot(other).message().find("version"), std::string::npos);
}

}  // namespace
}  // namespace troupe
