// sequence: one request as the engine tracks it. The engine owns every sequence; the scheduler
// reads and advances its counters, the output processor samples for it, and the KV cache
// manager keeps its blocks under the same sequence number.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/constraint.hpp"
#include "runtime/engine/draft_chooser.hpp"
#include "runtime/engine/step.hpp"
#include "runtime/sampler.hpp"
#include "runtime/stop_strings.hpp"
#include "runtime/text/tokenizer.hpp"

namespace troupe {

struct sequence {
  uint64_t seq = 0;  // arrival order, unique in the engine
  std::string id;
  int32_t priority = 0;           // lower runs first
  uint64_t enqueued_step = 0;     // when it last started waiting (for aging)
  std::vector<token_id> tokens;   // prompt, then generated
  int32_t n_prompt = 0;
  int32_t n_computed = 0;         // leading tokens whose keys and values are in the cache
  int32_t cached_tokens = -1;     // prompt tokens served from the prefix cache at first admission
  // Who may touch what: the output processor advances sampler, detok and stops; the scheduler
  // n_computed and the queues; the KV cache manager the blocks (by seq).
  sequence_sampler sampler;
  std::optional<detokenizer> detok;
  stop_matcher stops;
  sampling_params params;
  int64_t n_drafted = 0;          // draft tokens verified over its life
  int64_t n_draft_accepted = 0;
  spec_acceptance acceptance;    // decayed, for the adaptive draft length (draft_chooser.hpp)
  // What the output must match (request::constraint); the output processor masks with it and
  // feeds it each token kept, the scheduler trims drafts to what it allows. May be null.
  std::shared_ptr<token_constraint> constraint;
  // An embedding request (request::pool): never sampled. pooled holds the sum of its hidden
  // rows so far (mean, summed in order in double, so chunking cannot change it) or its last
  // row (last). The engine touches these.
  pooling pool = pooling::none;
  std::vector<double> pooled;
  // Prompt logprobs (params.prompt_logprobs): entry p is token p + 1's, filled from the logit
  // rows of its prefill chunks and sent with its first token.
  std::vector<sampled> prompt_logprobs;
  bool prompt_logprobs_sent = false;

  sequence(uint64_t seq_no, std::string id_, int32_t prio, std::vector<token_id> prompt,
           const sampling_params& p, const tokenizer* tok)
      : seq(seq_no), id(std::move(id_)), priority(prio), tokens(std::move(prompt)),
        n_prompt(static_cast<int32_t>(tokens.size())), sampler(p, tokens), stops(p.stop), params(p) {
    if (tok) detok.emplace(*tok, true);
  }
  sequence(const sequence&) = delete;
  sequence& operator=(const sequence&) = delete;

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  // Tokens still to compute before the next can be sampled.
  int32_t remaining() const { return size() - n_computed; }
  int32_t completion() const { return size() - n_prompt; }
  // One token left to compute, then one to sample: it decodes (or verifies drafts) next. (A
  // prompt whose prefix was cached up to its last token decodes too.)
  bool decoding() const { return remaining() == 1; }
  // Its prefill chunks need a logit row at every prompt position.
  bool wants_prompt_rows() const { return params.prompt_logprobs >= 0 && !prompt_logprobs_sent; }
  // Its prefill must compute every prompt token (no prefix-cache hit): mean pooling sums every
  // row, and prompt logprobs need every row's logits.
  bool computes_whole_prompt() const { return pool == pooling::mean || wants_prompt_rows(); }
};

}  // namespace troupe
