// token_mask: a grammar over bytes turned into a mask over a model's vocabulary, per step.
//
// vocab_index is the per-vocabulary precomputation: every usable token's bytes, sorted, with
// the length each shares with the one before. A mask is computed by walking the sorted list
// with the matcher, going back only to the shared prefix between neighbours and skipping
// every token that shares a prefix already refused; so tokens that share a prefix share its
// work. compiled_grammar keeps the masks of the grammar states it has seen (a string's inside,
// the place after a key): a state seen before costs one lookup and a copy of the bitmask.
// grammar_constraint is one sequence's matcher over a compiled grammar, as the engine's
// token_constraint.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/constraint.hpp"
#include "runtime/structured/grammar.hpp"

namespace troupe {
class tokenizer;
}

namespace troupe::structured {

class vocab_index {
 public:
  // token_bytes[i] is token i's bytes; unusable tokens (special, empty) are never allowed
  // by a grammar. end_ids end the output where the grammar may end. n_rows: logits per row
  // (may exceed the tokens: padding rows are never allowed).
  vocab_index(const std::vector<std::string>& token_bytes, const std::vector<bool>& usable,
              std::vector<token_id> end_ids, int64_t n_rows);
  static std::shared_ptr<const vocab_index> of(const tokenizer& tok, std::vector<token_id> end_ids, int64_t n_rows);

  int64_t n_rows() const { return n_rows_; }
  size_t n_words() const { return static_cast<size_t>((n_rows_ + 63) / 64); }
  size_t n_sorted() const { return ids_.size(); }
  token_id sorted_id(size_t k) const { return ids_[k]; }
  std::string_view sorted_bytes(size_t k) const {
    return std::string_view(bytes_).substr(offsets_[k], offsets_[k + 1] - offsets_[k]);
  }
  uint32_t shared_with_previous(size_t k) const { return lcp_[k]; }
  uint32_t max_token_bytes() const { return max_bytes_; }
  const std::vector<token_id>& end_ids() const { return end_ids_; }
  bool is_end(token_id t) const;
  // The bytes of token t ("" for unusable tokens and ends).
  std::string_view bytes_of(token_id t) const;

 private:
  int64_t n_rows_ = 0;
  std::vector<token_id> ids_;       // usable tokens, sorted by bytes
  std::string bytes_;               // their bytes, in that order
  std::vector<uint32_t> offsets_;   // [n_sorted + 1]
  std::vector<uint32_t> lcp_;       // bytes shared with the previous sorted token
  std::vector<uint32_t> rank_;      // token id -> sorted position (UINT32_MAX: unusable)
  std::vector<token_id> end_ids_;
  uint32_t max_bytes_ = 0;
};

struct mask_stats {
  uint64_t masks = 0;       // asked for
  uint64_t computed = 0;    // walked (cache misses)
  double compute_seconds = 0;
};

// A grammar bound to a vocabulary, with the masks of the states seen so far. Shared by the
// sequences of one engine that use the same constraint (one thread).
class compiled_grammar {
 public:
  compiled_grammar(grammar g, std::shared_ptr<const vocab_index> vocab);
  const grammar& gram() const { return g_; }
  const vocab_index& vocab() const { return *vocab_; }
  // The mask of m's state: bit t set when token t may come next.
  std::span<const uint64_t> mask(matcher& m);
  const mask_stats& stats() const { return stats_; }

 private:
  void compute(matcher& m, std::vector<uint64_t>& bits);

  grammar g_;
  std::shared_ptr<const vocab_index> vocab_;
  std::unordered_map<std::string, std::vector<uint64_t>> cache_;
  size_t cache_bytes_ = 0;
  std::string key_;  // scratch
  mask_stats stats_;
};

class grammar_constraint final : public token_constraint {
 public:
  explicit grammar_constraint(std::shared_ptr<compiled_grammar> g);

  void mask_logits(std::span<float> logits) override;
  bool allows(token_id token) override;
  bool accept(token_id token) override;
  bool finished() const override;
  size_t allowed_prefix(std::span<const token_id> drafts) override;
  void rollback(size_t n) override;

  const matcher& state() const { return m_; }
  // The mask for the next position, as a bitmask over the vocabulary.
  std::span<const uint64_t> mask() { return g_->mask(m_); }

 private:
  std::shared_ptr<compiled_grammar> g_;
  matcher m_;
  std::vector<matcher::mark> history_;  // before each accepted token
  bool ended_ = false;                  // an end token was accepted
};

}  // namespace troupe::structured
