// Proves each sampling control does what the API promises: greedy, seeded reproducibility,
// the temperature distribution, min-p/top-k/top-p cuts, penalties, logit bias, logprobs.
#include "runtime/sampler.hpp"

#include <cmath>
#include <map>

#include <gtest/gtest.h>

namespace troupe {
namespace {

std::vector<float> logits5() { return {1.0f, 3.0f, 2.0f, 0.5f, 2.9f}; }

std::map<token_id, int> histogram(sampling_params p, int n, std::vector<float> base = logits5()) {
  sequence_sampler s(p, {});
  std::map<token_id, int> h;
  for (int i = 0; i < n; ++i) {
    auto l = base;
    ++h[s.sample(l).id];
  }
  return h;
}

TEST(sampler, greedy_takes_the_argmax) {
  sampling_params p;
  p.temperature = 0;
  sequence_sampler s(p, {});
  auto l = logits5();
  EXPECT_EQ(s.sample(l).id, 1);
}

TEST(sampler, same_seed_same_tokens_other_seed_other_tokens) {
  sampling_params p;
  p.seed = 1234;
  std::vector<token_id> a, b, c;
  sequence_sampler s1(p, {}), s2(p, {});
  p.seed = 99;
  sequence_sampler s3(p, {});
  for (int i = 0; i < 200; ++i) {
    auto l1 = logits5(), l2 = logits5(), l3 = logits5();
    a.push_back(s1.sample(l1).id);
    b.push_back(s2.sample(l2).id);
    c.push_back(s3.sample(l3).id);
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(sampler, temperature_one_follows_the_softmax) {
  sampling_params p;
  p.seed = 7;
  const int n = 40000;
  auto h = histogram(p, n);
  auto l = logits5();
  double z = 0;
  for (float x : l) z += std::exp(x);
  for (token_id i = 0; i < 5; ++i) {
    const double want = std::exp(l[static_cast<size_t>(i)]) / z;
    EXPECT_NEAR(static_cast<double>(h[i]) / n, want, 0.01) << i;
  }
}

TEST(sampler, low_temperature_sharpens) {
  sampling_params p;
  p.seed = 7;
  p.temperature = 0.05f;
  auto h = histogram(p, 2000);
  // 3.0 vs 2.9 at T=0.05: e^2 = 7.4 to 1, so about 88% of draws; the others vanish.
  EXPECT_NEAR(h[1] / 2000.0, 7.389 / 8.389, 0.03);
  EXPECT_EQ(h[1] + h[4], 2000);
}

TEST(sampler, top_k_keeps_only_the_k_most_likely) {
  sampling_params p;
  p.seed = 3;
  p.top_k = 2;
  auto h = histogram(p, 5000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_GT(h[1], 0);
  EXPECT_GT(h[4], 0);
}

TEST(sampler, top_p_keeps_the_nucleus) {
  // probabilities of 3.0, 2.9, 2.0, 1.0, 0.5: ~0.41, 0.37, 0.15, 0.06, 0.03
  sampling_params p;
  p.seed = 3;
  p.top_p = 0.7f;  // 0.41 + 0.37 >= 0.7: two tokens
  auto h = histogram(p, 5000);
  EXPECT_EQ(h.size(), 2u);
  p.top_p = 0.9f;  // three tokens
  EXPECT_EQ(histogram(p, 5000).size(), 3u);
}

TEST(sampler, top_p_over_a_large_vocabulary) {
  std::vector<float> big(50000, 0.0f);
  for (size_t i = 0; i < 100; ++i) big[i * 500] = 12.0f;  // 100 tokens hold 99.7% of the mass
  sampling_params p;
  p.seed = 5;
  p.top_p = 0.95f;
  auto h = histogram(p, 3000, big);
  for (auto& [id, n] : h) EXPECT_EQ(id % 500, 0) << id;
}

TEST(sampler, min_p_cuts_relative_to_the_most_likely) {
  sampling_params p;
  p.seed = 3;
  p.min_p = 0.5f;  // keeps p >= 0.5 * p(3.0): 3.0 and 2.9 (ratio e^-0.1), not 2.0 (e^-1)
  EXPECT_EQ(histogram(p, 5000).size(), 2u);
}

TEST(sampler, logit_bias_can_force_and_forbid) {
  sampling_params p;
  p.temperature = 0;
  p.logit_bias = {{3, 100.0f}};
  sequence_sampler s(p, {});
  auto l = logits5();
  EXPECT_EQ(s.sample(l).id, 3);
  p.logit_bias = {{1, -100.0f}};
  sequence_sampler t(p, {});
  auto l2 = logits5();
  EXPECT_EQ(t.sample(l2).id, 4);
}

TEST(sampler, repetition_penalty_covers_prompt_and_output) {
  sampling_params p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  std::vector<token_id> prompt = {1};
  sequence_sampler s(p, prompt);  // 3.0 -> 1.5: 4 (2.9) wins
  auto l = logits5();
  EXPECT_EQ(s.sample(l).id, 4);
  s.accept(4);  // 2.9 -> 1.45: 2 (2.0) wins
  auto l2 = logits5();
  EXPECT_EQ(s.sample(l2).id, 2);
}

TEST(sampler, presence_and_frequency_penalties_count_output_tokens) {
  sampling_params p;
  p.temperature = 0;
  p.frequency_penalty = 0.06f;
  sequence_sampler s(p, {});
  s.accept(1);  // 3.0 - 0.06 = 2.94 still beats 2.9
  auto l = logits5();
  EXPECT_EQ(s.sample(l).id, 1);
  s.accept(1);  // 3.0 - 0.12 = 2.88 loses to 2.9
  auto l2 = logits5();
  EXPECT_EQ(s.sample(l2).id, 4);
  sampling_params q;
  q.temperature = 0;
  q.presence_penalty = 0.2f;
  sequence_sampler t(q, {});
  t.accept(1);
  auto l3 = logits5();
  EXPECT_EQ(t.sample(l3).id, 4);
}

TEST(sampler, logprobs_are_log_softmax_of_the_raw_logits) {
  sampling_params p;
  p.temperature = 0;
  p.logprobs = 3;
  p.logit_bias = {{0, 5.0f}};  // processing does not change the reported logprobs
  sequence_sampler s(p, {});
  auto l = logits5();
  sampled r = s.sample(l);
  auto raw = logits5();
  double z = 0;
  for (float x : raw) z += std::exp(x);
  EXPECT_EQ(r.id, 0);
  EXPECT_NEAR(r.logprob, 1.0 - std::log(z), 1e-5);
  ASSERT_EQ(r.top.size(), 3u);
  EXPECT_EQ(r.top[0].id, 1);
  EXPECT_EQ(r.top[1].id, 4);
  EXPECT_EQ(r.top[2].id, 2);
  EXPECT_NEAR(r.top[0].logprob, 3.0 - std::log(z), 1e-5);
}

TEST(sampler, validate_names_the_parameter) {
  auto msg = [](auto f) {
    sampling_params p;
    f(p);
    status s = p.validate(100);
    return s.ok() ? std::string("ok") : s.message();
  };
  EXPECT_EQ(msg([](auto&) {}), "ok");
  EXPECT_EQ(msg([](auto& p) { p.temperature = -1; }).rfind("temperature", 0), 0u);
  EXPECT_EQ(msg([](auto& p) { p.top_p = 0; }).rfind("top_p", 0), 0u);
  EXPECT_EQ(msg([](auto& p) { p.presence_penalty = 3; }).rfind("presence_penalty", 0), 0u);
  EXPECT_EQ(msg([](auto& p) { p.logit_bias = {{100, 1.0f}}; }).rfind("logit_bias", 0), 0u);
  EXPECT_EQ(msg([](auto& p) { p.logit_bias = {{1, 101.0f}}; }).rfind("logit_bias", 0), 0u);
  EXPECT_EQ(msg([](auto& p) { p.max_tokens = 0; }).rfind("max_tokens", 0), 0u);
  EXPECT_EQ(msg([](auto& p) { p.stop = {""}; }).rfind("stop", 0), 0u);
  EXPECT_EQ(msg([](auto& p) { p.logprobs = 21; }).rfind("logprobs", 0), 0u);
}

}  // namespace
}  // namespace troupe
