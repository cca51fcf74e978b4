#include "runtime/engine/engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <unordered_map>

#include <fmt/format.h>

#include "runtime/block_hash.hpp"
#include "runtime/engine/draft_tree.hpp"
#include "runtime/engine/output_processor.hpp"
#include "runtime/engine/proposer.hpp"
#include "runtime/engine/scheduler.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/model_config.hpp"
#include "runtime/text/tokenizer.hpp"

namespace troupe {

struct engine::impl {
  engine_config cfg;
  engine_model_info model;
  const tokenizer* tok = nullptr;
  sequence_table seqs;
  std::unordered_map<std::string, uint64_t> by_id;
  std::unordered_map<uint64_t, int32_t> importing;  // seq -> tokens whose KV is being written
  uint64_t next_seq = 0;
  kv_cache_manager kv;
  std::unique_ptr<proposer> prop;
  scheduler sched;
  output_processor out;
  // Tree verifications: the accepted path's rows were written at the nodes' slots and must sit
  // where a chain's would (slot n_past + 1 + depth). pending: seq -> (src, dst) slot pairs of
  // the sequence, resolved into the next forward's kv_moves (forward_batch), which the executor
  // applies before anything else; until that forward ran the sequence keeps the blocks holding
  // the sources (moving: truncated in the complete() after it), and the moved rows enter the
  // prefix cache only then.
  std::unordered_map<uint64_t, std::vector<int32_t>> pending_moves;
  std::vector<uint64_t> moving;

  impl(const engine_config& c, const engine_model_info& m, const tokenizer* t, std::unique_ptr<proposer> p)
      : cfg(c), model(m), tok(t),
        kv(m.kv_n_blocks, m.kv_block_size, c.prefix_cache, c.prefix_cache_max_num_recycling_seqs,
           model_salt(c.model_identity)),
        prop(std::move(p)), sched(cfg, seqs, kv, prop.get()),
        out(m.n_vocab, m.n_tokens, m.eos_ids, cfg.max_seq_len) {}

  sequence& get(uint64_t s) { return *seqs.at(s); }

  usage usage_of(const sequence& s) const {
    return {s.n_prompt, s.completion(), std::max(0, s.cached_tokens)};
  }

  // Drops a sequence: its blocks (its cached chain retired), its place in the queues, its id.
  void drop(sequence& s) {
    if (prop) prop->forget(s);
    kv.free(s.seq);
    sched.remove(s.seq);
    importing.erase(s.seq);
    by_id.erase(s.id);
    seqs.erase(s.seq);  // s is gone after this
  }

  // What add_request and begin_import refuse.
  status check(const request& r, int64_t n_generated) const {
    const auto P = static_cast<int64_t>(r.prompt.size());
    if (P == 0) return make_error("the prompt is empty");
    if (by_id.count(r.id)) return make_error(fmt::format("request id {} is already in use", r.id));
    for (token_id t : r.prompt)
      if (t < 0 || t >= model.n_vocab)
        return make_error(fmt::format("prompt token {} is outside the vocabulary of {}", t, model.n_vocab));
    if (r.pool != pooling::none) return check_embedding(r, n_generated);
    TROUPE_CHECK(r.params.validate(model.n_vocab));
    if (!r.params.stop.empty() && !tok) return make_error("stop strings need a tokenizer");
    const int64_t L = cfg.max_seq_len, M = r.params.max_tokens;
    if (M > 0 ? P >= L : P > L)
      return make_error(fmt::format("This model's maximum context length is {} tokens; the prompt has {} "
                                    "tokens, which leaves no room for a completion",
                                    L, P));
    if (P + M > L)
      return make_error(fmt::format("This model's maximum context length is {} tokens. However, you requested "
                                    "{} tokens ({} in the prompt, {} for the completion)",
                                    L, P + M, P, M));
    const int64_t blocks = (P + M + model.kv_block_size - 1) / model.kv_block_size;
    if (blocks > kv.n_blocks())
      return make_error(fmt::format("the request needs {} KV blocks ({} tokens) but the whole cache holds {}",
                                    blocks, P + M, kv.n_blocks()));
    if (!cfg.enable_chunked_prefill && P > cfg.max_num_tokens && n_generated == 0)
      return make_error(fmt::format("the prompt has {} tokens, more than max_num_tokens ({}), and chunked "
                                    "prefill is off",
                                    P, cfg.max_num_tokens));
    if (n_generated > 0 && n_generated >= M)
      return make_error(fmt::format("{} tokens were generated already, and max_tokens is {}", n_generated, M));
    return {};
  }

  // An embedding request reads its prompt and no more: it must fit the context and the cache.
  status check_embedding(const request& r, int64_t n_generated) const {
    const auto P = static_cast<int64_t>(r.prompt.size());
    if (n_generated > 0) return make_error("an embedding request generates nothing to import");
    if (P > cfg.max_seq_len)
      return make_error(fmt::format("This model's maximum context length is {} tokens; the input has {} tokens",
                                    cfg.max_seq_len, P));
    const int64_t blocks = (P + model.kv_block_size - 1) / model.kv_block_size;
    if (blocks > kv.n_blocks())
      return make_error(fmt::format("the input needs {} KV blocks ({} tokens) but the whole cache holds {}", blocks,
                                    P, kv.n_blocks()));
    if (!cfg.enable_chunked_prefill && P > cfg.max_num_tokens)
      return make_error(fmt::format("the input has {} tokens, more than max_num_tokens ({}), and chunked "
                                    "prefill is off",
                                    P, cfg.max_num_tokens));
    return {};
  }

  sequence& make_sequence(request& r) {
    const uint64_t seq = next_seq++;
    auto s = std::make_unique<sequence>(seq, r.id, r.priority, std::move(r.prompt), r.params, tok);
    s->constraint = std::move(r.constraint);
    s->pool = r.pool;
    sequence& ref = *s;
    by_id[ref.id] = seq;
    seqs.emplace(seq, std::move(s));
    return ref;
  }

  request_output output_of(sequence& s, seq_result&& r) {
    request_output ro;
    ro.id = s.id;
    ro.tokens = std::move(r.tokens);
    ro.logprobs = std::move(r.logprobs);
    ro.text = std::move(r.text);
    ro.finished = r.finished;
    ro.stop_string = std::move(r.stop_string);
    ro.n_drafted = r.n_drafted;
    ro.n_draft_accepted = r.n_draft_accepted;
    if (ro.finished) ro.text += output_processor::flush(s);
    if ((!ro.tokens.empty() || ro.finished) && s.wants_prompt_rows()) {
      ro.prompt_logprobs = std::move(s.prompt_logprobs);
      s.prompt_logprobs_sent = true;
    }
    ro.use = usage_of(s);
    return ro;
  }

  // An embedding request's hidden rows from one step ([n_hidden, H]): summed (mean) or kept
  // (last). When its prompt is complete, the output with the pooled, L2-normalised vector.
  // rows: [n_hidden, W], the final hidden state in each row's first H.
  std::optional<request_output> pool_rows(sequence& s, const scheduled_seq& p, std::span<const float> rows, size_t H,
                                          size_t W) {
    if (p.n_hidden > 0) {
      if (p.n_past == 0 || s.pool == pooling::last || s.pooled.size() != H) s.pooled.assign(H, 0.0);
      for (int32_t i = 0; i < p.n_hidden; ++i)
        for (size_t j = 0; j < H; ++j) s.pooled[j] += rows[static_cast<size_t>(i) * W + j];
    }
    if (s.n_computed < s.size()) return std::nullopt;
    request_output ro;
    ro.id = s.id;
    ro.finished = finish_reason::stop;
    ro.use = usage_of(s);
    double norm = 0;
    for (double v : s.pooled) norm += v * v;  // the mean's 1/n cancels in the normalisation
    norm = std::sqrt(norm);
    ro.embedding.resize(s.pooled.size());
    for (size_t j = 0; j < s.pooled.size(); ++j)
      ro.embedding[j] = static_cast<float>(norm > 0 ? s.pooled[j] / norm : 0.0);
    return ro;
  }

  // Logprobs of the prompt tokens whose predicting rows a prefill chunk returned (every row of
  // the chunk: row i is position n_past + i, which predicts token n_past + i + 1).
  void prompt_rows(sequence& s, const scheduled_seq& p, std::span<const float> rows) {
    const auto V = static_cast<size_t>(model.n_vocab);
    if (s.prompt_logprobs.empty()) s.prompt_logprobs.resize(static_cast<size_t>(std::max(0, s.n_prompt - 1)));
    for (int32_t i = 0; i < p.n_logits; ++i) {
      const int32_t pos = p.n_past + i;
      if (pos + 1 >= s.n_prompt) break;
      s.prompt_logprobs[static_cast<size_t>(pos)] =
          logprobs_of(rows.subspan(static_cast<size_t>(i) * V, V), s.tokens[static_cast<size_t>(pos + 1)],
                      s.params.prompt_logprobs);
    }
  }
};

engine::engine(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
engine::~engine() = default;

result<std::unique_ptr<engine>> engine::create(const engine_config& c, const engine_model_info& m,
                                               const tokenizer* tok, std::unique_ptr<proposer> prop) {
  if (c.max_batch_size < 1) return make_error("max_batch_size must be at least 1");
  if (c.max_num_tokens < 1) return make_error("max_num_tokens must be at least 1");
  if (c.max_num_tokens < c.max_batch_size && c.enable_chunked_prefill)
    return make_error(fmt::format("max_num_tokens ({}) must be at least max_batch_size ({}) so that "
                                  "every running sequence can decode in one step",
                                  c.max_num_tokens, c.max_batch_size));
  if (c.max_draft_len < 0) return make_error("max_draft_len must not be negative");
  if (m.kv_block_size < 1 || m.kv_n_blocks < 1) return make_error("the KV cache has no blocks");
  if (m.n_vocab < 1) return make_error("the model has no vocabulary");
  engine_config cfg = c;
  if (cfg.max_seq_len <= 0 || (m.max_position > 0 && cfg.max_seq_len > m.max_position))
    cfg.max_seq_len = static_cast<int32_t>(std::min<int64_t>(m.max_position > 0 ? m.max_position : 1 << 30, INT32_MAX));
  if (!prop) cfg.max_draft_len = 0;
  const std::string tree_field = "llm_config.speculative_config.spec_tree_width";
  if (c.spec_tree_width < 1 || c.spec_tree_width > kMaxSpecTreeWidth)
    return make_error(fmt::format("{}: must be between 1 and {}, not {}", tree_field, kMaxSpecTreeWidth, c.spec_tree_width));
  if (cfg.spec_tree_width > 1 && prop) {
    if (!prop->drafts_trees())
      return make_error(fmt::format("{}: {}: decoding_type {} drafts chains only (NGram, DraftTarget, MTP and "
                                    "Eagle draft trees); set spec_tree_width to 1",
                                    tree_field, c.spec_tree_width, prop->name()));
    prop->set_tree_width(cfg.spec_tree_width);
  }
  if (!prop) cfg.spec_tree_width = 1;
  engine_model_info model = m;
  if (model.n_tokens <= 0 || model.n_tokens > model.n_vocab) model.n_tokens = model.n_vocab;
  return std::unique_ptr<engine>(new engine(std::make_unique<impl>(cfg, model, tok, std::move(prop))));
}

status engine::add_request(request r) {
  impl& e = *impl_;
  TROUPE_CHECK(e.check(r, 0));
  sequence& s = e.make_sequence(r);
  e.sched.add_waiting(s.seq);
  return {};
}

bool engine::abort(const std::string& id) {
  impl& e = *impl_;
  auto it = e.by_id.find(id);
  if (it == e.by_id.end()) return false;
  e.drop(e.get(it->second));
  return true;
}

bool engine::has_work() const { return impl_->sched.has_work(); }
size_t engine::n_running() const { return impl_->sched.n_running(); }
size_t engine::n_waiting() const { return impl_->sched.n_waiting(); }
std::vector<kv_event> engine::drain_kv_events() { return impl_->kv.drain_events(); }
std::vector<uint64_t> engine::cached_block_hashes() const { return impl_->kv.cached_hashes(); }
int32_t engine::kv_blocks_free() const { return impl_->kv.n_available(); }
int32_t engine::kv_blocks_total() const { return impl_->kv.n_blocks(); }
uint64_t engine::block_hash_salt() const { return impl_->kv.salt(); }
const engine_config& engine::config() const { return impl_->cfg; }
const char* engine::decoding_type() const { return impl_->prop && impl_->cfg.max_draft_len > 0 ? impl_->prop->name() : ""; }

step_plan engine::schedule() {
  impl& e = *impl_;
  step_plan p = e.sched.schedule();
  if (p.empty() || e.pending_moves.empty()) return p;
  const int32_t bs = e.kv.block_size();
  for (const auto& [seq, moves] : e.pending_moves) {
    const std::span<const int32_t> blocks = e.kv.blocks(seq);
    if (blocks.empty()) continue;  // preempted (it recomputes) or dropped
    for (int32_t slot : moves)
      p.batch.kv_moves.push_back(blocks[static_cast<size_t>(slot / bs)] * bs + slot % bs);
    e.moving.push_back(seq);
  }
  e.pending_moves.clear();
  return p;
}

step_output engine::complete(step_plan&& plan, const std::vector<float>& logits, double forward_seconds,
                             std::span<const float> hidden) {
  impl& e = *impl_;
  e.sched.observe(plan.stats, forward_seconds);
  const std::vector<uint64_t> moved = std::move(e.moving);  // their moves ran in this forward
  e.moving.clear();
  step_output out;
  out.stats = plan.stats;
  const auto V = static_cast<size_t>(e.model.n_vocab);
  const int32_t n_hidden_rows = plan.batch.n_hidden_rows();
  // A hidden row: the final state (H), then the aux layers' residuals (H each).
  const size_t W = n_hidden_rows > 0 ? hidden.size() / static_cast<size_t>(n_hidden_rows) : 0;
  const size_t H = W / static_cast<size_t>(hidden_row_width(plan.batch, 1));
  size_t row = 0, hrow = 0;
  const bool observe = e.prop && e.prop->wants_hidden() && e.cfg.max_draft_len > 0;
  std::vector<kept_rows> kept;
  std::deque<std::vector<float>> path_rows;  // kept hidden rows of trees whose path left the spine
  for (const scheduled_seq& p : plan.seqs) {
    std::span<const float> rows(logits.data() + row * V, static_cast<size_t>(p.n_logits) * V);
    row += static_cast<size_t>(p.n_logits);
    const std::span<const float> hrows = hidden.subspan(hrow * W, static_cast<size_t>(p.n_hidden) * W);
    hrow += static_cast<size_t>(p.n_hidden);
    auto it = e.seqs.find(p.seq);
    if (it == e.seqs.end()) continue;  // aborted while its forward ran
    sequence& s = *it->second;
    if (s.pool != pooling::none) {
      s.n_computed += p.n_new;
      e.kv.commit(s.seq, s.tokens, s.n_computed);
      if (auto ro = e.pool_rows(s, p, hrows, H, W)) {
        e.drop(s);
        out.outputs.push_back(std::move(*ro));
      }
      continue;
    }
    scheduled_seq last_row;  // a prompt-logprobs chunk: only its last row samples
    const scheduled_seq* sp = &p;
    if (s.wants_prompt_rows() && p.n_logits > 0 && p.n_past < s.n_prompt) {
      e.prompt_rows(s, p, rows);
      if (p.n_past + p.n_new < s.size() || s.params.max_tokens == 0) {
        s.n_computed += p.n_new;
        e.kv.commit(s.seq, s.tokens, s.n_computed);
        if (s.n_computed == s.size()) {  // max_tokens 0: the prompt scored alone, nothing sampled
          request_output ro;
          ro.id = s.id;
          ro.finished = finish_reason::length;
          ro.prompt_logprobs = std::move(s.prompt_logprobs);
          s.prompt_logprobs_sent = true;
          ro.use = e.usage_of(s);
          e.drop(s);
          out.outputs.push_back(std::move(ro));
        } else if (observe && p.n_hidden == p.n_new) {
          kept.push_back({&s, p.n_past, s.n_computed, hrows});
        }
        continue;
      }
      rows = rows.subspan(static_cast<size_t>(p.n_logits - 1) * V, V);
      last_row.seq = p.seq;
      last_row.phase = p.phase;
      last_row.n_past = p.n_past;
      last_row.n_new = p.n_new;
      last_row.n_logits = 1;
      sp = &last_row;
    }
    if (p.n_logits == 0) {  // a prefill chunk short of the prompt's end
      s.n_computed += p.n_new;
      e.kv.commit(s.seq, s.tokens, s.n_computed);
      if (observe && p.n_hidden == p.n_new) kept.push_back({&s, p.n_past, s.n_computed, hrows});
      continue;
    }
    const int32_t n_real = p.n_new - static_cast<int32_t>(p.drafted.tokens.size());
    seq_result r = e.out.process(s, *sp, rows);
    if (p.phase == seq_phase::verify) e.sched.observe_verify(s, p.drafted, r.n_draft_accepted, r.accepted_nodes);
    // Computed and kept: the real tokens, and the drafts the target accepted.
    s.n_computed += n_real + r.n_draft_accepted;
    std::vector<int32_t> moves;  // a tree's accepted nodes off the spine: (src, dst) slots
    for (size_t d = 0; d < r.accepted_nodes.size(); ++d)
      if (r.accepted_nodes[d] != static_cast<int32_t>(d))
        for (int32_t slot : {p.n_past + n_real + r.accepted_nodes[d], p.n_past + n_real + static_cast<int32_t>(d)})
          moves.push_back(slot);
    e.kv.commit(s.seq, s.tokens, moves.empty() ? s.n_computed : moves[1]);  // moved rows: once moved
    if (!moves.empty() && !r.finished) e.pending_moves[s.seq] = std::move(moves);
    else if (p.phase == seq_phase::verify) e.kv.truncate(s.seq, s.size());
    std::span<const float> kept_hidden = hrows;
    if (observe && !moves.empty() && p.n_hidden == p.n_new) {
      // A tree's accepted path left the spine: the drafter reads the kept positions' rows in
      // order (the real token's, then each accepted node's), not the tree's first rows.
      std::vector<float>& rows_of_path = path_rows.emplace_back();
      rows_of_path.assign(hrows.begin(), hrows.begin() + static_cast<ptrdiff_t>(n_real * W));
      for (int32_t node : r.accepted_nodes) {
        const auto at = hrows.begin() + static_cast<ptrdiff_t>((n_real + node) * static_cast<int64_t>(W));
        rows_of_path.insert(rows_of_path.end(), at, at + static_cast<ptrdiff_t>(W));
      }
      kept_hidden = rows_of_path;
    }
    request_output ro = e.output_of(s, std::move(r));
    if (ro.finished) e.drop(s);
    else if (observe && p.n_hidden == p.n_new) kept.push_back({&s, p.n_past, s.n_computed, kept_hidden});
    out.outputs.push_back(std::move(ro));
  }
  if (!kept.empty()) e.prop->observe(kept, W);
  for (uint64_t seq : moved)  // the blocks that held their moves' sources may go now
    if (auto it = e.seqs.find(seq); it != e.seqs.end() && !e.pending_moves.count(seq) && e.kv.holds(seq) &&
                                    !e.importing.count(seq))
      e.kv.truncate(seq, std::max(it->second->size(), it->second->n_computed));
  out.stats.n_running = static_cast<int32_t>(e.sched.n_running());
  out.stats.n_waiting = static_cast<int32_t>(e.sched.n_waiting());
  out.stats.kv_blocks_used = e.kv.n_pinned();
  return out;
}

result<step_output> engine::step(executor& ex) {
  step_plan p = schedule();
  std::vector<float> logits, hidden;
  double seconds = -1;
  if (!p.empty()) {
    const auto t0 = std::chrono::steady_clock::now();
    TROUPE_CHECK(ex.forward_hidden(p.batch, logits, hidden));
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return complete(std::move(p), logits, seconds, hidden);
}

result<request_kv> engine::export_kv(const std::string& id) {
  impl& e = *impl_;
  auto it = e.by_id.find(id);
  if (it == e.by_id.end()) return make_error(fmt::format("no request {}", id));
  sequence& s = e.get(it->second);
  if (e.importing.count(s.seq)) return make_error(fmt::format("request {} is still being imported", id));
  // A tree verification's accepted path is copied into place by the next forward: until then
  // some of the named slots hold rejected branches.
  if (e.pending_moves.count(s.seq))
    return make_error(fmt::format("request {} has accepted draft tokens not yet moved into place", id));
  request_kv out;
  out.prompt.assign(s.tokens.begin(), s.tokens.begin() + s.n_prompt);
  out.generated.assign(s.tokens.begin() + s.n_prompt, s.tokens.end());
  out.n_computed = s.n_computed;
  out.blocks = e.kv.export_blocks(s.seq, s.tokens, s.n_computed);
  return out;
}

result<kv_import> engine::begin_import(request r, std::span<const token_id> generated, int32_t n_computed) {
  impl& e = *impl_;
  TROUPE_CHECK(e.check(r, static_cast<int64_t>(generated.size())));
  for (token_id t : generated)
    if (t < 0 || t >= e.model.n_vocab)
      return make_error(fmt::format("generated token {} is outside the vocabulary of {}", t, e.model.n_vocab));
  const auto total = static_cast<int32_t>(r.prompt.size() + generated.size());
  if (n_computed < 1 || n_computed >= total)
    return make_error(fmt::format("{} computed tokens of {}: at least one, and one left to compute", n_computed, total));
  sequence& s = e.make_sequence(r);
  // Replay what the other engine emitted, so penalties, detokenizing and stop strings go on
  // from where it stopped; its text was sent from there.
  for (token_id t : generated) {
    s.sampler.accept(t);
    s.tokens.push_back(t);
    if (s.detok) s.stops.push(s.detok->push(t));
  }
  // A seeded sequence's generator goes on where the other engine's stopped: one draw per token
  // it sampled there (sampling draws once per token; greedy draws nothing).
  if (!s.sampler.greedy())
    for (size_t i = 0; i < generated.size(); ++i) s.sampler.uniform();
  auto imp = e.kv.import_blocks(s.seq, s.tokens, n_computed);
  if (!imp) {
    const auto need = kv_cache_manager::blocks_for(n_computed, e.kv.block_size());
    e.drop(s);
    return make_error(fmt::format("not enough free KV blocks to import {} tokens ({} blocks)", n_computed, need));
  }
  s.cached_tokens = std::min(imp->first_block * e.kv.block_size(), s.n_prompt);
  e.importing[s.seq] = n_computed;
  return *imp;
}

status engine::end_import(const std::string& id) {
  impl& e = *impl_;
  auto it = e.by_id.find(id);
  if (it == e.by_id.end()) return make_error(fmt::format("no request {}", id));
  auto imp = e.importing.find(it->second);
  if (imp == e.importing.end()) return make_error(fmt::format("request {} is not being imported", id));
  sequence& s = e.get(it->second);
  s.n_computed = imp->second;
  e.importing.erase(imp);
  e.kv.commit(s.seq, s.tokens, s.n_computed);
  e.sched.add_running(s.seq);
  return {};
}

bool engine::hold(const std::string& id) {
  impl& e = *impl_;
  auto it = e.by_id.find(id);
  if (it == e.by_id.end()) return false;
  e.sched.remove(it->second);
  return true;
}

engine_model_info model_info_of(const executor& ex, const tokenizer* tok) {
  engine_model_info m;
  const model_config& c = ex.config();
  m.n_vocab = c.n_vocab;
  m.n_tokens = tok ? std::min<int64_t>(tok->n_vocab(), c.n_vocab) : c.n_vocab;
  m.max_position = c.max_position;
  m.eos_ids = c.eos_ids;
  if (tok)
    for (token_id t : tok->stop_ids())
      if (std::find(m.eos_ids.begin(), m.eos_ids.end(), t) == m.eos_ids.end()) m.eos_ids.push_back(t);
  m.kv_block_size = ex.kv_block_size();
  m.kv_n_blocks = ex.kv_n_blocks();
  return m;
}

}  // namespace troupe
