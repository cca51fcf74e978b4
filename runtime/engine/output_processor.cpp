#include "runtime/engine/output_processor.hpp"

#include <algorithm>
#include <limits>

#include "runtime/engine/sequence.hpp"

namespace troupe {

const char* finish_reason_name(finish_reason r) {
  switch (r) {
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
    case finish_reason::abort: return "abort";
  }
  return "?";
}

const char* seq_phase_name(seq_phase p) {
  switch (p) {
    case seq_phase::prefill: return "prefill";
    case seq_phase::decode: return "decode";
    case seq_phase::verify: return "verify";
  }
  return "?";
}

const char* pooling_name(pooling p) {
  switch (p) {
    case pooling::none: return "none";
    case pooling::mean: return "mean";
    case pooling::last: return "last";
  }
  return "?";
}

output_processor::output_processor(int64_t n_vocab, int64_t n_tokens, std::vector<token_id> eos_ids,
                                   int32_t max_seq_len)
    : n_vocab_(n_vocab), n_tokens_(n_tokens), eos_(eos_ids.begin(), eos_ids.end()), max_seq_len_(max_seq_len) {}

std::span<float> output_processor::masked(const sequence& s, std::span<const float> row) {
  row_.assign(row.begin(), row.end());
  // Ids past the tokenizer's vocabulary (padding rows) are never sampled, nor stop tokens
  // before min_tokens. Under a constraint its mask decides, end tokens included (it is the
  // state after every token emitted so far, so row i of a verification gets the mask after
  // drafts 0..i-1).
  const float ninf = -std::numeric_limits<float>::infinity();
  for (auto i = static_cast<size_t>(n_tokens_); i < row_.size(); ++i) row_[i] = ninf;
  if (s.constraint) {
    s.constraint->mask_logits(row_);
    return row_;
  }
  if (s.completion() < s.params.min_tokens) {
    if (!s.params.ignore_eos)
      for (token_id t : eos_) row_[static_cast<size_t>(t)] = ninf;
    for (token_id t : s.params.stop_token_ids) row_[static_cast<size_t>(t)] = ninf;
  }
  return row_;
}

void output_processor::emit(sequence& s, token_id t, const sampled* lp, seq_result& out) {
  if (s.constraint && !s.constraint->accept(t)) {
    // The mask allowed nothing (a grammar that cannot go on): end rather than write a token
    // it refuses.
    out.finished = finish_reason::stop;
    return;
  }
  s.sampler.accept(t);
  s.tokens.push_back(t);
  out.tokens.push_back(t);
  if (s.params.logprobs >= 0 && lp) out.logprobs.push_back(*lp);
  const bool stop_token = (!s.params.ignore_eos && eos_.count(t)) ||
                          std::find(s.params.stop_token_ids.begin(), s.params.stop_token_ids.end(), t) !=
                              s.params.stop_token_ids.end();
  if (stop_token) {
    out.finished = finish_reason::stop;  // the stop token itself is not part of the text
  } else {
    const std::string piece = s.detok ? s.detok->push(t) : std::string();
    auto o = s.stops.push(piece);
    out.text += o.text;
    if (o.stopped) {
      out.finished = finish_reason::stop;
      out.stop_string = o.matched;
    }
  }
  if (!out.finished && s.constraint && s.constraint->finished()) out.finished = finish_reason::stop;
  if (!out.finished && (s.completion() >= s.params.max_tokens || s.size() >= max_seq_len_))
    out.finished = finish_reason::length;
}

// Row i against draft token i: the token to emit, and whether it is the draft's.
token_id output_processor::verify_one(sequence& s, std::span<float> row, const draft& d, size_t i, bool& accepted) {
  const token_id want = d.tokens[i];
  const auto V = static_cast<size_t>(n_vocab_);
  if (s.sampler.greedy()) {  // the argmax alone: no distribution over the vocabulary
    const token_id t = s.sampler.greedy_choice(row);
    accepted = t == want;
    return t;
  }
  s.sampler.distribution(row);  // row now holds p, the target's distribution here
  // q: the drafter's distribution at this position (deterministic drafts: 1 on the draft).
  const float* q = d.probs.empty() ? nullptr : d.probs.data() + i * V;
  const double q_want = q ? q[want] : 1.0;
  const double p_want = row[static_cast<size_t>(want)];
  if (q_want > 0 && s.sampler.uniform() * q_want < p_want) {
    accepted = true;
    return want;
  }
  accepted = false;
  // Rejected: resample from max(p - q, 0), renormalised.
  probs_.assign(row.begin(), row.end());
  if (q) {
    for (size_t v = 0; v < V; ++v) probs_[v] = std::max(0.0f, probs_[v] - q[v]);
  } else {
    probs_[static_cast<size_t>(want)] = 0.0f;
  }
  double mass = 0;
  for (float x : probs_) mass += x;
  if (mass <= 0) return static_cast<token_id>(std::max_element(row.begin(), row.end()) - row.begin());
  return s.sampler.sample_from(probs_);
}

// A tree: row 0 is the root (the sequence's last token), row j + 1 node j. From the root, the
// children of the current node are tried in order. Greedy: the child whose token is the
// target's argmax is taken. Sampling (drafts deterministic): multi-candidate rejection
// (SpecInfer; vLLM's tree rejection sampler): child c is accepted with probability r(c) under
// the residual r, initially the target's p; a rejection zeroes r at c and renormalises; when
// every child is rejected the token comes from r. Each emitted token is thus distributed as p.
seq_result output_processor::process_tree(sequence& s, const scheduled_seq& plan, std::span<const float> rows) {
  seq_result out;
  out.seq = s.seq;
  const auto V = static_cast<size_t>(n_vocab_);
  const draft& d = plan.drafted;
  const auto k = static_cast<int32_t>(d.tokens.size());
  int32_t at = -1;  // the current node (-1: the root)
  while (!out.finished) {
    std::span<float> row = masked(s, rows.subspan(static_cast<size_t>(at + 1) * V, V));
    std::vector<int32_t> kids;
    for (int32_t j = at + 1; j < k; ++j)
      if (d.parents[static_cast<size_t>(j)] == at) kids.push_back(j);
    if (kids.empty()) {  // a leaf (or nothing drafted here): plain sampling
      const sampled pick = s.sampler.sample(row);
      emit(s, pick.id, &pick, out);
      break;
    }
    std::vector<float> raw_masked;
    if (s.params.logprobs >= 0) raw_masked.assign(row.begin(), row.end());
    int32_t took = -1;
    token_id t = 0;
    if (s.sampler.greedy()) {  // the argmax alone: no distribution over the vocabulary
      t = s.sampler.greedy_choice(row);
      for (int32_t c : kids)
        if (d.tokens[static_cast<size_t>(c)] == t) {
          took = c;
          break;
        }
    } else {
      s.sampler.distribution(row);  // p
      probs_.assign(row.begin(), row.end());
      double mass = 1.0;  // p sums to 1
      for (int32_t c : kids) {
        const auto want = static_cast<size_t>(d.tokens[static_cast<size_t>(c)]);
        if (mass > 0 && s.sampler.uniform() * mass < probs_[want]) {
          took = c;
          break;
        }
        probs_[want] = 0.0f;
        mass = 0;
        for (float x : probs_) mass += x;
      }
      if (took >= 0) t = d.tokens[static_cast<size_t>(took)];
      else if (mass > 0) t = s.sampler.sample_from(probs_);
      else t = static_cast<token_id>(std::max_element(row.begin(), row.end()) - row.begin());
    }
    sampled lp;
    if (s.params.logprobs >= 0) lp = logprobs_of(raw_masked, t, s.params.logprobs);
    emit(s, t, &lp, out);
    if (took < 0) break;
    ++out.n_draft_accepted;
    out.accepted_nodes.push_back(took);
    at = took;
  }
  out.n_drafted = k;
  s.n_drafted += out.n_drafted;
  s.n_draft_accepted += out.n_draft_accepted;
  return out;
}

seq_result output_processor::process(sequence& s, const scheduled_seq& plan, std::span<const float> rows) {
  if (plan.phase == seq_phase::verify && plan.drafted.is_tree()) return process_tree(s, plan, rows);
  seq_result out;
  out.seq = s.seq;
  const auto V = static_cast<size_t>(n_vocab_);
  const draft& d = plan.drafted;
  const size_t k = plan.phase == seq_phase::verify ? d.tokens.size() : 0;
  for (size_t i = 0; i <= k && !out.finished; ++i) {
    const std::span<const float> raw = rows.subspan(i * V, V);
    std::span<float> row = masked(s, raw);
    if (i == k) {  // plain decoding, or the token after every accepted draft
      const sampled pick = s.sampler.sample(row);
      emit(s, pick.id, &pick, out);
      break;
    }
    std::vector<float> raw_masked;
    if (s.params.logprobs >= 0) raw_masked.assign(row.begin(), row.end());
    bool accepted = false;
    const token_id t = verify_one(s, row, d, i, accepted);
    sampled lp;
    if (s.params.logprobs >= 0) lp = logprobs_of(raw_masked, t, s.params.logprobs);
    emit(s, t, &lp, out);
    if (!accepted) break;
    ++out.n_draft_accepted;
  }
  // Drafts left unverified (the sequence ended first) count as drafted, not accepted.
  out.n_drafted = static_cast<int32_t>(k);
  s.n_drafted += out.n_drafted;
  s.n_draft_accepted += out.n_draft_accepted;
  return out;
}

std::string output_processor::flush(sequence& s) {
  if (s.stops.stopped()) return {};
  std::string text;
  std::string tail = s.detok ? s.detok->flush() : std::string();
  auto o = s.stops.push(tail);
  text += o.text;
  if (!o.stopped) text += s.stops.flush().text;
  return text;
}

}  // namespace troupe
