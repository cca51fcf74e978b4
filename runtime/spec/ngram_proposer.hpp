// ngram_proposer: the NGram drafter (prompt lookup). No model runs: the draft is what followed
// the latest earlier occurrence of the sequence's last n tokens in its own prompt and output,
// n from max_matching_ngram_size down to min_matching_ngram_size (the longest match wins; among
// equally long ones, the most recent).
//
// It owns nothing per sequence (each proposal reads the sequence's tokens afresh), so it needs
// no forget() and no locks. It does not verify, roll back or touch KV: the engine does.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "runtime/engine/proposer.hpp"
#include "runtime/result.hpp"

namespace troupe {

struct ngram_options {
  int32_t max_matching_ngram_size = 4;  // the longest suffix looked up
  int32_t min_matching_ngram_size = 1;  // the shortest one tried before giving up
};

// The tokens after the best match of tokens' last n tokens earlier in tokens (at most
// max_tokens; empty when no n-gram of the allowed sizes recurs).
std::span<const token_id> ngram_lookup(std::span<const token_id> tokens, const ngram_options& o, int32_t max_tokens);

// Every match's continuation (at most max_tokens each), best first: longer matches first, then
// the more recent; ngram_lookup's is the first. At most max_matches of them.
std::vector<std::span<const token_id>> ngram_matches(std::span<const token_id> tokens, const ngram_options& o,
                                                     int32_t max_tokens, size_t max_matches);

class ngram_proposer final : public proposer {
 public:
  // Refuses sizes below 1 or a minimum above the maximum.
  [[nodiscard]] static result<std::unique_ptr<ngram_proposer>> create(const ngram_options& o);
  // A tree (tree_width() > 1): the matches' continuations as a trie, the best match's the spine;
  // other matches branch off where they diverge (at most tree_width() children per node).
  draft propose(const sequence& s, int32_t max_tokens) override;
  const char* name() const override { return "NGram"; }
  bool drafts_trees() const override { return true; }

 private:
  explicit ngram_proposer(const ngram_options& o) : opt_(o) {}
  ngram_options opt_;
};

}  // namespace troupe
