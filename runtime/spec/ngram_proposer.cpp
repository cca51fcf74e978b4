#include "runtime/spec/ngram_proposer.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "runtime/engine/draft_tree.hpp"
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

std::vector<std::span<const token_id>> ngram_matches(std::span<const token_id> tokens, const ngram_options& o,
                                                     int32_t max_tokens, size_t max_matches) {
  std::vector<std::span<const token_id>> out;
  const auto L = static_cast<int64_t>(tokens.size());
  const int64_t n_max = std::min<int64_t>(o.max_matching_ngram_size, L - 1);
  if (max_tokens < 1 || n_max < o.min_matching_ngram_size || n_max < 1 || max_matches == 0) return out;
  std::vector<std::pair<int64_t, int64_t>> found;  // (length, end), most recent first
  for (int64_t i = L - 2; i >= 0; --i) {
    int64_t len = 0;
    while (len < n_max && i - len >= 0 && tokens[static_cast<size_t>(i - len)] == tokens[static_cast<size_t>(L - 1 - len)])
      ++len;
    if (len >= o.min_matching_ngram_size) found.emplace_back(len, i);
  }
  std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (const auto& [len, end] : found) {
    if (out.size() >= max_matches) break;
    const int64_t from = end + 1;
    const int64_t n = std::min<int64_t>(max_tokens, L - from);
    out.push_back(tokens.subspan(static_cast<size_t>(from), static_cast<size_t>(n)));
  }
  return out;
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
  if (const int32_t w = tree_width(); w > 1) {
    // Enough matches to fill each node's width along the spine; equal continuations merge.
    const auto found = ngram_matches(s.tokens, opt_, max_tokens, static_cast<size_t>(4 * w));
    std::vector<std::vector<token_id>> paths;
    for (const auto& f : found) paths.emplace_back(f.begin(), f.end());
    return draft_tree_of_paths(paths, w, std::min(kMaxTreeNodes - 1, w * max_tokens));
  }
  draft d;
  const auto found = ngram_lookup(s.tokens, opt_, max_tokens);
  d.tokens.assign(found.begin(), found.end());
  return d;
}

}  // namespace troupe
