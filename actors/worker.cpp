#include "actors/worker.hpp"

#include <algorithm>
#include <unordered_map>

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
                self->send(lr.stream, delta_of(o, s.setup.name));
                if (!lr.first_token && !o.tokens.empty()) {
                  lr.first_token = true;
                  if (lr.router) self->send(lr.router, first_token_atom::value, o.id, s.setup.name);
                }
                if (o.finished) {
                  self->demonitor(lr.stream.address());
                  if (*o.finished == finish_reason::abort) tell_done(self, o.id, lr);
                  else tell_done(self, o.id, lr, o.use.prompt_tokens, o.use.cached_tokens);
                  s.streams.erase(it);
                }
              }
            }
            publish_events(self);
            maybe_quit(self);
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
        s.streams[r.id] = {r.reply_to, r.router, false};
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
        return st;
      },
  };
}

}  // namespace

worker_actor spawn_worker(caf::actor_system& sys, worker_setup setup) {
  return sys.spawn(worker_fn, std::move(setup));
}

}  // namespace troupe
