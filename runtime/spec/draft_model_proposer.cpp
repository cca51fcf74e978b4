#include "runtime/spec/draft_model_proposer.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "runtime/engine/draft_tree.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/model_config.hpp"

namespace troupe {

result<std::unique_ptr<draft_model_proposer>> draft_model_proposer::create(std::shared_ptr<executor> ex,
                                                                           int64_t n_tokens,
                                                                           int32_t max_batch_tokens) {
  if (!ex) return make_error("the draft model has no executor");
  if (ex->kv_n_blocks() < 1) return make_error("the draft model's KV cache has no blocks");
  return std::unique_ptr<draft_model_proposer>(new draft_model_proposer(std::move(ex), n_tokens, max_batch_tokens));
}

draft_model_proposer::draft_model_proposer(std::shared_ptr<executor> ex, int64_t n_tokens, int32_t max_batch_tokens)
    : ex_(std::move(ex)),
      n_tokens_(n_tokens),
      n_vocab_(ex_->config().n_vocab),
      max_batch_tokens_(std::max(1, max_batch_tokens)),
      max_position_(static_cast<int32_t>(std::min<int64_t>(ex_->config().max_position > 0 ? ex_->config().max_position
                                                                                           : INT32_MAX,
                                                           INT32_MAX))),
      kv_(ex_->kv_n_blocks(), ex_->kv_block_size(), /*prefix_cache=*/false, 0, 0) {
  if (n_tokens_ <= 0 || n_tokens_ > n_vocab_) n_tokens_ = n_vocab_;
}

void draft_model_proposer::forget(const sequence& s) {
  kv_.free(s.seq);
  computed_.erase(s.seq);
}

int32_t draft_model_proposer::catch_up_rows(const sequence& s) const {
  // The tokens its first draft forward computes beyond the one that drafts.
  const auto it = computed_.find(s.seq);
  const int32_t L = s.size();
  if (it == computed_.end()) return std::max(0, L - 1);
  const std::vector<token_id>& c = it->second;
  const auto common =
      static_cast<int32_t>(std::mismatch(c.begin(), c.end(), s.tokens.begin(), s.tokens.end()).first - c.begin());
  return std::max(0, L - 1 - std::min(common, L - 1));
}

draft draft_model_proposer::propose(const sequence& s, int32_t max_tokens) {
  const sequence* one[] = {&s};
  const int32_t k[] = {max_tokens};
  return std::move(propose_batch(one, k)[0]);
}

std::vector<draft> draft_model_proposer::propose_batch(std::span<const sequence* const> seqs,
                                                       std::span<const int32_t> max_tokens) {
  std::vector<draft> out(seqs.size());
  catch_up_s_ = 0;
  catch_up_rows_ = 0;
  struct job {
    size_t i;
    const sequence* s;
    int32_t n_keep;  // tokens of the sequence already in the draft cache
    int32_t k;       // drafts wanted
  };
  std::vector<job> jobs;
  int64_t catch_up = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const sequence& s = *seqs[i];
    const int32_t L = s.size();
    const int32_t k = std::min(max_tokens[i], max_position_ - L);
    if (k < 1 || L < 1) continue;
    std::vector<token_id>& c = computed_[s.seq];
    // Keep the longest common prefix (the accepted drafts), at most L - 1 tokens: the last one
    // is computed again for its logits.
    const auto common = static_cast<int32_t>(
        std::mismatch(c.begin(), c.end(), s.tokens.begin(), s.tokens.end()).first - c.begin());
    const int32_t keep = std::min(common, L - 1);
    c.resize(static_cast<size_t>(keep));
    kv_.truncate(s.seq, keep);
    if (catch_up > 0 && catch_up + (L - keep) > max_batch_tokens_) continue;  // next step
    if (!kv_.allocate_slots(s.seq, keep, L - keep, k - 1)) {
      forget(s);  // the draft cache is full: this sequence decodes plainly and starts afresh later
      continue;
    }
    catch_up += L - keep;
    jobs.push_back({i, &s, keep, k});
  }
  if (jobs.empty()) return out;

  const auto V = static_cast<size_t>(n_vocab_);
  std::vector<float> logits;
  forward_batch b;
  // The catch-up forward: each sequence's tokens the draft cache lacks; its last row drafts 1.
  for (const job& j : jobs) {
    const sequence& s = *j.s;
    b.add(j.n_keep, std::span<const token_id>(s.tokens).subspan(static_cast<size_t>(j.n_keep)), kv_.blocks(s.seq), 1);
  }
  auto fail = [&](const status& st) {
    last_error_ = st.message();
    for (const job& j : jobs) forget(*j.s);
    return std::vector<draft>(seqs.size());
  };
  const auto t0 = std::chrono::steady_clock::now();
  if (status st = ex_->forward(b, logits); !st.ok()) return fail(st);
  // The catch-up forward counts as drafting for the share of one token per sequence (what a
  // draft position costs); the rest (prompts, tokens accepted without drafting) is catching up.
  const double fwd = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (b.n_tokens() > 0) catch_up_s_ = fwd * (1.0 - static_cast<double>(jobs.size()) / b.n_tokens());
  catch_up_rows_ = b.n_tokens() - static_cast<int64_t>(jobs.size());
  const int32_t w = tree_width();
  std::vector<std::vector<std::vector<token_id>>> siblings(w > 1 ? seqs.size() : 0);  // [seq][position]
  auto pick = [&](size_t i, const float* row) { return draft_pick(row, n_tokens_, w, w > 1 ? &siblings[i] : nullptr); };
  for (size_t r = 0; r < jobs.size(); ++r) {
    const job& j = jobs[r];
    computed_[j.s->seq] = j.s->tokens;
    out[j.i].tokens.push_back(pick(j.i, logits.data() + r * V));
  }
  // Draft positions 2..k: one forward each over the sequences still drafting.
  for (int32_t pos = 1;; ++pos) {
    b.clear();
    std::vector<const job*> live;
    for (const job& j : jobs)
      if (j.k > pos) {
        std::vector<token_id>& c = computed_[j.s->seq];
        const token_id last = out[j.i].tokens.back();
        b.add(static_cast<int32_t>(c.size()), std::span<const token_id>(&last, 1), kv_.blocks(j.s->seq), 1);
        live.push_back(&j);
      }
    if (live.empty()) break;
    if (status st = ex_->forward(b, logits); !st.ok()) return fail(st);
    for (size_t r = 0; r < live.size(); ++r) {
      const job& j = *live[r];
      computed_[j.s->seq].push_back(out[j.i].tokens.back());
      out[j.i].tokens.push_back(pick(j.i, logits.data() + r * V));
    }
  }
  for (const job& j : jobs) kv_.truncate(j.s->seq, static_cast<int32_t>(computed_[j.s->seq].size()));
  if (w > 1)
    for (const job& j : jobs) out[j.i] = draft_of_chain(out[j.i].tokens, siblings[j.i], out[j.i].tokens.size());
  return out;
}

}  // namespace troupe
