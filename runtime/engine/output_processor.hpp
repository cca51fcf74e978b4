// output_processor: turns one sequence's logit rows into the tokens it keeps.
//
// A decode samples its one row. A verify checks draft tokens row by row: under greedy sampling
// a draft token is kept while it is the token plain decoding would choose, and the first
// disagreement is replaced by that choice; under sampling, each draft token is accepted with
// probability min(1, p/q) and a rejection is resampled from the residual max(p - q, 0)
// (Leviathan et al. 2023; Chen et al. 2023), so the output follows the target's distribution
// exactly. When every draft is accepted the last row gives one more token. A tree draft is
// walked from the root along the children the target accepts (process_tree). Then, token by
// token: stop tokens, min_tokens, detokenizing, stop strings and max_tokens, exactly as plain
// decoding would apply them, so a step never emits past an end.
//
// It owns no state between steps: the sequence carries its sampler, detokenizer and stop
// matcher. It does not touch KV blocks or queues: the engine applies the result.
#pragma once

#include <span>
#include <unordered_set>
#include <vector>

#include "runtime/engine/step.hpp"

namespace troupe {

struct sequence;

class output_processor {
 public:
  // n_vocab: the width of a logit row; n_tokens: ids below it may be sampled (the rest are
  // padding); max_seq_len: prompt plus completion at most.
  output_processor(int64_t n_vocab, int64_t n_tokens, std::vector<token_id> eos_ids, int32_t max_seq_len);

  // rows: the sequence's logit rows, [plan.n_logits][n_vocab]. Appends what it keeps to
  // s.tokens (and advances its sampler, detokenizer and stop matcher).
  seq_result process(sequence& s, const scheduled_seq& plan, std::span<const float> rows);

  // The text a finished sequence still holds back (detokenizer tail, stop-string prefixes).
  static std::string flush(sequence& s);

 private:
  // A row as the sampler should see it: padding ids and (before min_tokens) stop tokens out.
  std::span<float> masked(const sequence& s, std::span<const float> row);
  // Records t as s's next token; the finish reason if it ends s.
  void emit(sequence& s, token_id t, const sampled* lp, seq_result& out);
  seq_result process_tree(sequence& s, const scheduled_seq& plan, std::span<const float> rows);
  token_id verify_one(sequence& s, std::span<float> row, const draft& d, size_t i, bool& accepted);

  int64_t n_vocab_, n_tokens_;
  std::unordered_set<token_id> eos_;
  int32_t max_seq_len_;
  std::vector<float> row_, probs_;  // scratch
};

}  // namespace troupe
