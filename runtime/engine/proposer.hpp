// proposer: where draft tokens come from (speculative decoding). The scheduler asks it, once
// per step, for a draft for each decoding sequence that may speculate; the target model then
// verifies the draft in the same batched forward as everything else, and the output processor
// keeps the longest prefix the target agrees with. A proposer never touches the target's KV.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/engine/step.hpp"

namespace troupe {

struct sequence;

class proposer {
 public:
  virtual ~proposer() = default;
  // Up to max_tokens draft tokens to follow s.tokens (max_tokens >= 1). An empty draft is
  // plain decoding for this step.
  virtual draft propose(const sequence& s, int32_t max_tokens) = 0;
  // Drafts for several sequences at once (max_tokens[i] >= 1 for seqs[i]): a drafter that runs
  // a model drafts them all in one forward per draft position. By default, one propose each.
  virtual std::vector<draft> propose_batch(std::span<const sequence* const> seqs, std::span<const int32_t> max_tokens) {
    std::vector<draft> out;
    out.reserve(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) out.push_back(propose(*seqs[i], max_tokens[i]));
    return out;
  }
  // Seconds of the last propose/propose_batch spent catching up (computing tokens already
  // decided, e.g. a draft model's prefill of the prompt) rather than drafting: the adaptive draft
  // length charges drafts only for the rest.
  virtual double last_catch_up_seconds() const { return 0; }
  // s has finished or was aborted: drop what is kept for it.
  virtual void forget(const sequence& /*s*/) {}
  virtual const char* name() const = 0;
};

}  // namespace troupe
