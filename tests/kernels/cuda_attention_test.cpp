// Proves the CUDA paged attention against the CPU's on random queries, keys and values: the KV
// store into the device layout, prefill attention (causal, variable-length sequences in one
// launch, grouped-query heads, sliding windows, chunks continuing a cached prefix) and decode
// attention split over long contexts (a split count that leaves splits empty, and graph padding
// that must come out as zeros), through the batch plan the executor uses. Non-contiguous block
// tables, odd block sizes, head_dim 16 to 128, groups of 1 to 16 query heads per KV head.
// Tolerances: f32 2e-5 + 1e-4 relative; bf16 (inputs rounded to bf16 on both sides) 1e-2 + 2^-6.
#include "tests/kernels/cuda_test_util.hpp"

#include <numeric>

#include <fmt/format.h>

#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "kernels/cuda/attention_decode.cuh"
#include "kernels/cuda/attention_prefill.cuh"
#include "kernels/cuda/batch_plan.hpp"
#include "kernels/cuda/kv_store.cuh"

namespace troupe::cuda {
namespace {

using namespace testing;

struct shape {
  int32_t n_head, n_head_kv, head_dim, block_size, window;
};
struct seq_spec {
  int32_t n_past, n_new;
};

template <class T>
device_buffer upload_as(const std::vector<float>& v) {
  if constexpr (std::is_same_v<T, float>) return upload(v);
  else return upload(to_bf16(v));
}
template <class T>
std::vector<float> download_as(const device_buffer& b, size_t n) {
  if constexpr (std::is_same_v<T, float>) return download<float>(b, n);
  else return from_bf16(download<uint16_t>(b, n));
}

// Runs one batch of sequences through the CPU and the GPU and compares the attention outputs.
template <class T>
void check(const shape& s, const std::vector<seq_spec>& seqs, int32_t split_tokens, int32_t max_splits,
           bool graph_padding) {
  const bool bf = !std::is_same_v<T, float>;
  const int32_t hd = s.head_dim, bs = s.block_size;
  const int64_t QD = int64_t{s.n_head} * hd, KVD = int64_t{s.n_head_kv} * hd, ld = QD + 2 * KVD;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const std::string what = fmt::format("heads {}/{}, head_dim {}, block {}, window {}, splits of {} (max {}){}",
                                       s.n_head, s.n_head_kv, hd, bs, s.window, split_tokens, max_splits,
                                       bf ? ", bf16" : "");

  // Blocks: a shuffled pool, so tables are not contiguous.
  int32_t n_blocks = 0;
  for (const auto& q : seqs) n_blocks += (q.n_past + q.n_new + bs - 1) / bs;
  std::vector<int32_t> pool(static_cast<size_t>(n_blocks));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), std::mt19937(3));
  std::vector<std::vector<int32_t>> tables;
  for (size_t i = 0, at = 0; i < seqs.size(); ++i) {
    const size_t n = static_cast<size_t>((seqs[i].n_past + seqs[i].n_new + bs - 1) / bs);
    tables.emplace_back(pool.begin() + static_cast<ptrdiff_t>(at), pool.begin() + static_cast<ptrdiff_t>(at + n));
    at += n;
  }

  // Keys and values of every position, queries of the new tokens.
  std::vector<std::vector<float>> k_all, v_all;
  std::vector<float> qkv;  // [T, ld]: q | k | v of the new tokens
  int32_t n_tokens = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int32_t ctx = seqs[i].n_past + seqs[i].n_new;
    std::vector<float> k = random_floats(static_cast<size_t>(ctx * KVD), -1, 1, 100 + static_cast<uint32_t>(i));
    std::vector<float> v = random_floats(static_cast<size_t>(ctx * KVD), -1, 1, 200 + static_cast<uint32_t>(i));
    std::vector<float> q = random_floats(static_cast<size_t>(seqs[i].n_new * QD), -2, 2, 300 + static_cast<uint32_t>(i));
    if (bf) {
      k = round_bf16(k);
      v = round_bf16(v);
      q = round_bf16(q);
    }
    for (int32_t t = 0; t < seqs[i].n_new; ++t) {
      const int32_t p = seqs[i].n_past + t;
      qkv.insert(qkv.end(), q.begin() + t * QD, q.begin() + (t + 1) * QD);
      qkv.insert(qkv.end(), k.begin() + p * KVD, k.begin() + (p + 1) * KVD);
      qkv.insert(qkv.end(), v.begin() + p * KVD, v.begin() + (p + 1) * KVD);
    }
    n_tokens += seqs[i].n_new;
    k_all.push_back(std::move(k));
    v_all.push_back(std::move(v));
  }

  // The CPU: its own cache layout, every position stored, then attention for the new rows.
  const size_t block_floats = static_cast<size_t>(KVD) * static_cast<size_t>(bs);
  std::vector<float> ck(block_floats * static_cast<size_t>(n_blocks)), cv(ck.size());
  cpu::kv_layer_view kv{ck.data(), cv.data(), bs, s.n_head_kv, hd};
  std::vector<cpu::attention_seq> cseqs;
  std::vector<float> q_rows;  // [T, QD]
  for (size_t i = 0, row = 0; i < seqs.size(); ++i) {
    const int32_t ctx = seqs[i].n_past + seqs[i].n_new;
    std::vector<int32_t> pos(static_cast<size_t>(ctx));
    std::iota(pos.begin(), pos.end(), 0);
    cpu::kv_store(kv, tables[i].data(), pos.data(), ctx, k_all[i].data(), KVD, v_all[i].data(), KVD);
    cseqs.push_back({static_cast<int64_t>(row), seqs[i].n_new, seqs[i].n_past, tables[i].data()});
    row += static_cast<size_t>(seqs[i].n_new);
  }
  for (int32_t t = 0; t < n_tokens; ++t) q_rows.insert(q_rows.end(), qkv.begin() + t * ld, qkv.begin() + t * ld + QD);
  std::vector<float> want(static_cast<size_t>(n_tokens * QD));
  cpu::thread_pool threads(2);
  cpu::paged_attention(q_rows.data(), QD, cseqs, kv, s.n_head, s.window, scale, want.data(), QD, threads);

  // The GPU: the past through kv_store from a [P, 2 KVD] buffer, the new tokens from q/k/v,
  // then the plan's attention work lists.
  const size_t cache_elems = block_floats * static_cast<size_t>(n_blocks);
  device_buffer dk = upload_as<T>(std::vector<float>(cache_elems)), dv = upload_as<T>(std::vector<float>(cache_elems));
  {
    std::vector<float> past;
    std::vector<int32_t> slots;
    for (size_t i = 0; i < seqs.size(); ++i)
      for (int32_t p = 0; p < seqs[i].n_past; ++p) {
        past.insert(past.end(), k_all[i].begin() + p * KVD, k_all[i].begin() + (p + 1) * KVD);
        past.insert(past.end(), v_all[i].begin() + p * KVD, v_all[i].begin() + (p + 1) * KVD);
        slots.push_back(tables[i][static_cast<size_t>(p / bs)] * bs + p % bs);
      }
    if (!slots.empty()) {
      device_buffer dpast = upload_as<T>(past), dslots = upload(slots);
      ASSERT_EQ(launch_kv_store<T>(dpast.as<T>(), 2 * KVD, 0, KVD, dslots.as<int32_t>(),
                                   static_cast<int32_t>(slots.size()), dk.as<T>(), dv.as<T>(), bs, s.n_head_kv, hd,
                                   nullptr),
                cudaSuccess);
      sync();
    }
  }
  forward_batch b;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const std::vector<token_id> toks(static_cast<size_t>(seqs[i].n_new), 1);
    b.add(seqs[i].n_past, toks, tables[i], graph_padding ? 1 : 0);
  }
  plan_options po;
  po.block_size = bs;
  po.n_head = s.n_head;
  po.n_head_kv = s.n_head_kv;
  po.split_tokens = split_tokens;
  po.max_splits = max_splits;
  if (graph_padding) po.graph_batch_sizes = {static_cast<int32_t>(seqs.size()) + 3};
  const batch_plan p = make_plan(b, po);
  ASSERT_EQ(p.graph.has_value(), graph_padding);
  const int32_t rows = p.n_tokens;  // padded rows included
  std::vector<float> qkv_padded = qkv;
  qkv_padded.resize(static_cast<size_t>(rows * ld), 0.0f);
  device_buffer dqkv = upload_as<T>(qkv_padded), dmeta = upload(p.packed);
  device_buffer dout = upload_as<T>(std::vector<float>(static_cast<size_t>(rows * QD), 7.0f));
  device_buffer dpart = upload(std::vector<float>(static_cast<size_t>(std::max(1, p.n_decode)) * s.n_head *
                                                  p.split.n_splits * (hd + 2)));
  const int32_t* meta = dmeta.as<int32_t>();
  ASSERT_EQ(launch_kv_store<T>(dqkv.as<T>(), ld, QD, QD + KVD, meta + p.layout.slots, rows, dk.as<T>(), dv.as<T>(), bs,
                               s.n_head_kv, hd, nullptr),
            cudaSuccess);
  ASSERT_EQ(launch_attention_prefill<T>(dqkv.as<T>(), ld, reinterpret_cast<const prefill_item*>(meta + p.layout.prefill_items),
                                        p.n_prefill, meta + p.layout.block_tables, dk.as<T>(), dv.as<T>(), bs, s.n_head,
                                        s.n_head_kv, hd, s.window, scale, dout.as<T>(), QD, nullptr),
            cudaSuccess)
      << what;
  ASSERT_EQ(launch_attention_decode<T>(dqkv.as<T>(), ld, reinterpret_cast<const decode_item*>(meta + p.layout.decode_items),
                                       p.n_decode, meta + p.layout.block_tables, dk.as<T>(), dv.as<T>(), bs, s.n_head,
                                       s.n_head_kv, hd, s.window, scale, p.split.n_splits, p.split.split_len,
                                       dpart.as<float>(), dout.as<T>(), QD, nullptr),
            cudaSuccess)
      << what;
  std::vector<float> got = download_as<T>(dout, static_cast<size_t>(rows * QD));
  const std::vector<float> pad(got.begin() + n_tokens * QD, got.end());
  got.resize(want.size());
  expect_close(got, bf ? round_bf16(want) : want, bf ? 1e-2 : 2e-5, bf ? 1.0 / 64 : 1e-4, what);
  expect_close(pad, std::vector<float>(pad.size(), 0.0f), 0, 0, what + ": graph padding comes out as zeros");

  // The device layout: key head h of position p at ((block * n_head_kv + h) * bs + offset) * hd.
  const std::vector<float> kc = download_as<T>(dk, cache_elems);
  const size_t i = 0;
  const int32_t pos = seqs[i].n_past + seqs[i].n_new - 1, h = s.n_head_kv - 1;
  const size_t at = ((static_cast<size_t>(tables[i][static_cast<size_t>(pos / bs)]) * s.n_head_kv + h) * bs + pos % bs) * hd;
  for (int32_t d = 0; d < hd; ++d)
    ASSERT_EQ(kc[at + d], k_all[i][static_cast<size_t>(pos * KVD + h * hd + d)]) << what << ": the KV layout";
}

const std::vector<seq_spec> mixed = {{0, 37}, {20, 5}, {100, 1}, {3000, 1}, {0, 1}, {5, 2}};
const shape shapes[] = {
    {8, 2, 64, 16, 0},    // Llama-like GQA
    {4, 4, 128, 5, 0},    // no grouping, an odd block size
    {4, 2, 16, 4, 7},     // the test models' head_dim, a sliding window shorter than a tile
    {32, 4, 128, 16, 0},  // a group of 8
    {16, 1, 64, 16, 300}, // a group of 16 (two blocks of heads in decode), a window across splits
};

TEST(cuda_attention, prefill_and_decode_match_the_cpu_in_f32) {
  TROUPE_REQUIRE_GPU();
  for (const shape& s : shapes) {
    check<float>(s, mixed, 256, 64, false);
    check<float>(s, mixed, 16, 8, false);  // long contexts: few splits of many keys
  }
}

TEST(cuda_attention, decode_splits_that_are_empty_are_ignored) {
  TROUPE_REQUIRE_GPU();
  // One long and one short context in one step: most of the short one's splits are empty.
  const std::vector<seq_spec> decode = {{1000, 1}, {3, 1}, {40, 1}};
  for (const shape& s : shapes) check<float>(s, decode, 16, 64, false);
}

TEST(cuda_attention, graph_padding_attends_to_nothing) {
  TROUPE_REQUIRE_GPU();
  const std::vector<seq_spec> decode = {{17, 1}, {0, 1}, {200, 1}};
  for (const shape& s : shapes) check<float>(s, decode, 64, 8, true);
}

TEST(cuda_attention, bf16_matches_the_cpu_to_bf16_resolution) {
  TROUPE_REQUIRE_GPU();
  for (const shape& s : shapes) check<bf16>(s, mixed, 256, 64, false);
}

}  // namespace
}  // namespace troupe::cuda
