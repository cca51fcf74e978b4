// proposer: where draft tokens come from (speculative decoding). The scheduler asks it, once
// per step, for a draft for each decoding sequence that may speculate; the target model then
// verifies the draft in the same batched forward as everything else, and the output processor
// keeps the longest prefix the target agrees with. A proposer never touches the target's KV.
#pragma once

#include <cstdint>

#include "runtime/engine/step.hpp"

namespace troupe {

struct sequence;

class proposer {
 public:
  virtual ~proposer() = default;
  // Up to max_tokens draft tokens to follow s.tokens (max_tokens >= 1). An empty draft is
  // plain decoding for this step.
  virtual draft propose(const sequence& s, int32_t max_tokens) = 0;
  // s has finished or was aborted: drop what is kept for it.
  virtual void forget(const sequence& /*s*/) {}
  virtual const char* name() const = 0;
};

}  // namespace troupe
