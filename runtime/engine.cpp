#include "runtime/engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "runtime/block_hash.hpp"
#include "runtime/block_pool.hpp"
#include "runtime/model_config.hpp"
#include "runtime/stop_strings.hpp"
#include "runtime/text/tokenizer.hpp"

namespace troupe {
namespace {

// One request as the engine tracks it.
struct sequence {
  uint64_t seq = 0;  // arrival order
  std::string id;
  int32_t priority = 0;
  uint64_t enqueued_step = 0;
  std::vector<token_id> tokens;  // prompt, then generated
  int32_t n_prompt = 0;
  int32_t n_computed = 0;        // tokens whose keys and values are in the cache
  std::vector<int32_t> blocks;   // block table
  std::vector<block_hash> hashes;  // chained hashes of full blocks of tokens, as far as known
  int32_t n_cached_blocks = 0;     // leading blocks handed to the prefix cache
  int32_t cached_tokens = -1;      // prompt tokens served from cache at first admission
  sequence_sampler sampler;
  std::optional<detokenizer> detok;
  stop_matcher stops;
  sampling_params params;
  std::shared_ptr<token_constraint> constraint;

  sequence(const request& r, const tokenizer* tok)
      : id(r.id), priority(r.priority), tokens(r.prompt), n_prompt(static_cast<int32_t>(r.prompt.size())),
        sampler(r.params, r.prompt), stops(r.params.stop), params(r.params), constraint(r.constraint) {
    if (tok) detok.emplace(*tok, true);
  }
  int32_t remaining() const { return static_cast<int32_t>(tokens.size()) - n_computed; }
  int32_t completion() const { return static_cast<int32_t>(tokens.size()) - n_prompt; }
};

}  // namespace

const char* finish_reason_name(finish_reason r) {
  switch (r) {
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
    case finish_reason::abort: return "abort";
  }
  return "?";
}

struct engine::impl {
  engine_config cfg;
  engine_model_info model;
  const tokenizer* tok = nullptr;
  uint64_t salt = 0;
  block_pool pool;
  std::unordered_set<token_id> eos;
  std::unordered_map<uint64_t, std::unique_ptr<sequence>> seqs;
  std::unordered_map<std::string, uint64_t> by_id;
  std::vector<uint64_t> running;  // ordered by (priority, arrival)
  std::vector<uint64_t> waiting;
  uint64_t next_seq = 0;
  uint64_t step_no = 0;
  bool last_was_prefill = false;
  std::vector<float> row;  // sampling scratch
  // Step-cost model for the hybrid chunk cap: decode-only step time, its cost per decoding
  // sequence, and the extra time per prefill token in a fused step (exponential moving
  // averages of measured forwards).
  double decode_step_s = 0;
  double decode_row_s = 0;
  double prefill_token_s = 0;
  int32_t last_cap = 0;  // the cap of the last fused step (the cap at most doubles per step)

  void observe(const step_stats& st, double seconds) {
    if (seconds <= 0) return;
    const double a = 0.2;
    auto ema = [a](double& v, double x) { v = v == 0 ? x : (1 - a) * v + a * x; };
    if (st.n_prefill_tokens == 0 && st.n_decode_seqs > 0) {
      ema(decode_step_s, seconds);
      ema(decode_row_s, seconds / st.n_decode_seqs);
    } else if (st.n_prefill_tokens > 0 && st.n_decode_seqs > 0 && decode_step_s > 0) {
      const double per = std::max(0.0, seconds - decode_step_s) / st.n_prefill_tokens;
      ema(prefill_token_s, per);
    } else if (st.n_prefill_tokens > 0 && st.n_decode_seqs == 0 && prefill_token_s == 0) {
      prefill_token_s = seconds / st.n_prefill_tokens;  // an upper bound until fused steps are seen
    }
  }

  // Prefill tokens that may ride along with decodes in one hybrid step. Before any fused step
  // is measured a prompt token is taken to cost what a decoding sequence does (true where the
  // forward is compute-bound, cautious where it is memory-bound); the cap then follows the
  // measurements, growing at most twofold per step so that a few noisy cheap steps cannot
  // let one huge chunk through. It may be smaller than a KV block: on a compute-bound machine
  // a 16-token chunk beside 8 decodes already triples the step.
  int32_t hybrid_cap() {
    if (cfg.prefill != prefill_mode::hybrid || cfg.hybrid_step_time_factor <= 0 || !cfg.enable_chunked_prefill)
      return INT32_MAX;  // (without chunking, a prompt must go in whole)
    if (decode_step_s <= 0) return model.kv_block_size;  // nothing measured yet
    const double per = prefill_token_s > 0 ? prefill_token_s : decode_row_s;
    const double extra = (cfg.hybrid_step_time_factor - 1.0) * decode_step_s;
    double cap = per > 0 ? extra / per : 1e9;
    if (last_cap > 0) cap = std::min(cap, 2.0 * last_cap);
    last_cap = static_cast<int32_t>(std::clamp(cap, 1.0, 1e9));
    return last_cap;
  }

  impl(const engine_config& c, const engine_model_info& m, const tokenizer* t)
      : cfg(c), model(m), tok(t), salt(model_salt(c.model_identity)),
        pool(m.kv_n_blocks, m.kv_block_size, c.prefix_cache, c.prefix_cache_max_num_recycling_seqs),
        eos(m.eos_ids.begin(), m.eos_ids.end()) {}

  int32_t bs() const { return model.kv_block_size; }
  sequence& get(uint64_t s) { return *seqs.at(s); }

  void ensure_hashes(sequence& s, size_t n_blocks) {
    while (s.hashes.size() < n_blocks) {
      const size_t i = s.hashes.size();
      const std::span<const token_id> t(s.tokens.data() + i * static_cast<size_t>(bs()), static_cast<size_t>(bs()));
      s.hashes.push_back(hash_block(i ? std::optional<block_hash>(s.hashes[i - 1]) : std::nullopt, t, salt));
    }
  }

  bool grow_blocks(sequence& s, int32_t n_tokens) {
    const int32_t need = (n_tokens + bs() - 1) / bs() - static_cast<int32_t>(s.blocks.size());
    if (need <= 0) return true;
    auto got = pool.allocate(need);
    if (!got) return false;
    s.blocks.insert(s.blocks.end(), got->begin(), got->end());
    return true;
  }

  void free_blocks(sequence& s) {
    pool.release(s.blocks);
    s.blocks.clear();
    s.n_cached_blocks = 0;
  }

  void insert_running(uint64_t id) {
    const sequence& s = get(id);
    auto at = std::find_if(running.begin(), running.end(), [&](uint64_t o) {
      const sequence& x = get(o);
      return std::tie(x.priority, x.seq) > std::tie(s.priority, s.seq);
    });
    running.insert(at, id);
  }

  // Frees a running sequence's blocks and sends it back to wait; it will recompute.
  void preempt(uint64_t id) {
    sequence& s = get(id);
    free_blocks(s);
    s.n_computed = 0;
    s.enqueued_step = step_no;
    running.erase(std::find(running.begin(), running.end(), id));
    waiting.push_back(id);
  }

  // Waiting order: priority improved by one level per aging_steps waited, then arrival.
  size_t best_waiting() const {
    size_t best = 0;
    double best_key = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < waiting.size(); ++i) {
      const sequence& s = *seqs.at(waiting[i]);
      const double waited = static_cast<double>(step_no - s.enqueued_step) / std::max(1, cfg.aging_steps);
      const double key = static_cast<double>(s.priority) - std::floor(waited);
      if (key < best_key || (key == best_key && s.seq < seqs.at(waiting[best])->seq)) {
        best_key = key;
        best = i;
      }
    }
    return best;
  }

  void finish(sequence& s, finish_reason why, request_output& out) {
    out.finished = why;
    if (why != finish_reason::abort && !s.stops.stopped()) {
      std::string tail = s.detok ? s.detok->flush() : std::string();
      auto o = s.stops.push(tail);
      out.text += o.text;
      if (!o.stopped) out.text += s.stops.flush().text;
    }
    out.use = usage_of(s);
    std::vector<block_hash> chain(s.hashes.begin(), s.hashes.begin() + s.n_cached_blocks);
    free_blocks(s);
    pool.retire_sequence(std::move(chain));
    if (auto it = std::find(running.begin(), running.end(), s.seq); it != running.end()) running.erase(it);
    if (auto it = std::find(waiting.begin(), waiting.end(), s.seq); it != waiting.end()) waiting.erase(it);
    by_id.erase(s.id);
    seqs.erase(s.seq);  // s is gone after this
  }

  usage usage_of(const sequence& s) const {
    return {s.n_prompt, s.completion(), std::max(0, s.cached_tokens)};
  }
};

engine::engine(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
engine::~engine() = default;

result<std::unique_ptr<engine>> engine::create(const engine_config& c, const engine_model_info& m,
                                               const tokenizer* tok) {
  if (c.max_batch_size < 1) return make_error("max_batch_size must be at least 1");
  if (c.max_num_tokens < 1) return make_error("max_num_tokens must be at least 1");
  if (c.max_num_tokens < c.max_batch_size && c.enable_chunked_prefill)
    return make_error(fmt::format("max_num_tokens ({}) must be at least max_batch_size ({}) so that "
                                  "every running sequence can decode in one step",
                                  c.max_num_tokens, c.max_batch_size));
  if (m.kv_block_size < 1 || m.kv_n_blocks < 1) return make_error("the KV cache has no blocks");
  if (m.n_vocab < 1) return make_error("the model has no vocabulary");
  engine_config cfg = c;
  if (cfg.max_seq_len <= 0 || (m.max_position > 0 && cfg.max_seq_len > m.max_position))
    cfg.max_seq_len = static_cast<int32_t>(std::min<int64_t>(m.max_position > 0 ? m.max_position : 1 << 30, INT32_MAX));
  engine_model_info model = m;
  if (model.n_tokens <= 0 || model.n_tokens > model.n_vocab) model.n_tokens = model.n_vocab;
  return std::unique_ptr<engine>(new engine(std::make_unique<impl>(cfg, model, tok)));
}

status engine::add_request(request r) {
  impl& e = *impl_;
  const auto P = static_cast<int64_t>(r.prompt.size());
  if (P == 0) return make_error("the prompt is empty");
  if (e.by_id.count(r.id)) return make_error(fmt::format("request id {} is already in use", r.id));
  for (token_id t : r.prompt)
    if (t < 0 || t >= e.model.n_vocab)
      return make_error(fmt::format("prompt token {} is outside the vocabulary of {}", t, e.model.n_vocab));
  TROUPE_CHECK(r.params.validate(e.model.n_vocab));
  if (!r.params.stop.empty() && !e.tok) return make_error("stop strings need a tokenizer");
  const int64_t L = e.cfg.max_seq_len, M = r.params.max_tokens;
  if (P >= L)
    return make_error(fmt::format("This model's maximum context length is {} tokens; the prompt has {} "
                                  "tokens, which leaves no room for a completion",
                                  L, P));
  if (P + M > L)
    return make_error(fmt::format("This model's maximum context length is {} tokens. However, you requested "
                                  "{} tokens ({} in the prompt, {} for the completion)",
                                  L, P + M, P, M));
  const int64_t blocks = (P + M + e.bs() - 1) / e.bs();
  if (blocks > e.pool.n_blocks())
    return make_error(fmt::format("the request needs {} KV blocks ({} tokens) but the whole cache holds {}",
                                  blocks, P + M, e.pool.n_blocks()));
  if (!e.cfg.enable_chunked_prefill && P > e.cfg.max_num_tokens)
    return make_error(fmt::format("the prompt has {} tokens, more than max_num_tokens ({}), and chunked "
                                  "prefill is off",
                                  P, e.cfg.max_num_tokens));
  auto s = std::make_unique<sequence>(r, e.tok);
  s->seq = e.next_seq++;
  s->enqueued_step = e.step_no;
  e.by_id[s->id] = s->seq;
  e.waiting.push_back(s->seq);
  e.seqs.emplace(s->seq, std::move(s));
  return {};
}

bool engine::abort(const std::string& id) {
  impl& e = *impl_;
  auto it = e.by_id.find(id);
  if (it == e.by_id.end()) return false;
  request_output ignored;
  e.finish(e.get(it->second), finish_reason::abort, ignored);
  return true;
}

bool engine::has_work() const { return !impl_->running.empty() || !impl_->waiting.empty(); }
size_t engine::n_running() const { return impl_->running.size(); }
size_t engine::n_waiting() const { return impl_->waiting.size(); }
std::vector<kv_event> engine::drain_kv_events() { return impl_->pool.drain_events(); }
std::vector<uint64_t> engine::cached_block_hashes() const { return impl_->pool.cached_hashes(); }
int32_t engine::kv_blocks_free() const { return impl_->pool.n_available(); }
int32_t engine::kv_blocks_total() const { return impl_->pool.n_blocks(); }
uint64_t engine::block_hash_salt() const { return impl_->salt; }
const engine_config& engine::config() const { return impl_->cfg; }

scheduled_step engine::schedule() {
  impl& e = *impl_;
  ++e.step_no;
  scheduled_step out;
  int32_t budget = e.cfg.max_num_tokens;
  std::unordered_set<uint64_t> scheduled;
  std::vector<std::pair<uint64_t, int32_t>> work;  // (seq, tokens)

  // Which kind of work this step may hold: everything (hybrid), or, in chunked mode,
  // prefill or decode, alternating while both are pending.
  bool allow_prefill = true, allow_decode = true;
  if (e.cfg.prefill == prefill_mode::chunked) {
    bool decode_pending = false, prefill_pending = !e.waiting.empty();
    for (uint64_t id : e.running) (e.get(id).remaining() > 1 ? prefill_pending : decode_pending) = true;
    const bool prefill = prefill_pending && (!decode_pending || !e.last_was_prefill);
    allow_prefill = prefill;
    allow_decode = !prefill;
    e.last_was_prefill = prefill;
  }

  // In hybrid mode, prefill tokens beside running decodes are capped (see hybrid_cap).
  bool decoding = false;
  for (uint64_t id : e.running) decoding |= e.get(id).remaining() == 1;
  int32_t prefill_budget = decoding ? e.hybrid_cap() : INT32_MAX;
  if (decoding && prefill_budget != INT32_MAX) out.stats.hybrid_chunk_cap = prefill_budget;

  // 1. Running sequences, in priority order; under block pressure the lowest-priority,
  //    latest one is preempted (possibly the one asking).
  for (size_t i = 0; i < e.running.size() && budget > 0; ++i) {
    const uint64_t id = e.running[i];
    sequence& s = e.get(id);
    const bool is_decode = s.remaining() == 1;
    if ((is_decode && !allow_decode) || (!is_decode && !allow_prefill)) continue;
    const int32_t n = std::min({s.remaining(), budget, is_decode ? INT32_MAX : prefill_budget});
    if (n <= 0) continue;
    bool self_preempted = false;
    while (!e.grow_blocks(s, s.n_computed + n)) {
      const uint64_t victim = e.running.back();
      if (scheduled.count(victim)) break;  // cannot happen: victims come after i
      e.preempt(victim);
      ++out.stats.n_preempted;
      if (victim == id) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) break;
    work.emplace_back(id, n);
    scheduled.insert(id);
    budget -= n;
    if (!is_decode) prefill_budget -= n;
  }

  // 2. Waiting sequences, if nothing was preempted: best first, while there is room.
  while (allow_prefill && out.stats.n_preempted == 0 && budget > 0 && prefill_budget > 0 && !e.waiting.empty() &&
         static_cast<int32_t>(e.running.size()) < e.cfg.max_batch_size) {
    const size_t wi = e.best_waiting();
    const uint64_t id = e.waiting[wi];
    sequence& s = e.get(id);
    // The longest cached prefix in whole blocks, leaving at least one token to compute.
    const size_t max_cached_blocks = static_cast<size_t>((s.tokens.size() - 1) / static_cast<size_t>(e.bs()));
    e.ensure_hashes(s, max_cached_blocks);
    const std::span<const block_hash> lookup(s.hashes.data(), max_cached_blocks);
    const size_t hit = e.pool.count_cached_prefix(lookup);
    const int32_t cached = static_cast<int32_t>(hit) * e.bs();
    const int32_t rest = static_cast<int32_t>(s.tokens.size()) - cached;
    if (!e.cfg.enable_chunked_prefill && rest > std::min(budget, prefill_budget)) break;
    const int32_t n = std::min({rest, budget, prefill_budget});
    std::vector<int32_t> matched = e.pool.match(lookup.first(hit));
    s.blocks = matched;
    if (!e.grow_blocks(s, cached + n)) {
      e.pool.release(matched);
      s.blocks.clear();
      break;  // not enough free KV blocks: wait for some to finish
    }
    s.n_computed = cached;
    s.n_cached_blocks = static_cast<int32_t>(hit);
    if (s.cached_tokens < 0) s.cached_tokens = std::min(cached, s.n_prompt);
    e.waiting.erase(e.waiting.begin() + static_cast<ptrdiff_t>(wi));
    e.insert_running(id);
    work.emplace_back(id, n);
    scheduled.insert(id);
    budget -= n;
    prefill_budget -= n;
  }

  for (auto& [id, n] : work) {
    sequence& s = e.get(id);
    const bool last = s.n_computed + n == static_cast<int32_t>(s.tokens.size());
    out.batch.add(s.n_computed, std::span(s.tokens).subspan(static_cast<size_t>(s.n_computed), static_cast<size_t>(n)),
                  s.blocks, last ? 1 : 0);
    out.entries.push_back({id, n, last});
    out.stats.n_scheduled_tokens += n;
    if (n == 1 && s.n_computed >= s.n_prompt) ++out.stats.n_decode_seqs;
    else out.stats.n_prefill_tokens += n;
  }
  out.stats.n_running = static_cast<int32_t>(e.running.size());
  out.stats.n_waiting = static_cast<int32_t>(e.waiting.size());
  out.stats.kv_blocks_total = e.pool.n_blocks();
  out.stats.kv_blocks_used = e.pool.n_pinned();
  return out;
}

step_output engine::complete(scheduled_step&& step, const std::vector<float>& logits, double forward_seconds) {
  impl& e = *impl_;
  e.observe(step.stats, forward_seconds);
  step_output out;
  out.stats = step.stats;
  const auto V = static_cast<size_t>(e.model.n_vocab);
  size_t row = 0;
  for (const auto& entry : step.entries) {
    const size_t my_row = entry.sample ? row++ : 0;
    auto it = e.seqs.find(entry.seq);
    if (it == e.seqs.end()) continue;  // aborted while its forward ran
    sequence& s = *it->second;
    s.n_computed += entry.n_new;
    // Full blocks whose keys and values are now computed join the prefix cache.
    const int32_t full = s.n_computed / e.bs();
    if (full > s.n_cached_blocks) {
      e.ensure_hashes(s, static_cast<size_t>(full));
      const auto from = static_cast<size_t>(s.n_cached_blocks), count = static_cast<size_t>(full - s.n_cached_blocks);
      e.pool.cache_full_blocks(std::span(s.blocks).subspan(from, count), std::span(s.hashes).subspan(from, count),
                               from ? std::optional<block_hash>(s.hashes[from - 1]) : std::nullopt);
      s.n_cached_blocks = full;
    }
    if (!entry.sample) continue;

    e.row.assign(logits.begin() + static_cast<ptrdiff_t>(my_row * V), logits.begin() + static_cast<ptrdiff_t>((my_row + 1) * V));
    // Ids past the tokenizer's vocabulary (padding rows) are never sampled, nor stop tokens
    // before min_tokens.
    const float ninf = -std::numeric_limits<float>::infinity();
    for (size_t i = static_cast<size_t>(e.model.n_tokens); i < V; ++i) e.row[i] = ninf;
    if (s.completion() < s.params.min_tokens && !s.constraint) {
      if (!s.params.ignore_eos)
        for (token_id t : e.eos) e.row[static_cast<size_t>(t)] = ninf;
      for (token_id t : s.params.stop_token_ids) e.row[static_cast<size_t>(t)] = ninf;
    }
    if (s.constraint) s.constraint->mask_logits(e.row);
    sampled pick = s.sampler.sample(e.row);
    if (s.constraint && !s.constraint->accept(pick.id)) {
      // The mask allowed nothing (a grammar that cannot go on): end rather than write a
      // token it refuses.
      request_output ro;
      ro.id = s.id;
      e.finish(s, finish_reason::stop, ro);
      out.outputs.push_back(std::move(ro));
      continue;
    }
    s.sampler.accept(pick.id);
    s.tokens.push_back(pick.id);

    request_output ro;
    ro.id = s.id;
    ro.tokens.push_back(pick.id);
    if (s.params.logprobs >= 0) ro.logprobs.push_back(pick);
    const bool stop_token =
        (!s.params.ignore_eos && e.eos.count(pick.id)) ||
        std::find(s.params.stop_token_ids.begin(), s.params.stop_token_ids.end(), pick.id) != s.params.stop_token_ids.end();
    std::optional<finish_reason> why;
    if (stop_token) {
      why = finish_reason::stop;  // the stop token itself is not part of the text
    } else {
      const std::string piece = s.detok ? s.detok->push(pick.id) : std::string();
      auto o = s.stops.push(piece);
      ro.text = std::move(o.text);
      if (o.stopped) {
        why = finish_reason::stop;
        ro.stop_string = o.matched;
      }
    }
    if (!why && s.constraint && s.constraint->finished()) why = finish_reason::stop;
    if (!why && (s.completion() >= s.params.max_tokens || static_cast<int32_t>(s.tokens.size()) >= e.cfg.max_seq_len))
      why = finish_reason::length;
    ro.use = e.usage_of(s);
    if (why) e.finish(s, *why, ro);
    out.outputs.push_back(std::move(ro));
  }
  out.stats.n_running = static_cast<int32_t>(e.running.size());
  out.stats.n_waiting = static_cast<int32_t>(e.waiting.size());
  out.stats.kv_blocks_used = e.pool.n_pinned();
  return out;
}

result<step_output> engine::step(executor& ex) {
  scheduled_step s = schedule();
  std::vector<float> logits;
  double seconds = -1;
  if (!s.empty()) {
    const auto t0 = std::chrono::steady_clock::now();
    TROUPE_CHECK(ex.forward(s.batch, logits));
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return complete(std::move(s), logits, seconds);
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
