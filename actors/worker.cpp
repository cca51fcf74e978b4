#include "actors/worker.hpp"

#include <algorithm>
#include <chrono>
#include <deque>
#include <set>
#include <unordered_map>

#include <fmt/format.h>

#include "actors/kv_transfer.hpp"
#include "runtime/executor.hpp"

#include "runtime/checkpoint.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/structured/constraint_spec.hpp"
#include "runtime/text/tokenizer.hpp"

namespace troupe {
namespace {

// Tokens one verification emits: 1 (every draft rejected) to max_draft_len + 1.
const std::vector<double>& accepted_length_bounds() {
  static const std::vector<double> b = {1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 33};
  return b;
}

// A request in the engine: where its deltas go and which router to tell of its progress.
struct live_request {
  stream_actor stream;
  route_sink_actor router;
  bool first_token = false;
  // Prefill workers: the decode worker to hand the request to after its first token, and the
  // request as it came (less its prompt) for the hand-off.
  caf::actor decode_to;
  std::string decode_name;
  generate_request origin;
  // Decode workers: the prompt tokens the prefill worker had cached (what usage reports).
  int32_t prefill_cached = -1;
};

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

const std::vector<double>& transfer_seconds_bounds() {
  static const std::vector<double> b = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return b;
}

// A prefill worker's side of a transfer: the held request's blocks, sent as the decode worker
// pulls them, within the credits.
struct transfer_out {
  live_request lr;
  worker_actor decode;
  std::string decode_name;
  std::vector<int32_t> blocks;
  uint64_t bytes_per_block = 0;
  int32_t next = 0;  // the next block to send
  bool pulled = false;
  uint64_t in_flight = 0;  // bytes sent, not acknowledged
  double last = 0;         // the last progress
};

// A decode worker's side: the imported request's blocks, written as they arrive.
struct transfer_in {
  live_request lr;
  worker_actor prefill;
  std::string prefill_name;
  kv_import imp;
  int32_t written = 0;  // of imp.blocks
  std::deque<kv_chunk> pending;  // arrived during a step: written after it
  uint64_t bytes = 0;
  double started = 0, last = 0;
};

struct worker_state {
  static inline const char* name = "troupe.worker";
  worker_setup setup;
  std::unordered_map<std::string, live_request> streams;
  uint64_t next_event = 0;  // the id of the next KV event the engine will emit
  bool stepping = false;
  bool stopping = false;
  actor_meter meter;
  step_stats last;
  // Speculative decoding since the worker started (for /metrics).
  int64_t draft_tokens = 0;
  int64_t accepted_draft_tokens = 0;
  histogram_data accepted_length = make_histogram(accepted_length_bounds());
  // Output constraints compiled against this model's vocabulary, made on first use.
  std::unique_ptr<structured::constraint_factory> constraints;
  // KV transfers (actors/kv_transfer.hpp), by request id.
  std::unordered_map<std::string, transfer_out> outs;
  std::unordered_map<std::string, transfer_in> ins;
  bool tick_armed = false;
  std::set<caf::actor_addr> peers_watched;  // workers monitored once each (transfer peers)
  int64_t kv_transfers = 0, kv_transfer_blocks = 0, kv_transfer_bytes = 0, kv_transfer_skipped = 0,
          kv_transfer_failures = 0;
  histogram_data kv_transfer_seconds = make_histogram(transfer_seconds_bounds());
};

using self_ptr = worker_actor::stateful_pointer<worker_state>;

wire_logprob wire_of(const sampled& s) {
  wire_logprob w{s.id, s.logprob, {}, {}};
  for (const token_logprob& t : s.top) {
    w.top_ids.push_back(t.id);
    w.top_logprobs.push_back(t.logprob);
  }
  return w;
}

token_delta delta_of(const request_output& o, const std::string& worker) {
  token_delta d;
  d.id = o.id;
  d.tokens = o.tokens;
  d.text = o.text;
  for (const sampled& s : o.logprobs) d.logprobs.push_back(wire_of(s));
  for (const sampled& s : o.prompt_logprobs) d.prompt_logprobs.push_back(wire_of(s));
  d.embedding = o.embedding;
  d.prompt_tokens = o.use.prompt_tokens;
  d.completion_tokens = o.use.completion_tokens;
  d.cached_tokens = o.use.cached_tokens;
  d.draft_tokens = o.n_drafted;
  d.accepted_draft_tokens = o.n_draft_accepted;
  if (o.finished) {
    d.finished = true;
    d.finish_reason = finish_reason_name(*o.finished);
    d.stop_string = o.stop_string;
  }
  d.worker = worker;
  return d;
}

void publish_events(self_ptr self) {
  auto events = self->state.setup.eng->drain_kv_events();
  if (events.empty()) return;
  kv_events_msg msg;
  msg.worker = self->state.setup.name;
  msg.events.reserve(events.size());
  self->state.next_event = events.back().event_id + 1;
  for (auto& e : events) msg.events.push_back(to_wire(std::move(e)));
  self->send(self->state.setup.publisher, kv_events_atom::value, std::move(msg));
}

// The request left the engine (finished, failed or aborted): its router stops counting it.
// Usage only for a request that finished by itself.
void tell_done(self_ptr self, const std::string& id, const live_request& r, int32_t prompt = 0, int32_t cached = 0) {
  if (r.router) self->send(r.router, done_atom::value, id, self->state.setup.name, prompt, cached);
}

// Ends every request with a failure delta (the worker or its device cannot go on).
void fail_all(self_ptr self, int status, const std::string& why) {
  auto& s = self->state;
  for (auto& [id, r] : s.streams) {
    self->send(r.stream, failure_delta(id, status, why, s.setup.name));
    s.setup.eng->abort(id);
    self->demonitor(r.stream.address());
    tell_done(self, id, r);
  }
  s.streams.clear();
  for (auto& [id, t] : s.outs) {
    self->send(t.lr.stream, failure_delta(id, status, why, s.setup.name));
    self->send(t.decode, kvabort_atom::value, id, why);
    s.setup.eng->abort(id);
    kv_transfer::release_node_credit(t.in_flight);
    tell_done(self, id, t.lr);
  }
  s.outs.clear();
  for (auto& [id, t] : s.ins) {
    self->send(t.prefill, kvabort_atom::value, id, why);
    s.setup.eng->abort(id);
  }
  s.ins.clear();
}

// The constraint a request's spec asks for (compiled once per spec and kept).
result<std::shared_ptr<token_constraint>> constraint_of(worker_state& st, const std::string& spec) {
  const model_bundle& m = *st.setup.model;
  if (!m.tok) return make_error("constrained decoding needs the model's tokenizer, and it ships none");
  if (!st.constraints) {
    std::vector<token_id> ends = m.weights->config().eos_ids;
    for (token_id t : m.tok->stop_ids())
      if (std::find(ends.begin(), ends.end(), t) == ends.end()) ends.push_back(t);
    st.constraints = std::make_unique<structured::constraint_factory>(
        structured::vocab_index::of(*m.tok, std::move(ends), m.weights->config().n_vocab));
  }
  return st.constraints->make(spec);
}

void maybe_quit(self_ptr self) {
  if (self->state.stopping && !self->state.stepping) self->quit();
}

void step(self_ptr self);

// ---- KV transfer (actors/kv_transfer.hpp) ---------------------------------------------------

// Monitors a peer worker once, however many transfers it shares with this one.
void watch_peer(self_ptr self, const worker_actor& peer) {
  if (self->state.peers_watched.insert(peer.address()).second) self->monitor(peer);
}

void arm_tick(self_ptr self) {
  auto& s = self->state;
  if (s.tick_armed || (s.outs.empty() && s.ins.empty())) return;
  s.tick_armed = true;
  self->delayed_send(self, std::chrono::milliseconds(20), tick_atom::value);
}

// Prefill side: the transfer ends badly. The client hears why (its first token was streamed,
// so the request cannot start over), the router that the request left, the decode worker
// (when notify) that it can drop its import; the held copy's blocks go back to the pool.
void fail_out(self_ptr self, const std::string& id, const std::string& why, bool notify) {
  auto& s = self->state;
  auto it = s.outs.find(id);
  if (it == s.outs.end()) return;
  transfer_out& t = it->second;
  ++s.kv_transfer_failures;
  self->send(t.lr.stream,
             failure_delta(id, 503, fmt::format("the KV transfer of this request to decode worker {} failed: {}",
                                                t.decode_name, why),
                           s.setup.name));
  if (notify) self->send(t.decode, kvabort_atom::value, id, why);
  s.setup.eng->abort(id);
  kv_transfer::release_node_credit(t.in_flight);
  tell_done(self, id, t.lr);
  s.outs.erase(it);
  publish_events(self);
}

// Decode side: the import is dropped (its blocks freed); the prefill worker is told when notify.
void drop_in(self_ptr self, const std::string& id, const std::string& why, bool notify) {
  auto& s = self->state;
  auto it = s.ins.find(id);
  if (it == s.ins.end()) return;
  ++s.kv_transfer_failures;
  if (notify) self->send(it->second.prefill, kvabort_atom::value, id, why);
  s.setup.eng->abort(id);
  s.ins.erase(it);
  publish_events(self);
}

// Prefill side, after the first token: hold the request and offer its blocks to the decode
// worker. A request whose KV cannot be exported stays here and decodes on.
void start_handoff(self_ptr self, const std::string& id, int32_t cached_tokens) {
  auto& s = self->state;
  auto it = s.streams.find(id);
  if (it == s.streams.end()) return;
  live_request& lr = it->second;
  executor* ex = s.setup.kv_executor.get();
  auto kv = s.setup.eng->export_kv(id);
  if (!ex || !kv.ok()) {
    lr.decode_to = nullptr;
    return;
  }
  s.setup.eng->hold(id);
  transfer_out t;
  t.decode = caf::actor_cast<worker_actor>(lr.decode_to);
  t.decode_name = lr.decode_name;
  t.blocks = kv->blocks.blocks;
  t.bytes_per_block = ex->kv_bytes_per_block();
  t.last = now_s();
  kv_handoff h;
  h.req = std::move(lr.origin);
  h.req.prompt = std::move(kv->prompt);
  h.req.decode_to = nullptr;
  h.req.decode_name.clear();
  h.generated = std::move(kv->generated);
  h.n_computed = kv->n_computed;
  h.n_blocks = static_cast<int32_t>(t.blocks.size());
  h.cached_tokens = cached_tokens;
  h.bytes_per_block = t.bytes_per_block;
  h.layout = ex->kv_layout();
  h.prefill = s.setup.name;
  lr.decode_to = nullptr;
  t.lr = std::move(lr);
  s.streams.erase(it);
  watch_peer(self, t.decode);
  self->send(t.decode, kvhandoff_atom::value, std::move(h));
  s.outs.emplace(id, std::move(t));
  arm_tick(self);
}

// Prefill side: sends what the credits allow of every pulled transfer (between steps only).
void pump(self_ptr self) {
  auto& s = self->state;
  if (s.stepping || s.outs.empty()) return;
  executor* ex = s.setup.kv_executor.get();
  std::vector<std::pair<std::string, std::string>> failed;
  for (auto& [id, t] : s.outs) {
    if (!t.pulled) continue;
    const auto n_total = static_cast<int32_t>(t.blocks.size());
    const uint64_t per_chunk = t.bytes_per_block == 0 ? static_cast<uint64_t>(n_total)
                                                      : std::max<uint64_t>(1, kv_transfer::chunk_bytes() / t.bytes_per_block);
    while (t.next < n_total) {
      const auto n = static_cast<int32_t>(std::min<uint64_t>(per_chunk, static_cast<uint64_t>(n_total - t.next)));
      const uint64_t bytes = static_cast<uint64_t>(n) * t.bytes_per_block;
      if (t.in_flight > 0 && t.in_flight + bytes > kv_transfer::transfer_credit_bytes()) break;
      if (!kv_transfer::try_acquire_node_credit(bytes)) break;
      kv_chunk c;
      c.id = id;
      c.first = t.next;
      c.n_blocks = n;
      status st = ex->read_blocks(std::span<const int32_t>(t.blocks.data() + t.next, static_cast<size_t>(n)), c.bytes);
      if (!st.ok()) {
        kv_transfer::release_node_credit(bytes);
        failed.emplace_back(id, "reading its KV blocks: " + st.message());
        break;
      }
      t.in_flight += bytes;
      t.next += n;
      t.last = now_s();
      self->send(t.decode, kvchunk_atom::value, std::move(c));
    }
  }
  for (auto& [id, why] : failed) fail_out(self, id, why, true);
}

// Decode side: every block is in place; the request decodes on here.
void finish_import(self_ptr self, const std::string& id) {
  auto& s = self->state;
  auto it = s.ins.find(id);
  if (it == s.ins.end()) return;
  transfer_in& t = it->second;
  if (status st = s.setup.eng->end_import(id); !st.ok()) return drop_in(self, id, "ending the import: " + st.message(), true);
  ++s.kv_transfers;
  s.kv_transfer_blocks += static_cast<int64_t>(t.imp.blocks.size());
  s.kv_transfer_bytes += static_cast<int64_t>(t.bytes);
  observe(s.kv_transfer_seconds, now_s() - t.started);
  self->send(t.prefill, kvdone_atom::value, id);
  if (t.lr.router) self->send(t.lr.router, handoff_atom::value, id, t.prefill_name, s.setup.name);
  s.streams[id] = std::move(t.lr);
  s.ins.erase(it);
  step(self);
}

// Decode side: writes the chunks that arrived (between steps only) and acknowledges them.
void write_pending(self_ptr self) {
  auto& s = self->state;
  if (s.stepping || s.ins.empty()) return;
  executor* ex = s.setup.kv_executor.get();
  std::vector<std::pair<std::string, std::string>> failed;
  std::vector<std::string> complete;
  for (auto& [id, t] : s.ins) {
    while (!t.pending.empty()) {
      kv_chunk& c = t.pending.front();
      const int32_t at = c.first - t.imp.first_block;
      if (at < 0 || c.n_blocks < 1 || at + c.n_blocks > static_cast<int32_t>(t.imp.blocks.size())) {
        failed.emplace_back(id, fmt::format("a chunk of blocks {}..{} does not fit the import", c.first, c.first + c.n_blocks));
        break;
      }
      status st = ex->write_blocks(std::span<const int32_t>(t.imp.blocks.data() + at, static_cast<size_t>(c.n_blocks)), c.bytes);
      if (!st.ok()) {
        failed.emplace_back(id, "writing its KV blocks: " + st.message());
        break;
      }
      t.written += c.n_blocks;
      t.bytes += c.bytes.size();
      t.last = now_s();
      self->send(t.prefill, kvack_atom::value, id, static_cast<uint64_t>(c.bytes.size()));
      t.pending.pop_front();
    }
    if (t.written == static_cast<int32_t>(t.imp.blocks.size())) complete.push_back(id);
  }
  for (auto& [id, why] : failed) drop_in(self, id, why, true);
  for (auto& id : complete) finish_import(self, id);
}

// Decode side: a prefill worker offers a request.
void accept_handoff(self_ptr self, kv_handoff& h) {
  auto& s = self->state;
  auto prefill = caf::actor_cast<worker_actor>(self->current_sender());
  const std::string id = h.req.id;
  auto refuse = [&](const std::string& why) {
    ++s.kv_transfer_failures;
    self->send(prefill, kvabort_atom::value, id, why);
  };
  executor* ex = s.setup.kv_executor.get();
  if (s.stopping) return refuse("the decode worker is shutting down");
  if (!ex) return refuse("the decode worker has no executor to write KV blocks into");
  if (ex->kv_layout() != h.layout || ex->kv_bytes_per_block() != h.bytes_per_block)
    return refuse(fmt::format("the KV layouts differ (prefill: {}, {} bytes per block; decode: {}, {})", h.layout,
                              h.bytes_per_block, ex->kv_layout(), ex->kv_bytes_per_block()));
  request req;
  req.id = id;
  req.prompt = std::move(h.req.prompt);
  req.params = from_wire(h.req.params);
  req.priority = h.req.priority;
  auto imp = s.setup.eng->begin_import(std::move(req), h.generated, h.n_computed);
  if (!imp.ok()) return refuse(imp.message());
  if (imp->first_block + static_cast<int32_t>(imp->blocks.size()) != h.n_blocks) {
    s.setup.eng->abort(id);
    return refuse(fmt::format("the prefill worker sends {} blocks and the decode worker expects {}", h.n_blocks,
                              imp->first_block + static_cast<int32_t>(imp->blocks.size())));
  }
  transfer_in t;
  t.lr.stream = h.req.reply_to;
  t.lr.router = h.req.router;
  t.lr.first_token = true;
  t.lr.prefill_cached = h.cached_tokens;
  t.prefill = prefill;
  t.prefill_name = h.prefill;
  t.imp = std::move(*imp);
  t.started = t.last = now_s();
  s.kv_transfer_skipped += t.imp.first_block;
  watch_peer(self, prefill);
  self->monitor(t.lr.stream);
  const int32_t first = t.imp.first_block;
  const bool nothing_to_send = t.imp.blocks.empty();
  s.ins.emplace(id, std::move(t));
  if (nothing_to_send) return finish_import(self, id);
  self->send(prefill, kvpull_atom::value, id, first);
  arm_tick(self);
}

// Every 20 ms while transfers are open: stalled ones are aborted on both sides, and those
// waiting for the node's credit try again.
void on_tick(self_ptr self) {
  auto& s = self->state;
  s.tick_armed = false;
  const double now = now_s(), limit = kv_transfer::stall_timeout_s();
  std::vector<std::string> stalled_out, stalled_in;
  for (auto& [id, t] : s.outs)
    if (now - t.last > limit) stalled_out.push_back(id);
  for (auto& [id, t] : s.ins)
    if (now - t.last > limit) stalled_in.push_back(id);
  const std::string why = fmt::format("no progress for {} s (TROUPE_KV_TRANSFER_TIMEOUT_S)", limit);
  for (auto& id : stalled_out) fail_out(self, id, why, true);
  for (auto& id : stalled_in) drop_in(self, id, why, true);
  pump(self);
  write_pending(self);
  arm_tick(self);
}

// Runs the next step if there is work and none is running. The forward goes to the device
// actor; its answer completes the step and starts the next one.
void step(self_ptr self) {
  auto& st = self->state;
  if (st.stepping || st.stopping) return;
  auto sched = std::make_shared<step_plan>(st.setup.eng->schedule());
  publish_events(self);  // scheduling may evict cached blocks
  if (sched->empty()) return;
  st.stepping = true;
  self->request(st.setup.device, caf::infinite, forward_atom::value, sched->batch)
      .then(
          [=](forward_result& r) {
            metered g(self->state.meter);
            auto& s = self->state;
            s.stepping = false;
            if (!r.error.empty()) {
              // The executor refused the batch (a bug, not a client error): fail every
              // request rather than retry the same batch forever.
              fail_all(self, 500, "forward pass failed: " + r.error);
            } else {
              step_output out = s.setup.eng->complete(std::move(*sched), r.logits, r.seconds, r.hidden);
              s.last = out.stats;
              for (const request_output& o : out.outputs) {
                if (o.n_drafted > 0) {
                  s.draft_tokens += o.n_drafted;
                  s.accepted_draft_tokens += o.n_draft_accepted;
                  observe(s.accepted_length, o.n_draft_accepted + 1);
                }
                auto it = s.streams.find(o.id);
                if (it == s.streams.end()) continue;
                live_request& lr = it->second;
                token_delta d = delta_of(o, s.setup.name);
                if (lr.prefill_cached >= 0) d.cached_tokens = lr.prefill_cached;
                if (!lr.first_token && !o.tokens.empty()) {
                  lr.first_token = true;
                  if (lr.router) self->send(lr.router, first_token_atom::value, o.id, s.setup.name);
                }
                if (o.finished) {
                  // The router hears of the end before the stream does: the stream actor ends with
                  // its last delta, and a router that saw it end first would take the request for
                  // an abort and lose its usage (kv_cache_hit_rate's window).
                  self->demonitor(lr.stream.address());
                  const int32_t cached = lr.prefill_cached >= 0 ? lr.prefill_cached : o.use.cached_tokens;
                  if (*o.finished == finish_reason::abort) tell_done(self, o.id, lr);
                  else tell_done(self, o.id, lr, o.use.prompt_tokens, cached);
                  self->send(lr.stream, std::move(d));
                  s.streams.erase(it);
                  continue;
                }
                self->send(lr.stream, std::move(d));
                if (lr.decode_to && lr.first_token) {
                  start_handoff(self, o.id, o.use.cached_tokens);
                }
              }
            }
            publish_events(self);
            maybe_quit(self);
            // Between steps: KV blocks may be read and written.
            pump(self);
            write_pending(self);
            step(self);
          },
          [=](caf::error& err) {
            self->state.stepping = false;
            fail_all(self, 503, "the device actor failed: " + self->system().render(err));
            self->quit(err);
          });
}

worker_actor::behavior_type worker_fn(self_ptr self, worker_setup setup) {
  self->state.setup = std::move(setup);
  self->state.meter = {self->state.setup.node, self->state.setup.name, "worker", 0, 0};
  // A stream actor that goes away takes its request with it.
  self->set_down_handler([=](const caf::down_msg& m) {
    auto& s = self->state;
    s.peers_watched.erase(m.source);
    // Transfers: a client gone ends both sides; a peer worker gone ends this side (the router
    // tells the client).
    std::vector<std::string> out_client, out_peer, in_client, in_peer;
    for (auto& [id, t] : s.outs) {
      if (t.lr.stream.address() == m.source) out_client.push_back(id);
      else if (t.decode.address() == m.source) out_peer.push_back(id);
    }
    for (auto& [id, t] : s.ins) {
      if (t.lr.stream.address() == m.source) in_client.push_back(id);
      else if (t.prefill.address() == m.source) in_peer.push_back(id);
    }
    for (auto& id : out_client) {
      auto it = s.outs.find(id);
      self->send(it->second.decode, kvabort_atom::value, id, std::string("the client went away"));
      s.setup.eng->abort(id);
      kv_transfer::release_node_credit(it->second.in_flight);
      tell_done(self, id, it->second.lr);
      s.outs.erase(it);
    }
    for (auto& id : out_peer) {
      auto it = s.outs.find(id);
      ++s.kv_transfer_failures;
      s.setup.eng->abort(id);
      kv_transfer::release_node_credit(it->second.in_flight);
      s.outs.erase(it);
    }
    for (auto& id : in_client) drop_in(self, id, "the client went away", true);
    for (auto& id : in_peer) drop_in(self, id, "the prefill worker was lost", false);
    for (auto it = s.streams.begin(); it != s.streams.end();) {
      if (it->second.stream.address() == m.source) {
        s.setup.eng->abort(it->first);
        tell_done(self, it->first, it->second);
        it = s.streams.erase(it);
      } else {
        ++it;
      }
    }
    publish_events(self);
  });
  return {
      [=](submit_atom, generate_request& r) {
        metered g(self->state.meter);
        auto& s = self->state;
        if (s.stopping) {
          self->send(r.reply_to, failure_delta(r.id, 503, "the worker is shutting down", s.setup.name));
          return;
        }
        if (r.pool != pooling::none && !s.setup.no_hidden_states.empty()) {
          self->send(r.reply_to, failure_delta(r.id, 400,
                                               "this worker cannot compute embeddings: its executor (" +
                                                   s.setup.no_hidden_states + ") returns no hidden states",
                                               s.setup.name));
          return;
        }
        request req;
        req.id = r.id;
        req.prompt = std::move(r.prompt);
        req.params = from_wire(r.params);
        req.priority = r.priority;
        req.pool = r.pool;
        if (!r.constraint.empty()) {
          auto c = constraint_of(s, r.constraint);
          if (!c.ok()) {
            self->send(r.reply_to, failure_delta(r.id, 400, "the output constraint cannot be used: " + c.message(), s.setup.name));
            return;
          }
          req.constraint = std::move(*c);
        }
        if (status st = s.setup.eng->add_request(std::move(req)); !st.ok()) {
          self->send(r.reply_to, failure_delta(r.id, 400, st.message(), s.setup.name));
          return;
        }
        live_request& lr = s.streams[r.id];
        lr = {r.reply_to, r.router, false};
        if (r.decode_to && s.setup.kv_executor) {
          lr.decode_to = std::move(r.decode_to);
          lr.decode_name = std::move(r.decode_name);
          lr.origin = r;  // its prompt moved into the engine
        }
        self->monitor(r.reply_to);
        // An empty delta says the engine took it (so the frontend can still answer a refusal
        // with its own HTTP status before it commits to streaming).
        token_delta ack;
        ack.id = r.id;
        ack.worker = s.setup.name;
        self->send(r.reply_to, std::move(ack));
        step(self);
      },
      [=](abort_atom, const std::string& id) {
        metered g(self->state.meter);
        auto& s = self->state;
        s.setup.eng->abort(id);
        if (auto it = s.streams.find(id); it != s.streams.end()) {
          self->demonitor(it->second.stream.address());
          tell_done(self, id, it->second);
          s.streams.erase(it);
        }
        if (auto it = s.outs.find(id); it != s.outs.end()) {
          self->send(it->second.decode, kvabort_atom::value, id, std::string("the request was aborted"));
          kv_transfer::release_node_credit(it->second.in_flight);
          tell_done(self, id, it->second.lr);
          s.outs.erase(it);
        }
        if (auto it = s.ins.find(id); it != s.ins.end()) {
          self->send(it->second.prefill, kvabort_atom::value, id, std::string("the request was aborted"));
          s.ins.erase(it);
        }
        publish_events(self);
      },
      [=](stop_atom) {
        metered g(self->state.meter);
        auto& s = self->state;
        fail_all(self, 503, "the worker was stopped");
        s.stopping = true;
        publish_events(self);
        maybe_quit(self);
      },
      [=](dump_atom) {
        metered g(self->state.meter);
        // Events emitted so far go to the publisher first: the dump is the cached set as of
        // next_event, and the router drops the older events it may still receive.
        publish_events(self);
        auto& s = self->state;
        return kv_dump{s.setup.name, s.setup.instance, s.next_event, s.setup.eng->cached_block_hashes()};
      },
      [=](metrics_atom) {
        auto& s = self->state;
        actor_stats st = make_stats(s.meter, self->mailbox().size());
        st.running = static_cast<int32_t>(s.setup.eng->n_running());
        st.waiting = static_cast<int32_t>(s.setup.eng->n_waiting());
        st.kv_blocks_total = s.setup.eng->kv_blocks_total();
        st.kv_blocks_used = st.kv_blocks_total - s.setup.eng->kv_blocks_free();
        st.decoding_type = s.setup.eng->decoding_type();
        if (!st.decoding_type.empty()) {
          st.draft_tokens = s.draft_tokens;
          st.accepted_draft_tokens = s.accepted_draft_tokens;
          st.accepted_length = s.accepted_length;
        }
        st.worker_role = s.setup.role;
        st.unit = s.setup.unit;
        st.kv_transfers = s.kv_transfers;
        st.kv_transfer_blocks = s.kv_transfer_blocks;
        st.kv_transfer_bytes = s.kv_transfer_bytes;
        st.kv_transfer_skipped_blocks = s.kv_transfer_skipped;
        st.kv_transfer_failures = s.kv_transfer_failures;
        st.kv_transfer_seconds = s.kv_transfer_seconds;
        return st;
      },
      [=](kvhandoff_atom, kv_handoff& h) {
        metered g(self->state.meter);
        accept_handoff(self, h);
      },
      [=](kvpull_atom, const std::string& id, int32_t first) {
        metered g(self->state.meter);
        auto& s = self->state;
        auto it = s.outs.find(id);
        if (it == s.outs.end()) return;
        if (first < 0 || first > static_cast<int32_t>(it->second.blocks.size()))
          return fail_out(self, id, fmt::format("the decode worker asked for blocks from {}", first), true);
        it->second.pulled = true;
        it->second.next = first;
        it->second.last = now_s();
        pump(self);
      },
      [=](kvchunk_atom, kv_chunk& c) {
        metered g(self->state.meter);
        auto& s = self->state;
        auto it = s.ins.find(c.id);
        if (it == s.ins.end()) return;  // aborted meanwhile
        it->second.last = now_s();
        it->second.pending.push_back(std::move(c));
        write_pending(self);
      },
      [=](kvack_atom, const std::string& id, uint64_t bytes) {
        metered g(self->state.meter);
        auto& s = self->state;
        auto it = s.outs.find(id);
        if (it == s.outs.end()) return;
        const uint64_t n = std::min(bytes, it->second.in_flight);
        it->second.in_flight -= n;
        kv_transfer::release_node_credit(n);
        it->second.last = now_s();
        pump(self);
      },
      [=](kvdone_atom, const std::string& id) {
        metered g(self->state.meter);
        auto& s = self->state;
        auto it = s.outs.find(id);
        if (it == s.outs.end()) return;
        // The decode worker holds the request: the held copy's blocks go back to the pool.
        kv_transfer::release_node_credit(it->second.in_flight);
        self->demonitor(it->second.lr.stream.address());
        s.outs.erase(it);
        s.setup.eng->abort(id);
        publish_events(self);
        pump(self);
      },
      [=](kvabort_atom, const std::string& id, const std::string& why) {
        metered g(self->state.meter);
        fail_out(self, id, why, false);
        drop_in(self, id, why, false);
      },
      [=](tick_atom) {
        metered g(self->state.meter);
        on_tick(self);
      },
  };
}

}  // namespace

worker_actor spawn_worker(caf::actor_system& sys, worker_setup setup) {
  return sys.spawn(worker_fn, std::move(setup));
}

}  // namespace troupe
