#include "kernels/cuda/sampling_ref.hpp"

#include <algorithm>
#include <vector>

namespace troupe::cuda {

result<sampling_row> pack_sampling(const sampling_params& p, uint64_t seed, uint64_t counter,
                                   int64_t n_vocab) {
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)
    return make_error("device sampling applies no repetition, presence or frequency penalty; sample on the host");
  if (!p.logit_bias.empty()) return make_error("device sampling applies no logit_bias; sample on the host");
  if (p.logprobs >= 0) return make_error("device sampling reports no logprobs; sample on the host");
  if (!(p.temperature >= 0.0f) || !(p.top_p > 0.0f && p.top_p <= 1.0f) || !(p.min_p >= 0.0f && p.min_p <= 1.0f))
    return make_error("sampling parameters out of range (temperature >= 0, 0 < top_p <= 1, 0 <= min_p <= 1)");
  sampling_row r;
  r.greedy = p.temperature == 0.0f || p.top_k == 1;
  r.temperature = r.greedy ? 1.0f : p.temperature;
  r.top_k = p.top_k > 0 && p.top_k < n_vocab ? p.top_k : 0;
  r.top_p = p.top_p;
  r.min_p = p.min_p;
  const uint64_t s = p.seed ? *p.seed : seed;
  r.seed_lo = static_cast<uint32_t>(s);
  r.seed_hi = static_cast<uint32_t>(s >> 32);
  r.counter_lo = static_cast<uint32_t>(counter);
  r.counter_hi = static_cast<uint32_t>(counter >> 32);
  return r;
}

int32_t sample_reference(std::span<const float> logits, const sampling_row& row) {
  const size_t n = logits.size();
  size_t best = 0;
  for (size_t i = 1; i < n; ++i)
    if (logits[i] > logits[best]) best = i;
  if (row.greedy) return static_cast<int32_t>(best);

  const float m = logits[best];
  const float inv_t = 1.0f / row.temperature;
  std::vector<uint32_t> key(n);
  std::vector<float> w(n);
  for (size_t i = 0; i < n; ++i) {
    key[i] = order_key(logits[i]);
    w[i] = token_weight(logits[i], m, inv_t);
  }
  // top-k: the k-th largest key; everything at or above it stays.
  uint32_t lo = 0;
  if (row.top_k > 0 && static_cast<size_t>(row.top_k) < n) {
    std::vector<uint32_t> sorted = key;
    std::nth_element(sorted.begin(), sorted.begin() + (row.top_k - 1), sorted.end(), std::greater<>());
    lo = sorted[static_cast<size_t>(row.top_k - 1)];
  }
  auto kept = [&](size_t i) { return key[i] >= lo && w[i] >= row.min_p; };
  uint64_t z = 0;
  for (size_t i = 0; i < n; ++i)
    if (kept(i)) z += to_fixed(w[i]);
  // top-p: the largest key whose tokens and the ones above it weigh at least the target.
  if (row.top_p < 1.0f) {
    const uint64_t target = top_p_target(row.top_p, z);
    std::vector<std::pair<uint32_t, uint64_t>> by_key;
    for (size_t i = 0; i < n; ++i)
      if (kept(i)) by_key.emplace_back(key[i], to_fixed(w[i]));
    std::sort(by_key.begin(), by_key.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    uint64_t cum = 0;
    for (size_t i = 0; i < by_key.size(); ++i) {
      cum += by_key[i].second;
      const bool last_of_key = i + 1 == by_key.size() || by_key[i + 1].first != by_key[i].first;
      if (last_of_key && cum >= target) {
        lo = std::max(lo, by_key[i].first);
        break;
      }
    }
  }
  uint64_t s = 0;
  for (size_t i = 0; i < n; ++i)
    if (kept(i)) s += to_fixed(w[i]);
  const uint64_t t = mulhi64(row_random64(row), s);
  uint64_t cum = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!kept(i)) continue;
    cum += to_fixed(w[i]);
    if (cum > t) return static_cast<int32_t>(i);
  }
  return static_cast<int32_t>(best);  // unreachable: the maximum weighs 2^40 > 0
}

}  // namespace troupe::cuda
