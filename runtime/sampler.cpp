#include "runtime/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "kernels/cpu/ops.hpp"

namespace troupe {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

token_id argmax(std::span<const float> v) {
  return static_cast<token_id>(std::max_element(v.begin(), v.end()) - v.begin());
}

// log(sum(exp(v))) computed stably.
double log_sum_exp(std::span<const float> v) {
  const float m = *std::max_element(v.begin(), v.end());
  thread_local std::vector<float> scratch;
  scratch.assign(v.begin(), v.end());
  return m + std::log(cpu::exp_shifted(scratch.data(), static_cast<int64_t>(scratch.size()), m, 1.0f));
}

}  // namespace

status sampling_params::validate(int64_t n_vocab) const {
  auto bad = [](std::string_view name, std::string why) {
    return make_error(fmt::format("{} {}", name, why));
  };
  if (!(temperature >= 0.0f) || temperature > 100.0f) return bad("temperature", "must be between 0 and 100");
  if (!(top_p > 0.0f && top_p <= 1.0f)) return bad("top_p", "must be greater than 0 and at most 1");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return bad("min_p", "must be between 0 and 1");
  if (top_k < -1) return bad("top_k", "must be -1 (off), 0 (off) or a positive number");
  if (!(repetition_penalty > 0.0f) || repetition_penalty > 100.0f)
    return bad("repetition_penalty", "must be greater than 0 and at most 100");
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f))
    return bad("presence_penalty", "must be between -2 and 2");
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f))
    return bad("frequency_penalty", "must be between -2 and 2");
  for (auto& [id, bias] : logit_bias) {
    if (id < 0 || id >= n_vocab)
      return bad("logit_bias", fmt::format("names token {}, outside the vocabulary of {}", id, n_vocab));
    if (!(bias >= -100.0f && bias <= 100.0f))
      return bad("logit_bias", fmt::format("for token {} must be between -100 and 100", id));
  }
  if (logprobs < -1 || logprobs > 20) return bad("logprobs", "must be between 0 and 20");
  if (prompt_logprobs < -1 || prompt_logprobs > 20) return bad("prompt_logprobs", "must be between 0 and 20");
  if (max_tokens < 0 || (max_tokens == 0 && prompt_logprobs < 0))
    return bad("max_tokens", "must be at least 1 (0 only with prompt_logprobs: the prompt scored alone)");
  if (min_tokens < 0 || min_tokens > max_tokens)
    return bad("min_tokens", "must be between 0 and max_tokens");
  for (token_id id : stop_token_ids)
    if (id < 0 || id >= n_vocab)
      return bad("stop_token_ids", fmt::format("names token {}, outside the vocabulary of {}", id, n_vocab));
  if (stop.size() > 16) return bad("stop", "may hold at most 16 strings");
  for (const auto& s : stop)
    if (s.empty()) return bad("stop", "may not hold an empty string");
  return {};
}

rng::rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

sequence_sampler::sequence_sampler(const sampling_params& params, std::span<const token_id> prompt)
    : params_(params), rng_(params.seed ? *params.seed : std::random_device{}() * 0x100000001ull ^ std::random_device{}()) {
  if (params_.repetition_penalty != 1.0f) seen_.assign(prompt.begin(), prompt.end());
}

void sequence_sampler::accept(token_id id) {
  ++output_counts_[id];
  if (params_.repetition_penalty != 1.0f) seen_.push_back(id);
}

sampled logprobs_of(std::span<const float> logits, token_id chosen, int32_t top_k) {
  sampled s;
  s.id = chosen;
  const double lse = log_sum_exp(logits);
  s.logprob = static_cast<float>(logits[static_cast<size_t>(chosen)] - lse);
  if (top_k > 0) {
    std::vector<std::pair<float, token_id>> c;
    c.reserve(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) c.emplace_back(logits[i], static_cast<token_id>(i));
    const size_t k = std::min(static_cast<size_t>(top_k), c.size());
    std::partial_sort(c.begin(), c.begin() + static_cast<ptrdiff_t>(k), c.end(),
                      [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
    for (size_t i = 0; i < k; ++i) s.top.push_back({c[i].second, static_cast<float>(c[i].first - lse)});
  }
  return s;
}

// probs: unnormalised probabilities at this temperature (the most likely token has 1), total
// their sum. False when the whole distribution is kept; else cand_[0, keep) holds the kept
// (probability, id) pairs, most likely first (top-k, then min-p and top-p).
bool sequence_sampler::truncate(std::span<const float> probs, double total, size_t& keep) {
  const sampling_params& p = params_;
  const auto V = probs.size();
  const bool cut_k = p.top_k > 0 && static_cast<size_t>(p.top_k) < V;
  if (!cut_k && p.top_p >= 1.0f && p.min_p <= 0.0f) return false;
  // min-p keeps tokens at least min_p times as likely as the most likely one.
  float floor = p.min_p;
  double mass = total;
  if (p.min_p > 0.0f) {
    mass = 0;
    for (float l : probs)
      if (l >= floor) mass += l;
  }
  // Without top-k, no token below (1 - top_p) * mass / V can be in the nucleus (everything
  // from it down would weigh less than 1 - top_p), so the sort only sees the head.
  if (!cut_k && p.top_p < 1.0f)
    floor = std::max(floor, static_cast<float>((1.0 - p.top_p) * mass / static_cast<double>(V)));
  cand_.clear();
  for (size_t i = 0; i < V; ++i)
    if (probs[i] >= floor && probs[i] > 0.0f) cand_.emplace_back(probs[i], static_cast<token_id>(i));
  auto by_prob = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (cut_k && static_cast<size_t>(p.top_k) < cand_.size()) {
    std::nth_element(cand_.begin(), cand_.begin() + p.top_k, cand_.end(), by_prob);
    cand_.resize(static_cast<size_t>(p.top_k));
  }
  std::sort(cand_.begin(), cand_.end(), by_prob);
  keep = cand_.size();
  if (p.top_p < 1.0f) {
    double kept_mass = 0;
    for (const auto& c : cand_) kept_mass += c.first;
    const double target = p.top_p * (cut_k ? kept_mass : mass);
    double cum = 0;
    for (size_t i = 0; i < cand_.size(); ++i) {
      cum += cand_[i].first;
      if (cum >= target) {
        keep = i + 1;
        break;
      }
    }
  }
  return true;
}

token_id sequence_sampler::sample_processed(std::span<float> logits) {
  const auto V = logits.size();
  const float m = *std::max_element(logits.begin(), logits.end());
  const double total = cpu::exp_shifted(logits.data(), static_cast<int64_t>(V), m, 1.0f / params_.temperature);
  size_t keep = 0;
  if (!truncate(logits, total, keep)) {  // the whole distribution
    double r = rng_.uniform() * total;
    for (size_t i = 0; i < V; ++i) {
      r -= logits[i];
      if (r < 0) return static_cast<token_id>(i);
    }
    return static_cast<token_id>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += cand_[i].first;
  double r = rng_.uniform() * kept;
  for (size_t i = 0; i < keep; ++i) {
    r -= cand_[i].first;
    if (r < 0) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

void sequence_sampler::apply_penalties(std::span<float> logits) {
  const sampling_params& p = params_;
  for (auto& [id, bias] : p.logit_bias) logits[static_cast<size_t>(id)] += bias;
  if (p.repetition_penalty != 1.0f) {
    seen_mask_.assign(logits.size(), 0);
    for (token_id id : seen_) {
      if (seen_mask_[static_cast<size_t>(id)]) continue;
      seen_mask_[static_cast<size_t>(id)] = 1;
      float& l = logits[static_cast<size_t>(id)];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)
    for (auto& [id, n] : output_counts_)
      logits[static_cast<size_t>(id)] -= p.presence_penalty + p.frequency_penalty * static_cast<float>(n);
}

bool sequence_sampler::greedy() const { return params_.temperature == 0.0f || params_.top_k == 1; }

token_id sequence_sampler::greedy_choice(std::span<float> logits) {
  apply_penalties(logits);
  return argmax(logits);
}

void sequence_sampler::distribution(std::span<float> logits) {
  apply_penalties(logits);
  const auto V = logits.size();
  if (greedy()) {
    const token_id t = argmax(logits);
    std::fill(logits.begin(), logits.end(), 0.0f);
    logits[static_cast<size_t>(t)] = 1.0f;
    return;
  }
  const float m = *std::max_element(logits.begin(), logits.end());
  const double total = cpu::exp_shifted(logits.data(), static_cast<int64_t>(V), m, 1.0f / params_.temperature);
  size_t keep = 0;
  if (!truncate(logits, total, keep)) {
    const auto inv = static_cast<float>(1.0 / total);
    for (float& x : logits) x *= inv;
    return;
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += cand_[i].first;
  std::fill(logits.begin(), logits.end(), 0.0f);
  for (size_t i = 0; i < keep; ++i) logits[static_cast<size_t>(cand_[i].second)] = static_cast<float>(cand_[i].first / kept);
}

token_id sequence_sampler::sample_from(std::span<const float> probs) {
  double total = 0;
  for (float x : probs) total += x;
  double r = rng_.uniform() * total;
  token_id last = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0.0f) continue;
    last = static_cast<token_id>(i);
    r -= probs[i];
    if (r < 0) return last;
  }
  return last;
}

sampled sequence_sampler::sample(std::span<float> logits) {
  const sampling_params& p = params_;
  // Logprobs are reported under the model's own distribution, before any processing.
  std::vector<float> raw;
  if (p.logprobs >= 0) raw.assign(logits.begin(), logits.end());
  apply_penalties(logits);
  const token_id chosen = greedy() ? argmax(logits) : sample_processed(logits);
  if (p.logprobs >= 0) return logprobs_of(raw, chosen, p.logprobs);
  sampled s;
  s.id = chosen;
  return s;
}

}  // namespace troupe
