// constraint: what a sequence's output must match, token by token. The engine masks the
// logits of every position it samples with it, feeds it each token it keeps, and checks a
// speculative draft against it before verification (rolling back what verification rejects).
// An implementation belongs to one sequence and one thread; it may share read-only tables
// (a compiled grammar, a vocabulary index) with other sequences of the same engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace troupe {

using token_id = int32_t;

class token_constraint {
 public:
  virtual ~token_constraint() = default;

  // logits [n_vocab] of the next position: every token that may not come next becomes -inf.
  // End-of-sequence tokens stay only where the output may end.
  virtual void mask_logits(std::span<float> logits) = 0;
  // Whether token may come next (for end-of-sequence tokens: whether the output may end here).
  virtual bool allows(token_id token) = 0;
  // Takes the next token; false, with nothing changed, if it may not come next.
  virtual bool accept(token_id token) = 0;
  // Nothing but the end may follow: the engine ends the sequence (finish reason stop).
  virtual bool finished() const = 0;
  // How many of drafts, from the first, may come next in a row; nothing changes.
  virtual size_t allowed_prefix(std::span<const token_id> drafts) = 0;
  // Takes back the last n accepted tokens (drafts that verification rejected).
  virtual void rollback(size_t n) = 0;
};

}  // namespace troupe
