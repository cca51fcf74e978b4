#include "runtime/engine/scheduler.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "runtime/engine/draft_tree.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/engine/kv_cache_manager.hpp"
#include "runtime/engine/proposer.hpp"
#include "runtime/engine/sequence.hpp"

namespace troupe {

scheduler::scheduler(const engine_config& cfg, sequence_table& seqs, kv_cache_manager& kv, proposer* prop)
    : cfg_(cfg), seqs_(seqs), kv_(kv), prop_(prop) {
  if (prop_) chooser_.set_catch_up_per_token(prop_->catch_up_rows_per_token());
}

void scheduler::add_waiting(uint64_t seq) {
  get(seq).enqueued_step = step_no_;
  waiting_.push_back(seq);
}

void scheduler::add_running(uint64_t seq) { insert_running(seq); }

void scheduler::remove(uint64_t seq) {
  if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) running_.erase(it);
  if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) waiting_.erase(it);
}

void scheduler::observe(const step_stats& st, double seconds) {
  if (seconds <= 0) return;
  const double a = 0.2;
  auto ema = [a](double& v, double x) { v = v == 0 ? x : (1 - a) * v + a * x; };
  if (st.n_prefill_tokens == 0 && st.n_decode_seqs > 0) chooser_.observe_step(st.n_scheduled_tokens, seconds, st.n_draft_tokens);
  if (st.n_prefill_tokens == 0 && st.n_decode_seqs > 0) {
    ema(decode_step_s_, seconds);
    ema(decode_row_s_, seconds / st.n_decode_seqs);
  } else if (st.n_prefill_tokens > 0 && st.n_decode_seqs > 0 && decode_step_s_ > 0) {
    const double per = std::max(0.0, seconds - decode_step_s_) / st.n_prefill_tokens;
    ema(prefill_token_s_, per);
  } else if (st.n_prefill_tokens > 0 && st.n_decode_seqs == 0 && prefill_token_s_ == 0) {
    prefill_token_s_ = seconds / st.n_prefill_tokens;  // an upper bound until fused steps are seen
  }
}

// Prefill tokens that may ride along with decodes in one hybrid step. Before any fused step is
// measured a prompt token is taken to cost what a decoding sequence does (true where the
// forward is compute-bound, cautious where it is memory-bound); the cap then follows the
// measurements, growing at most twofold per step so that a few noisy cheap steps cannot let one
// huge chunk through. It may be smaller than a KV block: on a compute-bound machine a 16-token
// chunk beside 8 decodes already triples the step.
int32_t scheduler::hybrid_cap() {
  if (cfg_.prefill != prefill_mode::hybrid || cfg_.hybrid_step_time_factor <= 0 || !cfg_.enable_chunked_prefill)
    return INT32_MAX;  // (without chunking, a prompt must go in whole)
  if (decode_step_s_ <= 0) return kv_.block_size();  // nothing measured yet
  const double per = prefill_token_s_ > 0 ? prefill_token_s_ : decode_row_s_;
  const double extra = (cfg_.hybrid_step_time_factor - 1.0) * decode_step_s_;
  double cap = per > 0 ? extra / per : 1e9;
  if (last_cap_ > 0) cap = std::min(cap, 2.0 * last_cap_);
  last_cap_ = static_cast<int32_t>(std::clamp(cap, 1.0, 1e9));
  return last_cap_;
}

void scheduler::insert_running(uint64_t seq) {
  const sequence& s = get(seq);
  auto at = std::find_if(running_.begin(), running_.end(), [&](uint64_t o) {
    const sequence& x = get(o);
    return std::tie(x.priority, x.seq) > std::tie(s.priority, s.seq);
  });
  running_.insert(at, seq);
}

// Frees a running sequence's blocks and sends it back to wait; it will recompute.
void scheduler::preempt(uint64_t seq) {
  sequence& s = get(seq);
  kv_.release(seq);
  s.n_computed = 0;
  s.enqueued_step = step_no_;
  running_.erase(std::find(running_.begin(), running_.end(), seq));
  waiting_.push_back(seq);
}

// Waiting order: priority improved by one level per aging_steps waited, then arrival.
size_t scheduler::best_waiting() const {
  size_t best = 0;
  double best_key = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < waiting_.size(); ++i) {
    const sequence& s = get(waiting_[i]);
    const double waited = static_cast<double>(step_no_ - s.enqueued_step) / std::max(1, cfg_.aging_steps);
    const double key = static_cast<double>(s.priority) - std::floor(waited);
    if (key < best_key || (key == best_key && s.seq < get(waiting_[best]).seq)) {
      best_key = key;
      best = i;
    }
  }
  return best;
}

void scheduler::observe_verify(sequence& s, const draft& d, int32_t accepted, std::span<const int32_t> accepted_nodes) {
  const auto k = static_cast<int32_t>(d.tokens.size());
  if (!d.is_tree() && !s.acceptance.tree) {
    chooser_.observe_verify(s.acceptance, k, accepted);
    return;
  }
  // A tree (or a tree-mode draft that came out a chain): its depth and the accepted path's
  // length; the spine's length and how much of it the path followed.
  const std::vector<int32_t> spine = draft_spine_nodes(d);
  int32_t on_spine = 0;
  if (!d.is_tree()) on_spine = accepted;
  else
    while (on_spine < static_cast<int32_t>(std::min(spine.size(), accepted_nodes.size())) &&
           accepted_nodes[static_cast<size_t>(on_spine)] == spine[static_cast<size_t>(on_spine)])
      ++on_spine;
  chooser_.observe_tree_verify(s.acceptance, draft_depth(d), accepted, static_cast<int32_t>(spine.size()), on_spine);
}

bool scheduler::adaptive_trees() const { return cfg_.adaptive_draft_len && cfg_.spec_tree_width > 1; }

std::vector<int32_t> scheduler::tree_depths(std::span<const uint64_t> ids, std::span<const int32_t> caps) {
  std::vector<double> alphas, tree_alphas;
  for (uint64_t id : ids) {
    alphas.push_back(chooser_.alpha(get(id).acceptance));
    tree_alphas.push_back(chooser_.alpha_tree(get(id).acceptance));
  }
  const std::vector<draft_shape> shapes = chooser_.choose_tree(alphas, tree_alphas, caps, cfg_.spec_tree_width);
  std::vector<int32_t> k;
  for (size_t i = 0; i < ids.size(); ++i) {
    get(ids[i]).acceptance.tree = shapes[i].tree;
    k.push_back(shapes[i].depth);
  }
  return k;
}

int32_t scheduler::draft_room(const sequence& s, int32_t budget, int32_t ceiling) const {
  if (!prop_ || ceiling <= 0 || s.pool != pooling::none) return 0;
  // Never past max_tokens or the context: every accepted draft plus the token after it must fit.
  const int32_t left = std::min(s.params.max_tokens - s.completion(), cfg_.max_seq_len - s.size()) - 1;
  return std::max(0, std::min({ceiling, left, budget - 1}));
}

int32_t scheduler::tree_nodes(const sequence& s, int32_t budget) const {
  // Every node's slot must fit the context; a chain is bounded by draft_room alone.
  if (cfg_.spec_tree_width <= 1) return INT32_MAX;
  return std::max(0, std::min({budget - 1, cfg_.max_seq_len - s.size(), kMaxTreeNodes - 1}));
}

std::unordered_map<uint64_t, int32_t> scheduler::draft_lengths(bool allow_decode) {
  std::unordered_map<uint64_t, int32_t> out;
  if (!prop_ || cfg_.max_draft_len <= 0 || !allow_decode) return out;
  std::vector<uint64_t> ids;
  std::vector<double> alphas;
  std::vector<int32_t> caps, owed;
  for (uint64_t id : running_) {
    const sequence& s = get(id);
    if (!s.decoding()) continue;
    ids.push_back(id);
    alphas.push_back(chooser_.alpha(s.acceptance));
    caps.push_back(draft_room(s, INT32_MAX, cfg_.max_draft_len));
    if (cfg_.adaptive_draft_len && chooser_.wants_owed()) owed.push_back(prop_->catch_up_rows(s));
  }
  const std::vector<int32_t> k = adaptive_trees()         ? tree_depths(ids, caps)
                                 : cfg_.adaptive_draft_len ? chooser_.choose(alphas, caps, owed)
                                                           : caps;
  for (size_t i = 0; i < ids.size(); ++i) out[ids[i]] = k[i];
  return out;
}

// A sequence whose prefill returns a logit row per token computes at most this many a step,
// so that a long prompt's rows ([n, n_vocab] floats) stay a bounded buffer.
int32_t scheduler::row_cap(const sequence& s) const {
  constexpr int32_t max_prompt_logit_rows = 256;
  return s.wants_prompt_rows() && s.n_computed < s.n_prompt ? max_prompt_logit_rows : INT32_MAX;
}

step_plan scheduler::schedule() {
  ++step_no_;
  step_plan out;
  int32_t budget = cfg_.max_num_tokens;
  std::unordered_set<uint64_t> scheduled;
  struct work {
    uint64_t seq;
    int32_t n;
    seq_phase phase;
    draft drafted;
  };
  std::vector<work> plan;

  // Which kind of work this step may hold: everything (hybrid), or, in chunked mode, prefill or
  // decode, alternating while both are pending.
  bool allow_prefill = true, allow_decode = true;
  if (cfg_.prefill == prefill_mode::chunked) {
    bool decode_pending = false, prefill_pending = !waiting_.empty();
    for (uint64_t id : running_) (get(id).decoding() ? decode_pending : prefill_pending) = true;
    const bool prefill = prefill_pending && (!decode_pending || !last_was_prefill_);
    allow_prefill = prefill;
    allow_decode = !prefill;
    last_was_prefill_ = prefill;
  }

  // In hybrid mode, prefill tokens beside running decodes are capped (see hybrid_cap).
  bool decoding = false;
  for (uint64_t id : running_) decoding |= get(id).decoding();
  int32_t prefill_budget = decoding ? hybrid_cap() : INT32_MAX;
  if (decoding && prefill_budget != INT32_MAX) out.stats.hybrid_chunk_cap = prefill_budget;

  // Drafts for every decoding sequence at once (a model drafter runs one forward per draft
  // position for all of them); trimmed below to the budget left at each one's turn.
  std::unordered_map<uint64_t, draft> drafts;
  {
    const std::unordered_map<uint64_t, int32_t> lengths = draft_lengths(allow_decode);
    std::vector<const sequence*> ask;
    std::vector<int32_t> rooms;
    for (uint64_t id : running_)
      if (const auto len = lengths.find(id); len != lengths.end())
        if (const int32_t room = draft_room(get(id), budget, len->second); room > 0) {
          ask.push_back(&get(id));
          rooms.push_back(room);
        }
    if (!ask.empty()) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<draft> got = prop_->propose_batch(ask, rooms);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() -
                             prop_->last_catch_up_seconds();
      int32_t n_drafted = 0;  // draft positions (a tree's levels: a model drafter's forwards)
      for (size_t i = 0; i < ask.size() && i < got.size(); ++i) {
        trim_draft_tree(got[i], rooms[i], tree_nodes(*ask[i], budget));
        if (adaptive_trees() && !ask[i]->acceptance.tree) draft_spine(got[i]);  // a chain chosen
        n_drafted += draft_depth(got[i]);
        if (!got[i].empty()) drafts.emplace(ask[i]->seq, std::move(got[i]));
      }
      if (cfg_.adaptive_draft_len) {
        chooser_.observe_drafter(n_drafted, seconds);
        chooser_.observe_catch_up(prop_->last_catch_up_rows(), prop_->last_catch_up_seconds());
      }
    }
  }

  // 1. Running sequences, in priority order; under block pressure the lowest-priority, latest
  //    one is preempted (possibly the one asking). A decoding sequence may verify drafts; when
  //    their slots do not fit, it decodes plainly before anyone is preempted for it.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    const uint64_t id = running_[i];
    sequence& s = get(id);
    const bool is_decode = s.decoding();
    if ((is_decode && !allow_decode) || (!is_decode && !allow_prefill)) continue;
    const int32_t n = std::min({s.remaining(), budget, is_decode ? INT32_MAX : prefill_budget, row_cap(s)});
    if (n <= 0) continue;
    draft d;
    const auto got = drafts.find(id);
    if (is_decode && got != drafts.end())
      if (const int32_t room = draft_room(s, budget, static_cast<int32_t>(got->second.tokens.size())); room > 0) {
        d = std::move(got->second);
        trim_draft_tree(d, room, tree_nodes(s, budget));
        // A constrained sequence verifies only the drafts its grammar allows (the rows of the
        // rest would be rejected anyway; their probs, indexed by draft position, go unread); a
        // tree's spine only.
        if (s.constraint && d.is_tree()) draft_spine(d);
        if (s.constraint && !d.tokens.empty()) d.tokens.resize(s.constraint->allowed_prefix(d.tokens));
        if (!d.tokens.empty() && !kv_.allocate_slots(id, s.n_computed, n, static_cast<int32_t>(d.tokens.size())))
          d = {};
        if (adaptive_trees() && s.acceptance.tree && !d.empty())
          chooser_.observe_tree_shape(static_cast<int32_t>(d.tokens.size()), draft_depth(d));
      }
    bool self_preempted = false;
    while (d.empty() && !kv_.allocate_slots(id, s.n_computed, n)) {
      const uint64_t victim = running_.back();
      if (scheduled.count(victim)) break;  // cannot happen: victims come after i
      preempt(victim);
      ++out.stats.n_preempted;
      if (victim == id) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    const auto k = static_cast<int32_t>(d.tokens.size());
    const seq_phase phase = !is_decode ? seq_phase::prefill : k > 0 ? seq_phase::verify : seq_phase::decode;
    plan.push_back({id, n + k, phase, std::move(d)});
    scheduled.insert(id);
    budget -= n + k;
    if (!is_decode) prefill_budget -= n;
  }

  // 2. Waiting sequences, if nothing was preempted: best first, while there is room.
  while (allow_prefill && out.stats.n_preempted == 0 && budget > 0 && prefill_budget > 0 && !waiting_.empty() &&
         static_cast<int32_t>(running_.size()) < cfg_.max_batch_size) {
    const size_t wi = best_waiting();
    const uint64_t id = waiting_[wi];
    sequence& s = get(id);
    // The longest cached prefix in whole blocks, leaving at least one token to compute.
    const int32_t cached = s.computes_whole_prompt() ? 0 : kv_.count_cached_prefix(id, s.tokens);
    const int32_t rest = s.size() - cached;
    if (!cfg_.enable_chunked_prefill && rest > std::min(budget, prefill_budget)) break;
    const int32_t n = std::min({rest, budget, prefill_budget, row_cap(s)});
    kv_.pin_prefix(id, s.tokens, cached / kv_.block_size());
    if (!kv_.allocate_slots(id, cached, n)) {
      kv_.release(id);
      break;  // not enough free KV blocks: wait for some to finish
    }
    s.n_computed = cached;
    if (s.cached_tokens < 0) s.cached_tokens = std::min(cached, s.n_prompt);
    waiting_.erase(waiting_.begin() + static_cast<ptrdiff_t>(wi));
    insert_running(id);
    plan.push_back({id, n, s.decoding() && n == 1 ? seq_phase::decode : seq_phase::prefill, {}});
    scheduled.insert(id);
    budget -= n;
    prefill_budget -= n;
  }

  const bool reads_hidden = prop_ && prop_->wants_hidden() && cfg_.max_draft_len > 0;
  if (reads_hidden) out.batch.aux_layers = prop_->aux_hidden_layers();
  std::vector<const sequence*> head_seqs;  // eagle3_one_model: what the head reads, by batch seq
  for (work& w : plan) {
    sequence& s = get(w.seq);
    scheduled_seq e;
    e.seq = w.seq;
    e.phase = w.phase;
    e.n_past = s.n_computed;
    e.n_new = w.n;
    const auto k = static_cast<int32_t>(w.drafted.tokens.size());
    const bool last = s.n_computed + (w.n - k) == s.size();
    e.n_logits = last ? 1 + k : 0;
    if (s.pool != pooling::none) {
      e.n_logits = 0;  // never sampled: hidden rows instead
      e.n_hidden = s.pool == pooling::mean ? w.n : last ? 1 : 0;
    } else if (s.wants_prompt_rows() && s.n_computed < s.n_prompt) {
      e.n_logits = w.n;  // every row of the chunk (the last one also samples, when it ends the prompt)
    }
    if (s.pool == pooling::none && reads_hidden)
      e.n_hidden = w.n;  // the drafter reads the target's hidden state at every position
    head_seqs.push_back(s.pool == pooling::none && reads_hidden ? &s : nullptr);
    const auto n_real = static_cast<size_t>(w.n - k);
    std::vector<token_id> toks(s.tokens.begin() + s.n_computed, s.tokens.begin() + s.n_computed + static_cast<ptrdiff_t>(n_real));
    toks.insert(toks.end(), w.drafted.tokens.begin(), w.drafted.tokens.end());
    out.batch.add(s.n_computed, toks, kv_.blocks(w.seq), e.n_logits, e.n_hidden);
    if (w.drafted.is_tree()) {  // rows: the last real token (the root), then the nodes
      std::vector<int32_t> parents(static_cast<size_t>(w.n), -1);
      for (int32_t j = 0; j < k; ++j) parents[n_real + static_cast<size_t>(j)] =
          static_cast<int32_t>(n_real) + w.drafted.parents[static_cast<size_t>(j)];
      for (size_t j = 1; j < n_real; ++j) parents[j] = static_cast<int32_t>(j) - 1;
      out.batch.set_tree(parents);
    }
    const auto added = kv_.last_allocated(w.seq);
    e.new_blocks.assign(added.begin(), added.end());
    e.drafted = std::move(w.drafted);
    out.stats.n_scheduled_tokens += w.n;
    out.stats.n_draft_tokens += k;
    if (w.n - k == 1 && s.n_computed >= s.n_prompt) ++out.stats.n_decode_seqs;
    else out.stats.n_prefill_tokens += w.n;
    out.seqs.push_back(std::move(e));
  }
  // eagle3_one_model: the head runs inside this batch's forward, over the rows it plans now.
  if (reads_hidden && !plan.empty())
    if (std::shared_ptr<fused_head> head = prop_->fused()) {
      prop_->plan_fused(out.batch, head_seqs);
      out.batch.head = std::move(head);
    }
  out.stats.n_running = static_cast<int32_t>(running_.size());
  out.stats.n_waiting = static_cast<int32_t>(waiting_.size());
  out.stats.kv_blocks_total = kv_.n_blocks();
  out.stats.kv_blocks_used = kv_.n_pinned();
  return out;
}

}  // namespace troupe
