// Proves the host side of device sampling (kernels/cuda/sampling_ref.hpp), which needs no GPU:
// Philox4x32-10 against Random123's known answers, the packing of a request's parameters into
// the kernel's rows, and the reference algorithm (which the GPU test holds the kernel to,
// bit for bit): greedy, top-k, top-p, min-p, the seed and counter, and the distribution.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "kernels/cuda/sampling_ref.hpp"

namespace troupe::cuda {
namespace {

TEST(cuda_sampling_ref, philox_matches_random123_known_answers) {
  // Random123's kat_vectors: counter (4 words), key (2 words) -> output.
  philox4 a = philox4x32_10(0, 0, 0, 0, 0, 0);
  EXPECT_EQ(a.v[0], 0x6627e8d5u);
  EXPECT_EQ(a.v[1], 0xe169c58du);
  EXPECT_EQ(a.v[2], 0xbc57ac4cu);
  EXPECT_EQ(a.v[3], 0x9b00dbd8u);
  philox4 b = philox4x32_10(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  EXPECT_EQ(b.v[0], 0x408f276du);
  EXPECT_EQ(b.v[1], 0x41c83b0eu);
  EXPECT_EQ(b.v[2], 0xa20bc7c6u);
  EXPECT_EQ(b.v[3], 0x6d5451fdu);
  philox4 c = philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
  EXPECT_EQ(c.v[0], 0xd16cfe09u);
  EXPECT_EQ(c.v[1], 0x94fdccebu);
  EXPECT_EQ(c.v[2], 0x5001e420u);
  EXPECT_EQ(c.v[3], 0x24126ea1u);
}

TEST(cuda_sampling_ref, mulhi64_is_the_high_half_of_the_product) {
  EXPECT_EQ(mulhi64(~0ull, ~0ull), ~0ull - 1);
  EXPECT_EQ(mulhi64(1ull << 63, 4), 2u);
  EXPECT_EQ(mulhi64(0x123456789abcdef0ull, 0), 0u);
  std::mt19937_64 rng(3);
  for (int i = 0; i < 1000; ++i) {
    const uint64_t a = rng(), b = rng();
    __extension__ using u128 = unsigned __int128;  // GCC's, for the check only
    const u128 p = static_cast<u128>(a) * b;
    EXPECT_EQ(mulhi64(a, b), static_cast<uint64_t>(p >> 64));
  }
}

TEST(cuda_sampling_ref, order_key_sorts_like_the_floats) {
  const std::vector<float> xs = {-INFINITY, -3.5f, -1e-30f, -0.0f, 0.0f, 1e-30f, 1.0f, 2.5f, INFINITY};
  for (size_t i = 0; i + 1 < xs.size(); ++i) EXPECT_LE(order_key(xs[i]), order_key(xs[i + 1])) << xs[i];
  EXPECT_LT(order_key(-1.0f), order_key(1.0f));
}

TEST(cuda_sampling_ref, token_weight_is_close_to_exp) {
  for (float d = 0.0f; d > -80.0f; d -= 0.37f) {
    const double want = std::exp(static_cast<double>(d));
    EXPECT_NEAR(exp_nonpositive(d), want, want * 1e-6) << d;
  }
  EXPECT_EQ(token_weight(5.0f, 5.0f, 1.0f), 1.0f);
  EXPECT_EQ(to_fixed(1.0f), uint64_t{1} << 40);
}

TEST(cuda_sampling_ref, packing_maps_the_api_to_the_kernel_row) {
  sampling_params p;
  p.temperature = 0.7f;
  p.top_k = 50;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.seed = 0x1234'5678'9abc'def0ull;
  auto r = pack_sampling(p, 99, 7, 32000);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->greedy, 0);
  EXPECT_FLOAT_EQ(r->temperature, 0.7f);
  EXPECT_EQ(r->top_k, 50);
  EXPECT_EQ(r->seed_lo, 0x9abcdef0u);
  EXPECT_EQ(r->seed_hi, 0x12345678u);  // the request's seed wins over the default
  EXPECT_EQ(r->counter_lo, 7u);
  p.seed.reset();
  EXPECT_EQ(pack_sampling(p, 99, 7, 32000)->seed_lo, 99u);
  // Greedy: temperature 0 or top_k 1. top_k off: 0, -1 or at least the vocabulary.
  p.temperature = 0.0f;
  EXPECT_EQ(pack_sampling(p, 0, 0, 32000)->greedy, 1);
  p.temperature = 1.0f;
  p.top_k = 1;
  EXPECT_EQ(pack_sampling(p, 0, 0, 32000)->greedy, 1);
  for (int32_t k : {0, -1, 32000, 40000}) {
    p.top_k = k;
    EXPECT_EQ(pack_sampling(p, 0, 0, 32000)->top_k, 0) << k;
  }
}

TEST(cuda_sampling_ref, packing_refuses_what_the_device_does_not_apply) {
  sampling_params p;
  p.repetition_penalty = 1.1f;
  EXPECT_FALSE(pack_sampling(p, 0, 0, 100).ok());
  p = {};
  p.presence_penalty = 0.5f;
  EXPECT_FALSE(pack_sampling(p, 0, 0, 100).ok());
  p = {};
  p.logit_bias = {{3, 1.0f}};
  EXPECT_NE(pack_sampling(p, 0, 0, 100).message().find("logit_bias"), std::string::npos);
  p = {};
  p.logprobs = 2;
  EXPECT_FALSE(pack_sampling(p, 0, 0, 100).ok());
  p = {};
  p.top_p = 0.0f;
  EXPECT_FALSE(pack_sampling(p, 0, 0, 100).ok());
}

sampling_row row(float temperature, int32_t top_k = 0, float top_p = 1.0f, float min_p = 0.0f, uint64_t seed = 1,
                 uint64_t counter = 0) {
  sampling_params p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = seed;
  return *pack_sampling(p, 0, counter, 1 << 20);
}

TEST(cuda_sampling_ref, greedy_takes_the_first_maximum) {
  const std::vector<float> l = {0.5f, 3.0f, -1.0f, 3.0f, 2.0f};
  EXPECT_EQ(sample_reference(l, row(0.0f)), 1);
  EXPECT_EQ(sample_reference(l, row(1.0f, 1)), 1);
}

TEST(cuda_sampling_ref, filters_leave_only_the_tokens_they_allow) {
  std::vector<float> l(1000);
  std::mt19937 rng(5);
  for (float& x : l) x = std::normal_distribution<float>(0.0f, 2.0f)(rng);
  std::vector<int> order(l.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return l[static_cast<size_t>(a)] > l[static_cast<size_t>(b)]; });
  for (uint64_t seed = 0; seed < 300; ++seed) {
    // top-k 5: one of the five largest.
    const int32_t k = sample_reference(l, row(1.0f, 5, 1.0f, 0.0f, seed));
    EXPECT_NE(std::find(order.begin(), order.begin() + 5, k), order.begin() + 5);
    // min-p 0.5: at least half as likely as the best.
    const int32_t m = sample_reference(l, row(1.0f, 0, 1.0f, 0.5f, seed));
    EXPECT_GE(l[static_cast<size_t>(m)], l[static_cast<size_t>(order[0])] + std::log(0.5f) - 1e-6f);
    // A tiny top-p keeps only the most likely token.
    EXPECT_EQ(sample_reference(l, row(1.0f, 0, 1e-6f, 0.0f, seed)), order[0]);
  }
}

TEST(cuda_sampling_ref, top_p_keeps_the_smallest_head_reaching_the_mass) {
  // Probabilities 0.5, 0.25, 0.125, 0.125 (as logits): top_p 0.7 keeps the first two, 0.8 three.
  const std::vector<float> l = {std::log(0.5f), std::log(0.25f), std::log(0.125f), std::log(0.125f) - 1e-6f};
  std::set<int32_t> seen7, seen8;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    seen7.insert(sample_reference(l, row(1.0f, 0, 0.7f, 0.0f, seed)));
    seen8.insert(sample_reference(l, row(1.0f, 0, 0.8f, 0.0f, seed)));
  }
  EXPECT_EQ(seen7, (std::set<int32_t>{0, 1}));
  EXPECT_EQ(seen8, (std::set<int32_t>{0, 1, 2}));
}

TEST(cuda_sampling_ref, same_seed_and_counter_give_the_same_token) {
  std::vector<float> l(500);
  std::mt19937 rng(9);
  for (float& x : l) x = std::uniform_real_distribution<float>(-3.0f, 3.0f)(rng);
  const sampling_row r = row(0.8f, 40, 0.95f, 0.01f, 1234, 17);
  EXPECT_EQ(sample_reference(l, r), sample_reference(l, r));
  // Different counters draw different numbers: over many steps the tokens vary.
  std::set<int32_t> tokens;
  for (uint64_t c = 0; c < 50; ++c) tokens.insert(sample_reference(l, row(0.8f, 40, 0.95f, 0.0f, 1234, c)));
  EXPECT_GT(tokens.size(), 5u);
}

TEST(cuda_sampling_ref, draws_follow_the_softmax_at_the_temperature) {
  const std::vector<float> l = {1.0f, 0.0f, -1.0f, 2.0f};
  const float t = 0.8f;
  std::vector<double> p(l.size());
  double z = 0;
  for (size_t i = 0; i < l.size(); ++i) z += p[i] = std::exp(l[i] / t);
  std::map<int32_t, int> count;
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++count[sample_reference(l, row(t, 0, 1.0f, 0.0f, 42, static_cast<uint64_t>(i)))];
  for (size_t i = 0; i < l.size(); ++i) {
    const double want = p[i] / z, got = static_cast<double>(count[static_cast<int32_t>(i)]) / n;
    EXPECT_NEAR(got, want, 4 * std::sqrt(want * (1 - want) / n)) << i;
  }
}

}  // namespace
}  // namespace troupe::cuda
