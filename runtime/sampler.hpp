// sampler: turns one sequence's logits into its next token: penalties, logit bias,
// temperature, min-p, top-k, top-p, a per-sequence seeded generator, and logprobs.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

using token_id = int32_t;

// What a request asks of sampling. Names and ranges follow OpenAI's API (and vLLM's
// extensions: top_k, min_p, repetition_penalty, stop_token_ids, ignore_eos, min_tokens).
struct sampling_params {
  float temperature = 1.0f;         // 0: greedy
  int32_t top_k = 0;                // 0 or -1: off
  float top_p = 1.0f;               // (0, 1]
  float min_p = 0.0f;               // [0, 1]
  float repetition_penalty = 1.0f;  // > 0; above 1 discourages tokens of prompt and output
  float presence_penalty = 0.0f;    // [-2, 2], over output tokens
  float frequency_penalty = 0.0f;   // [-2, 2], over output tokens
  std::vector<std::pair<token_id, float>> logit_bias;  // [-100, 100] each
  std::optional<uint64_t> seed;
  int32_t logprobs = -1;            // -1: none; k >= 0: the chosen token's and k alternatives
  int32_t prompt_logprobs = -1;     // the same for every prompt token but the first (-1: none)
  int32_t max_tokens = 16;          // 0 with prompt_logprobs: the prompt is scored, nothing generated
  int32_t min_tokens = 0;           // stop tokens are ignored before this many
  std::vector<token_id> stop_token_ids;
  std::vector<std::string> stop;    // stop strings, never part of the output
  bool ignore_eos = false;

  // The first problem, naming the parameter as the API spells it.
  [[nodiscard]] status validate(int64_t n_vocab) const;
};

struct token_logprob {
  token_id id = 0;
  float logprob = 0.0f;
};

struct sampled {
  token_id id = 0;
  float logprob = 0.0f;             // under the model's own distribution (raw logits)
  std::vector<token_logprob> top;   // the `logprobs` most likely tokens, when asked
};

// A per-sequence generator: xoshiro256** seeded with splitmix64, so that the same seed gives
// the same stream on every machine and in every batch.
class rng {
 public:
  explicit rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1)

 private:
  uint64_t s_[4];
};

class sequence_sampler {
 public:
  // prompt feeds the repetition penalty.
  sequence_sampler(const sampling_params& params, std::span<const token_id> prompt);

  // Chooses the next token from logits [n_vocab]; logits are modified in place.
  sampled sample(std::span<float> logits);
  // Records a token as generated (sample does not, so speculative decoding can decide).
  void accept(token_id id);

  // For verifying draft tokens: the distribution sample() would draw from, written over logits
  // as probabilities that sum to 1 (penalties, bias, temperature, top-k, min-p, top-p applied;
  // greedy: 1 on the argmax). sample_from draws from such a vector; uniform is this sequence's
  // own generator, so seeded runs stay reproducible.
  void distribution(std::span<float> logits);
  token_id sample_from(std::span<const float> probs);
  double uniform() { return rng_.uniform(); }
  bool greedy() const;
  // Greedy only: the token sample() would choose (penalties and bias applied to logits in
  // place, then the argmax), without building a distribution over the vocabulary.
  token_id greedy_choice(std::span<float> logits);

  const sampling_params& params() const { return params_; }

 private:
  void apply_penalties(std::span<float> logits);
  bool truncate(std::span<const float> probs, double total, size_t& keep);
  token_id sample_processed(std::span<float> logits);  // temperature > 0

  sampling_params params_;
  rng rng_;
  std::unordered_map<token_id, int32_t> output_counts_;
  std::vector<token_id> seen_;  // prompt and output tokens, for the repetition penalty
  std::vector<uint8_t> seen_mask_;
  std::vector<std::pair<float, token_id>> cand_;  // scratch
};

// Logprobs of one position under the raw logits: the chosen token's and the top k.
sampled logprobs_of(std::span<const float> logits, token_id chosen, int32_t top_k);

}  // namespace troupe
