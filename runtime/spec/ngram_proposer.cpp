#include "runtime/spec/ngram_proposer.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "runtime/engine/sequence.hpp"

namespace troupe {

// One backward walk: at each earlier position whose token equals the last one, the length of
// the common suffix (up to the maximum) is measured; the first position reaching the maximum
// ends the walk (the most recent of the longest), else the longest seen wins.
std::span<const token_id> ngram_lookup(std::span<const token_id> tokens, const ngram_options& o, int32_t max_tokens) {
  const auto L = static_cast<int64_t>(tokens.size());
  const int64_t n_max = std::min<int64_t>(o.max_matching_ngram_size, L - 1);
  if (max_tokens < 1 || n_max < o.min_matching_ngram_size || n_max < 1) return {};
  int64_t best_end = -1, best_len = 0;  // the match ends at best_end (inclusive)
  for (int64_t i = L - 2; i >= 0; --i) {
    int64_t len = 0;
    while (len < n_max && i - len >= 0 && tokens[static_cast<size_t>(i - len)] == tokens[static_cast<size_t>(L - 1 - len)])
      ++len;
    if (len > best_len) {
      best_len = len;
      best_end = i;
      if (len == n_max) break;
    }
  }
  if (best_len < o.min_matching_ngram_size) return {};
  const int64_t from = best_end + 1;
  const int64_t n = std::min<int64_t>(max_tokens, L - from);
  return tokens.subspan(static_cast<size_t>(from), static_cast<size_t>(n));
}

result<std::unique_ptr<ngram_proposer>> ngram_proposer::create(const ngram_options& o) {
  if (o.min_matching_ngram_size < 1)
    return make_error(fmt::format("min_matching_ngram_size must be at least 1, not {}", o.min_matching_ngram_size));
  if (o.max_matching_ngram_size < o.min_matching_ngram_size)
    return make_error(fmt::format("max_matching_ngram_size ({}) must not be below min_matching_ngram_size ({})",
                                  o.max_matching_ngram_size, o.min_matching_ngram_size));
  return std::unique_ptr<ngram_proposer>(new ngram_proposer(o));
}

draft ngram_proposer::propose(const sequence& s, int32_t max_tokens) {
  draft d;
  const auto found = ngram_lookup(s.tokens, opt_, max_tokens);
  d.tokens.assign(found.begin(), found.end());
  return d;
}

}  // namespace troupe
