#include "actors/router.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <unordered_map>

#include <fmt/format.h>

#include "actors/kv_transfer.hpp"
#include "runtime/block_hash.hpp"
#include "runtime/kv_index.hpp"

namespace troupe {

const std::vector<double>& decision_seconds_bounds() {
  static const std::vector<double> b = {1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 5e-3, 1e-2};
  return b;
}
const std::vector<double>& queue_wait_seconds_bounds() {
  static const std::vector<double> b = {0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60};
  return b;
}

namespace {

using clock_type = std::chrono::steady_clock;

double now_s() { return std::chrono::duration<double>(clock_type::now().time_since_epoch()).count(); }

// The workers of one model that share a KV block size and a hash salt: one index.
struct hash_group {
  std::string model;
  int32_t block_size = 0;
  uint64_t salt = 0;
  kv_index index;
  kv_index predicted;  // counted: prompt blocks of requests routed and not finished
  hash_group(std::string m, int32_t bs, uint64_t s, size_t max_entries)
      : model(std::move(m)), block_size(bs), salt(s), index(kv_index::options{max_entries, false}),
        predicted(kv_index::options{max_entries, true}) {}
};

struct worker_entry {
  worker_actor handle;
  publisher_actor publisher;
  worker_info info;
  bool alive = true;
  // Lifecycle (the autoscaler's drains): a draining worker gets no new requests and finishes
  // what it holds; one that ends while draining was stopped, not lost.
  bool draining = false;
  bool stopped = false;
  hash_group* group = nullptr;
  kv_index::worker_slot slot = 0;   // in group->index
  kv_index::worker_slot pslot = 0;  // in group->predicted
  // The load picture: this router's decisions and its replicas'.
  int64_t in_flight_tokens = 0;
  int32_t in_flight_requests = 0;
  int64_t active_blocks = 0;
  int64_t queued_prefill_blocks = 0;
  // Index upkeep: while a dump or replay is pending, events wait here.
  bool syncing = false;
  std::vector<wire_kv_event> held;
  // Counters.
  int64_t routed = 0, prompt_tokens = 0, cached_tokens = 0;
  uint64_t events = 0, gaps = 0, dumps = 0, replays = 0;
};

// What a routed request adds to its worker's load, to take back when it ends.
struct load_share {
  std::string worker;
  int64_t tokens = 0;
  int32_t request_blocks = 0;
  int32_t uncached_blocks = 0;  // until its first token
  std::vector<uint64_t> hashes;  // predicted on the worker until it ends
};

struct request_entry {
  generate_request req;
  load_share share;
  // Disaggregated serving: the decode worker's share until the hand-off (worker "" for none);
  // then it becomes `share`.
  load_share dshare;
  bool routed = false;
  bool streamed = false;
  bool queued = false;
  int attempts = 0;
  double queued_at = 0;
  int64_t estimated_tokens = 0;  // cached on the chosen worker, by the router's picture
  int64_t best_tokens = 0;       // on the worker holding most of the prefix
};

struct window_bucket {
  int64_t second = 0;
  int64_t prompt = 0, cached = 0, estimated = 0, best = 0;
};

struct model_entry {
  routing_config cfg;
  std::unique_ptr<routing_policy> policy;
  router_queue queue;
  std::deque<window_bucket> window;
  int64_t rejected = 0;
  model_entry(routing_config c, std::unique_ptr<routing_policy> p, size_t capacity)
      : cfg(std::move(c)), policy(std::move(p)), queue(capacity, cfg.queue_policy) {}
};

struct router_state {
  static inline const char* name = "troupe.router";
  router_options opt;
  std::map<std::string, worker_entry> workers;
  std::map<std::tuple<std::string, int32_t, uint64_t>, std::unique_ptr<hash_group>> groups;
  std::map<std::string, model_entry> models;
  std::unordered_map<std::string, request_entry> requests;
  std::unordered_map<std::string, load_share> foreign;  // replicas' requests in flight
  std::map<std::string, kv_snapshot::worker> restored;  // by worker name, until it registers
  std::vector<node_agent_actor> agents;
  std::vector<std::string> agent_nodes;  // each agent's node, in the same order
  std::vector<router_peer_actor> peers;
  std::map<std::string, autoscaler_report> autoscalers;  // by model, the latest
  router_stats stats;
  actor_meter meter;
  uint64_t seed = 0;
  // Scratch, reused per decision.
  std::vector<uint32_t> overlap, predicted_overlap;
  std::vector<worker_view> views;
  std::vector<worker_entry*> candidates, decode_candidates;
};

using self_ptr = router_actor::stateful_pointer<router_state>;

model_entry& model_of(self_ptr self, const std::string& model) {
  auto& st = self->state;
  auto it = st.models.find(model);
  if (it != st.models.end()) return it->second;
  routing_config c = st.opt.defaults;
  c.model = model;
  kv_policy_options ko{c.overlap_score_weight, c.temperature, st.seed + st.models.size()};
  return st.models.try_emplace(model, c, make_policy(st.opt.kind, ko), st.opt.queue_capacity).first->second;
}

void log_line(self_ptr self, const std::string& s) {
  std::fprintf(stderr, "troupe: %s: %s\n", self->state.opt.name.c_str(), s.c_str());
}

// ---- load picture ------------------------------------------------------------------------

void add_load(worker_entry& w, const load_share& s) {
  w.in_flight_tokens += s.tokens;
  ++w.in_flight_requests;
  w.active_blocks += s.request_blocks;
  w.queued_prefill_blocks += s.uncached_blocks;
  if (w.alive && !s.hashes.empty()) w.group->predicted.store(w.pslot, s.hashes);
}

void prefilled(worker_entry& w, load_share& s) {
  w.queued_prefill_blocks -= s.uncached_blocks;
  s.uncached_blocks = 0;
}

void take_load(worker_entry& w, load_share& s) {
  prefilled(w, s);
  w.in_flight_tokens -= s.tokens;
  --w.in_flight_requests;
  w.active_blocks -= s.request_blocks;
  if (w.alive && !s.hashes.empty()) w.group->predicted.remove(w.pslot, s.hashes);
}

void tell_peers(self_ptr self, const request_entry& e, route_decision::stage at) {
  auto& st = self->state;
  if (st.peers.empty()) return;
  route_decision d;
  d.id = e.req.id;
  d.model = e.req.model;
  d.worker = e.share.worker;
  d.at = at;
  if (at == route_decision::stage::routed) {
    d.request_blocks = e.share.request_blocks;
    d.uncached_blocks = e.share.uncached_blocks;
    d.tokens = e.share.tokens;
    d.hashes = e.share.hashes;
  }
  for (const auto& p : st.peers) self->send(p, peer_atom::value, d);
}

// ---- the decision ------------------------------------------------------------------------

bool saturated(const router_options& o, const worker_entry& w, int32_t request_blocks) {
  if (w.info.max_batch_size > 0 && w.in_flight_requests >= w.info.max_batch_size) return true;
  return static_cast<double>(w.active_blocks + request_blocks) > o.busy_kv_fraction * w.info.kv_blocks_total;
}

enum class route_outcome {
  sent,       // to the chosen worker
  queued,     // every worker is saturated: it waits in the model's queue
  busy,       // every worker is saturated, and it may not queue (it is being drained)
  full,       // every worker is saturated and the queue is full
  no_worker,  // its model has no live worker
};

void fail(self_ptr self, const std::string& id, int status, std::string message);

// The chained hashes of a request's full blocks for a group's block size and salt.
std::vector<uint64_t> hashes_for(const request_entry& e, const hash_group& g) {
  std::vector<uint64_t> out;
  for (block_hash h : hash_full_blocks(e.req.prompt, g.block_size, g.salt)) out.push_back(h.value);
  return out;
}

// No worker can take the request now: it waits in its model's queue, if it may and there is room.
route_outcome wait_in_queue(model_entry& m, request_entry& e, bool may_queue, int64_t uncached_tokens) {
  if (!may_queue) return route_outcome::busy;
  if (m.queue.full()) {
    ++m.rejected;
    return route_outcome::full;
  }
  e.queued = true;
  e.queued_at = now_s();
  m.queue.push({e.req.id, e.req.priority, e.queued_at, uncached_tokens});
  return route_outcome::queued;
}

// What the routing policy sees of w, its overlap with the request as the last overlaps() of its
// group's index and predictions left it in st.
template <class State>
worker_view view_of(const State& st, const worker_entry& w) {
  worker_view v;
  v.name = w.info.name;
  v.in_flight_tokens = w.in_flight_tokens;
  v.in_flight_requests = w.in_flight_requests;
  v.kv_blocks_total = w.info.kv_blocks_total;
  v.overlap_blocks = static_cast<int32_t>(std::max(st.overlap[w.slot], st.predicted_overlap[w.pslot]));
  v.active_blocks = w.active_blocks;
  v.queued_prefill_blocks = w.queued_prefill_blocks;
  return v;
}

// Disaggregated serving: the decode worker for a request routed to a prefill worker, by the
// model's policy over the decode workers (what each caches of the prompt, and its load);
// null when it should not cross (it ends at its first token, it is an embedding or constrained
// request) or no decode worker has room (the prefill worker then serves it whole).
worker_entry* pick_decode(self_ptr self, const request_entry& e, model_entry& m, const std::vector<uint64_t>& hashes) {
  auto& st = self->state;
  if (st.decode_candidates.empty() || e.req.params.max_tokens <= 1 || e.req.pool != pooling::none ||
      !e.req.constraint.empty())
    return nullptr;
  const auto P = static_cast<int64_t>(e.req.prompt.size());
  std::vector<worker_entry*> fit;
  std::vector<worker_view> views;
  for (worker_entry* w : st.decode_candidates) {
    hash_group& g = *w->group;
    const int32_t bs = g.block_size;
    const auto need = static_cast<int32_t>((P + e.req.params.max_tokens + bs - 1) / bs);
    if (saturated(st.opt, *w, need)) continue;
    g.index.overlaps(hashes, st.overlap);
    g.predicted.overlaps(hashes, st.predicted_overlap);
    views.push_back(view_of(st, *w));
    fit.push_back(w);
  }
  if (fit.empty()) return nullptr;
  route_request_view rv;
  rv.prompt = e.req.prompt;
  rv.max_tokens = e.req.params.max_tokens;
  rv.request_blocks = static_cast<int32_t>((P + fit[0]->group->block_size - 1) / fit[0]->group->block_size);
  return fit[std::min(fit.size() - 1, m.policy->choose(rv, views))];
}

// Routes the request: the policy picks among the live workers of its model that are not
// draining and it goes to that worker, unless every one is saturated.
route_outcome route(self_ptr self, request_entry& e, bool may_queue) {
  auto& st = self->state;
  const auto t0 = clock_type::now();
  st.candidates.clear();
  st.decode_candidates.clear();
  bool draining = false;
  for (auto& [name, w] : st.workers)
    if (w.alive && w.info.model == e.req.model) {
      if (w.draining) draining = true;
      else if (w.info.role == kv_transfer::kDecode) st.decode_candidates.push_back(&w);
      else st.candidates.push_back(&w);
    }
  // Disaggregated: prefill workers take the prompt and decode workers the rest; with no
  // prefill worker left, the decode workers serve requests whole.
  if (st.candidates.empty()) st.candidates.swap(st.decode_candidates);
  model_entry& m = model_of(self, e.req.model);
  if (st.candidates.empty()) {
    // Only draining workers, or none while an autoscaler sizes the model (it may have scaled
    // to zero): the request waits for a replica rather than fail, and counts as demand.
    if (!draining && !st.autoscalers.count(e.req.model)) return route_outcome::no_worker;
    return wait_in_queue(m, e, may_queue, static_cast<int64_t>(e.req.prompt.size()));
  }

  // One hash pass per group of workers (a model's workers share one group in practice).
  const auto P = static_cast<int64_t>(e.req.prompt.size());
  const hash_group* first_group = st.candidates[0]->group;
  const hash_group* walked = nullptr;
  std::vector<uint64_t> hashes, other;
  bool all_saturated = true;
  int64_t best_tokens = 0, min_uncached = P;
  st.views.clear();
  for (worker_entry* w : st.candidates) {
    hash_group& g = *w->group;
    if (walked != &g) {
      std::vector<uint64_t>& hs = &g == first_group ? hashes : other;
      if (hs.empty() || &g != first_group) hs = hashes_for(e, g);
      g.index.overlaps(hs, st.overlap);
      g.predicted.overlaps(hs, st.predicted_overlap);
      walked = &g;
    }
    const int32_t bs = g.block_size;
    const worker_view v = view_of(st, *w);
    st.views.push_back(v);
    // The engine reuses at most (P - 1) / B blocks: one token is always computed.
    const int64_t cacheable = std::min<int64_t>(v.overlap_blocks, (P - 1) / bs) * bs;
    best_tokens = std::max(best_tokens, cacheable);
    min_uncached = std::min(min_uncached, P - cacheable);
    all_saturated &= saturated(st.opt, *w, static_cast<int32_t>((P + bs - 1) / bs));
  }
  if (all_saturated) {
    observe(st.stats.decision_seconds, std::chrono::duration<double>(clock_type::now() - t0).count());
    return wait_in_queue(m, e, may_queue, min_uncached);
  }
  route_request_view rv;
  rv.prompt = e.req.prompt;
  rv.max_tokens = e.req.params.max_tokens;
  rv.request_blocks = static_cast<int32_t>((P + first_group->block_size - 1) / first_group->block_size);
  const size_t pick = std::min(st.views.size() - 1, m.policy->choose(rv, st.views));
  observe(st.stats.decision_seconds, std::chrono::duration<double>(clock_type::now() - t0).count());

  worker_entry& w = *st.candidates[pick];
  const int32_t bs = w.group->block_size;
  const worker_view& v = st.views[pick];
  e.share.worker = w.info.name;
  e.share.tokens = P + e.req.params.max_tokens;
  e.share.request_blocks = static_cast<int32_t>((P + bs - 1) / bs);
  e.share.uncached_blocks = e.share.request_blocks - std::min(v.overlap_blocks, e.share.request_blocks);
  e.share.hashes = w.group == first_group ? std::move(hashes) : hashes_for(e, *w.group);
  e.estimated_tokens = std::min<int64_t>(v.overlap_blocks, (P - 1) / bs) * bs;
  e.best_tokens = best_tokens;
  e.routed = true;
  e.queued = false;
  ++e.attempts;
  ++w.routed;
  add_load(w, e.share);
  generate_request out = e.req;
  out.router = caf::actor_cast<route_sink_actor>(self);
  e.dshare = {};
  if (worker_entry* d = pick_decode(self, e, m, w.group == first_group ? e.share.hashes : hashes_for(e, *first_group))) {
    // The prefill worker holds the prompt until the hand-off; the decode worker the whole.
    e.dshare.worker = d->info.name;
    e.dshare.tokens = e.share.tokens;
    e.dshare.request_blocks = e.share.request_blocks;
    e.share.tokens = P;
    w.in_flight_tokens -= e.req.params.max_tokens;
    add_load(*d, e.dshare);
    out.decode_to = caf::actor_cast<caf::actor>(d->handle);
    out.decode_name = d->info.name;
  }
  self->send(w.handle, submit_atom::value, std::move(out));
  tell_peers(self, e, route_decision::stage::routed);
  return route_outcome::sent;
}

// Tells the workers holding a routed request (its prefill and decode worker) to drop it.
void abort_on_workers(self_ptr self, const request_entry& e, const std::string& id) {
  for (const std::string* name : {&e.share.worker, &e.dshare.worker})
    if (auto w = self->state.workers.find(*name); !name->empty() && w != self->state.workers.end() && w->second.alive)
      self->send(w->second.handle, abort_atom::value, id);
}

void unroute(self_ptr self, request_entry& e) {
  if (!e.routed) return;
  if (!e.dshare.worker.empty()) {
    if (auto d = self->state.workers.find(e.dshare.worker); d != self->state.workers.end()) take_load(d->second, e.dshare);
    e.dshare = {};
  }
  auto it = self->state.workers.find(e.share.worker);
  if (it != self->state.workers.end()) take_load(it->second, e.share);
  tell_peers(self, e, route_decision::stage::finished);
  e.routed = false;
}

void forget(self_ptr self, const std::string& id) {
  auto& st = self->state;
  auto it = st.requests.find(id);
  if (it == st.requests.end()) return;
  if (it->second.queued) model_of(self, it->second.req.model).queue.remove(id);
  self->demonitor(it->second.req.reply_to.address());
  st.requests.erase(it);
}

void fail(self_ptr self, const std::string& id, int status, std::string message) {
  auto& st = self->state;
  auto it = st.requests.find(id);
  if (it == st.requests.end()) return;
  unroute(self, it->second);
  self->send(it->second.req.reply_to, failure_delta(id, status, std::move(message)));
  ++st.stats.failed;
  forget(self, id);
}

std::string saturated_message(self_ptr self, const std::string& model) {
  return fmt::format("Every worker of model {} is saturated and {} requests are already waiting; retry shortly.",
                     model, model_of(self, model).queue.size());
}

// Routes a new request, or fails it.
void route_or_fail(self_ptr self, request_entry& e) {
  auto& st = self->state;
  const std::string id = e.req.id;
  switch (route(self, e, true)) {
    case route_outcome::sent:
    case route_outcome::queued:
    case route_outcome::busy: return;
    case route_outcome::full: return fail(self, id, 429, saturated_message(self, e.req.model));
    case route_outcome::no_worker: break;
  }
  bool known = false;
  for (auto& [name, w] : st.workers) known |= w.info.model == e.req.model;
  fail(self, id, known ? 503 : 404,
       known ? fmt::format("no worker of model {} is available", e.req.model)
             : fmt::format("The model `{}` does not exist", e.req.model));
}

// Sends queued requests, in each queue's order, while some worker of their model has room.
void drain_queues(self_ptr self) {
  auto& st = self->state;
  for (auto& [model, m] : st.models) {
    while (const router_queue::item* front = m.queue.front()) {
      auto it = st.requests.find(front->id);
      if (it == st.requests.end()) {
        m.queue.pop();
        continue;
      }
      request_entry& e = it->second;
      const route_outcome o = route(self, e, false);
      if (o == route_outcome::busy) break;
      m.queue.remove(e.req.id);
      e.queued = false;
      if (o == route_outcome::sent) {
        observe(st.stats.queue_wait_seconds, now_s() - e.queued_at);
        continue;
      }
      fail(self, e.req.id, 503, fmt::format("no worker of model {} is available", model));
    }
  }
}

// ---- KV index upkeep ---------------------------------------------------------------------

void request_dump(self_ptr self, worker_entry& w);

// Applies a worker's events in order; a gap (or an unknown kind) asks for a dump.
void apply_events(self_ptr self, worker_entry& w, const std::vector<wire_kv_event>& events, size_t from = 0) {
  auto& st = self->state;
  for (size_t i = from; i < events.size(); ++i) {
    const wire_kv_event& e = events[i];
    if (w.syncing) {
      w.held.push_back(e);
      continue;
    }
    switch (w.group->index.apply(w.slot, e.event_id, e.type, e.hashes)) {
      case kv_index::apply_outcome::applied: ++st.stats.kv_events_applied; break;
      case kv_index::apply_outcome::stale: break;
      case kv_index::apply_outcome::gap:
      case kv_index::apply_outcome::out_of_sync:
        ++w.gaps;
        request_dump(self, w);
        break;
    }
  }
}

// The dump or replay arrived: the events held meanwhile follow it.
void synced(self_ptr self, worker_entry& w) {
  w.syncing = false;
  std::vector<wire_kv_event> held;
  held.swap(w.held);
  apply_events(self, w, held);
}

void request_dump(self_ptr self, worker_entry& w) {
  if (w.syncing) return;
  w.syncing = true;
  w.group->index.mark_out_of_sync(w.slot);
  const std::string name = w.info.name;
  const uint64_t instance = w.info.instance;
  self->request(w.handle, std::chrono::seconds(60), dump_atom::value)
      .then(
          [=](kv_dump& d) {
            auto it = self->state.workers.find(name);
            if (it == self->state.workers.end() || !it->second.alive || it->second.info.instance != instance) return;
            worker_entry& x = it->second;
            x.group->index.replace(x.slot, d.hashes, d.next_event);
            ++x.dumps;
            synced(self, x);
          },
          [=](caf::error& err) {
            auto it = self->state.workers.find(name);
            if (it == self->state.workers.end() || !it->second.alive || it->second.info.instance != instance) return;
            // The worker did not answer (it is going away, or overloaded): its view stays out
            // of sync, and the next event asks again.
            it->second.syncing = false;
            it->second.held.clear();
            log_line(self, fmt::format("no KV dump from {}: {}", name, self->system().render(err)));
          });
}

// After a restart from a snapshot: the worker's events since the snapshot, from its
// publisher; a dump when the publisher no longer holds them all.
void request_replay(self_ptr self, worker_entry& w, uint64_t from) {
  w.syncing = true;
  const std::string name = w.info.name;
  const uint64_t instance = w.info.instance;
  self->request(w.publisher, std::chrono::seconds(60), replay_atom::value, from)
      .then(
          [=](kv_events_msg& msg) {
            auto it = self->state.workers.find(name);
            if (it == self->state.workers.end() || !it->second.alive || it->second.info.instance != instance) return;
            worker_entry& x = it->second;
            ++x.replays;
            x.syncing = false;
            apply_events(self, x, msg.events);
            x.events += msg.events.size();
            if (!x.syncing) synced(self, x);
          },
          [=](caf::error&) {
            auto it = self->state.workers.find(name);
            if (it == self->state.workers.end() || !it->second.alive || it->second.info.instance != instance) return;
            it->second.syncing = false;
            request_dump(self, it->second);
          });
}

hash_group& group_for(self_ptr self, const worker_info& info) {
  auto& st = self->state;
  auto key = std::make_tuple(info.model, info.kv_block_size, info.hash_salt);
  auto it = st.groups.find(key);
  if (it == st.groups.end())
    it = st.groups.emplace(key, std::make_unique<hash_group>(info.model, info.kv_block_size, info.hash_salt,
                                                             st.opt.max_index_entries))
             .first;
  return *it->second;
}

void worker_lost(self_ptr self, worker_entry& w) {
  auto& st = self->state;
  w.alive = false;
  w.group->index.remove_worker(w.slot);
  w.group->predicted.remove_worker(w.pslot);
  w.held.clear();
  w.syncing = false;
  for (auto it = st.foreign.begin(); it != st.foreign.end();)
    it = it->second.worker == w.info.name ? st.foreign.erase(it) : std::next(it);
  std::vector<std::string> ids;
  for (auto& [id, e] : st.requests)
    if (e.routed && (e.share.worker == w.info.name || e.dshare.worker == w.info.name)) ids.push_back(id);
  for (const std::string& id : ids) {
    request_entry& e = st.requests.at(id);
    if (e.dshare.worker == w.info.name) {
      // Its decode worker is lost before the hand-off: the prefill worker drops it too.
      take_load(w, e.dshare);
      e.dshare = {};
      if (auto p = st.workers.find(e.share.worker); p != st.workers.end()) {
        if (p->second.alive) self->send(p->second.handle, abort_atom::value, id);
        take_load(p->second, e.share);
      }
    } else {
      take_load(w, e.share);
      if (!e.dshare.worker.empty()) {
        if (auto d = st.workers.find(e.dshare.worker); d != st.workers.end()) {
          if (d->second.alive) self->send(d->second.handle, abort_atom::value, id);
          take_load(d->second, e.dshare);
        }
        e.dshare = {};
      }
    }
    tell_peers(self, e, route_decision::stage::finished);
    e.routed = false;
    if (!e.streamed && e.attempts < 3) {
      const auto outcome = route(self, e, true);
      if (outcome == route_outcome::sent || outcome == route_outcome::queued) {
        ++st.stats.retried;
        continue;
      }
    }
    fail(self, id, 503,
         e.streamed ? fmt::format("the worker serving this request ({}) was lost after it had started "
                                  "streaming; the request cannot be resumed", w.info.name)
                    : fmt::format("the worker serving this request ({}) was lost and no other worker of "
                                  "model {} is available", w.info.name, e.req.model));
  }
  w.in_flight_tokens = 0;
  w.in_flight_requests = 0;
  w.active_blocks = 0;
  w.queued_prefill_blocks = 0;
}

void register_worker(self_ptr self, const worker_actor& handle, const publisher_actor& pub, const worker_info& info,
                     bool from_node) {
  auto& st = self->state;
  if (from_node)  // the replicas route to it too
    for (const auto& p : st.peers) self->send(p, peer_atom::value, handle, pub, info);
  if (auto it = st.workers.find(info.name); it != st.workers.end()) {
    if (it->second.alive && it->second.handle == handle) return;  // registered already
    if (it->second.alive) worker_lost(self, it->second);  // the same name, started anew
    st.workers.erase(it);
  }
  worker_entry& w = st.workers[info.name];
  w.handle = handle;
  w.publisher = pub;
  w.info = info;
  w.group = &group_for(self, info);
  w.slot = w.group->index.add_worker(0);
  w.pslot = w.group->predicted.add_worker(0);
  w.syncing = true;  // events wait until the view is current
  self->monitor(handle);
  const std::string name = info.name;
  const uint64_t instance = info.instance;
  self->request(pub, std::chrono::seconds(30), subscribe_atom::value, caf::actor_cast<kv_sink_actor>(self))
      .then(
          [=](uint64_t) {
            auto it = self->state.workers.find(name);
            if (it == self->state.workers.end() || !it->second.alive || it->second.info.instance != instance) return;
            worker_entry& x = it->second;
            auto snap = self->state.restored.find(name);
            if (snap != self->state.restored.end() && snap->second.instance == instance &&
                snap->second.model == x.info.model && snap->second.block_size == x.info.kv_block_size &&
                snap->second.salt == x.info.hash_salt) {
              x.group->index.replace(x.slot, snap->second.hashes, snap->second.next_event);
              const uint64_t from = snap->second.next_event;
              self->state.restored.erase(snap);
              request_replay(self, x, from);
            } else {
              if (snap != self->state.restored.end()) self->state.restored.erase(snap);
              x.syncing = false;
              request_dump(self, x);
            }
          },
          [=](caf::error& err) {
            log_line(self, fmt::format("cannot subscribe to the KV events of {}: {}", name, self->system().render(err)));
          });
  model_of(self, info.model);
  drain_queues(self);
}

// ---- stats and snapshots -----------------------------------------------------------------

router_model_stats model_stats(self_ptr self, const std::string& model, model_entry& m) {
  router_model_stats s;
  s.model = model;
  s.policy = m.policy->name();
  s.queue_policy = m.cfg.queue_policy == queue_order::wspt ? "wspt" : "fcfs";
  s.overlap_score_weight = m.cfg.overlap_score_weight;
  s.temperature = m.cfg.temperature;
  s.window_s = self->state.opt.metrics_window_s;
  const auto cutoff = static_cast<int64_t>(now_s() - s.window_s);
  while (!m.window.empty() && m.window.front().second <= cutoff) m.window.pop_front();
  for (const window_bucket& b : m.window) {
    s.prompt_tokens += b.prompt;
    s.cached_tokens += b.cached;
    s.estimated_cached_tokens += b.estimated;
    s.best_prefix_tokens += b.best;
  }
  s.queued = static_cast<int64_t>(m.queue.size());
  s.queue_capacity = static_cast<int64_t>(m.queue.capacity());
  s.rejected = m.rejected;
  return s;
}

std::string snapshot_bytes(self_ptr self) {
  auto& st = self->state;
  kv_snapshot s;
  s.router = st.opt.name;
  for (auto& [key, g] : st.groups) {
    auto by_slot = g->index.hashes_by_worker();
    for (auto& [name, w] : st.workers) {
      if (!w.alive || w.group != g.get() || w.syncing || !g->index.in_sync(w.slot)) continue;
      kv_snapshot::worker x;
      x.name = name;
      x.model = w.info.model;
      x.instance = w.info.instance;
      x.salt = w.info.hash_salt;
      x.block_size = w.info.kv_block_size;
      x.next_event = g->index.next_event(w.slot);
      x.hashes = std::move(by_slot[w.slot]);
      s.workers.push_back(std::move(x));
    }
  }
  // Workers restored from the last snapshot that have not come back yet stay in it.
  for (auto& [name, w] : st.restored) s.workers.push_back(w);
  return encode(s);
}

// ---- the actor ---------------------------------------------------------------------------

router_actor::behavior_type router_fn(self_ptr self, std::string node, router_options opt) {
  auto& st0 = self->state;
  st0.opt = std::move(opt);
  if (st0.opt.name.empty()) st0.opt.name = node + "/router";
  st0.seed = st0.opt.seed ? st0.opt.seed : static_cast<uint64_t>(clock_type::now().time_since_epoch().count());
  st0.meter = {node, st0.opt.name, "router", 0, 0};
  st0.stats.decision_seconds = make_histogram(decision_seconds_bounds());
  st0.stats.queue_wait_seconds = make_histogram(queue_wait_seconds_bounds());
  if (st0.opt.restore) {
    for (auto& w : st0.opt.restore->workers) st0.restored[w.name] = std::move(w);
    st0.opt.restore.reset();
  }
  self->set_down_handler([=](const caf::down_msg& m) {
    auto& st = self->state;
    for (auto& [name, w] : st.workers)
      if (w.alive && w.handle.address() == m.source) {
        const bool drained = w.draining && w.in_flight_requests == 0;
        worker_lost(self, w);
        w.stopped = drained;
        if (drained) log_line(self, fmt::format("{} stopped after its drain", name));
        drain_queues(self);
        return;
      }
    for (size_t i = 0; i < st.agents.size();)
      if (st.agents[i].address() == m.source) {
        st.agents.erase(st.agents.begin() + static_cast<ptrdiff_t>(i));
        st.agent_nodes.erase(st.agent_nodes.begin() + static_cast<ptrdiff_t>(i));
      } else {
        ++i;
      }
    auto& peers = st.peers;
    const size_t n_peers = peers.size();
    peers.erase(std::remove_if(peers.begin(), peers.end(), [&](const router_peer_actor& p) { return p.address() == m.source; }),
                peers.end());
    if (peers.size() != n_peers) {
      // A replica is gone: its requests' load goes with it (their workers still finish them).
      for (auto& [id, s] : st.foreign)
        if (auto w = st.workers.find(s.worker); w != st.workers.end()) take_load(w->second, s);
      st.foreign.clear();
      drain_queues(self);
      return;
    }
    // A stream actor gone without a word: treat it as an abort.
    for (auto it = st.requests.begin(); it != st.requests.end(); ++it)
      if (it->second.req.reply_to.address() == m.source) {
        request_entry& e = it->second;
        if (e.routed) abort_on_workers(self, e, it->first);
        unroute(self, e);
        forget(self, it->first);
        drain_queues(self);
        return;
      }
  });
  return {
      [=](kv_events_atom, const kv_events_msg& msg) {
        metered g(self->state.meter);
        auto it = self->state.workers.find(msg.worker);
        if (it == self->state.workers.end() || !it->second.alive) return;
        it->second.events += msg.events.size();
        apply_events(self, it->second, msg.events);
      },
      [=](submit_atom, generate_request& r) {
        metered g(self->state.meter);
        auto& st = self->state;
        ++st.stats.requests;
        const std::string id = r.id;
        if (st.requests.count(id)) {
          self->send(r.reply_to, failure_delta(id, 400, "request id " + id + " is already in flight"));
          return;
        }
        request_entry& e = st.requests[id];
        e.req = std::move(r);
        self->monitor(e.req.reply_to);
        route_or_fail(self, e);
      },
      [=](abort_atom, const std::string& id) {
        metered g(self->state.meter);
        auto& st = self->state;
        auto it = st.requests.find(id);
        if (it == st.requests.end()) return;
        ++st.stats.aborted;
        request_entry& e = it->second;
        if (e.routed) abort_on_workers(self, e, id);
        unroute(self, e);
        forget(self, id);
        drain_queues(self);
      },
      [=](first_token_atom, const std::string& id, const std::string& worker) {
        metered g(self->state.meter);
        auto& st = self->state;
        auto it = st.requests.find(id);
        if (it == st.requests.end() || !it->second.routed || it->second.share.worker != worker) return;
        request_entry& e = it->second;
        e.streamed = true;
        if (auto w = st.workers.find(worker); w != st.workers.end()) prefilled(w->second, e.share);
        tell_peers(self, e, route_decision::stage::prefilled);
        drain_queues(self);
      },
      [=](done_atom, const std::string& id, const std::string& worker, int32_t prompt_tokens, int32_t cached_tokens) {
        metered g(self->state.meter);
        auto& st = self->state;
        auto it = st.requests.find(id);
        if (it == st.requests.end() || !it->second.routed || it->second.share.worker != worker) return;
        request_entry& e = it->second;
        if (prompt_tokens > 0) {
          st.stats.prompt_tokens += prompt_tokens;
          st.stats.cached_tokens += cached_tokens;
          if (auto w = st.workers.find(worker); w != st.workers.end()) {
            w->second.prompt_tokens += prompt_tokens;
            w->second.cached_tokens += cached_tokens;
          }
          model_entry& m = model_of(self, e.req.model);
          const auto sec = static_cast<int64_t>(now_s());
          if (m.window.empty() || m.window.back().second != sec) m.window.push_back({sec, 0, 0, 0, 0});
          window_bucket& b = m.window.back();
          b.prompt += prompt_tokens;
          b.cached += cached_tokens;
          b.estimated += std::min<int64_t>(e.estimated_tokens, prompt_tokens);
          b.best += std::min<int64_t>(e.best_tokens, prompt_tokens);
          while (m.window.size() > 1 && m.window.front().second <= sec - static_cast<int64_t>(st.opt.metrics_window_s))
            m.window.pop_front();
        }
        unroute(self, e);
        forget(self, id);
        drain_queues(self);
      },
      [=](handoff_atom, const std::string& id, const std::string& from, const std::string& to) {
        metered g(self->state.meter);
        auto& st = self->state;
        auto it = st.requests.find(id);
        if (it == st.requests.end() || !it->second.routed || it->second.share.worker != from ||
            it->second.dshare.worker != to)
          return;
        // The decode worker holds the request now: the prefill worker's share ends.
        request_entry& e = it->second;
        if (auto w = st.workers.find(from); w != st.workers.end()) take_load(w->second, e.share);
        tell_peers(self, e, route_decision::stage::finished);
        e.share = std::move(e.dshare);
        e.dshare = {};
        drain_queues(self);
      },
      [=](peer_atom, const route_decision& d) {
        metered g(self->state.meter);
        auto& st = self->state;
        auto w = st.workers.find(d.worker);
        switch (d.at) {
          case route_decision::stage::routed: {
            load_share s{d.worker, d.tokens, d.request_blocks, d.uncached_blocks, d.hashes};
            if (w != st.workers.end() && w->second.alive) {
              add_load(w->second, s);
              st.foreign[d.id] = std::move(s);
            }
            return;
          }
          case route_decision::stage::prefilled:
            if (auto f = st.foreign.find(d.id); f != st.foreign.end() && w != st.workers.end()) prefilled(w->second, f->second);
            return;
          case route_decision::stage::finished:
            if (auto f = st.foreign.find(d.id); f != st.foreign.end()) {
              if (w != st.workers.end()) take_load(w->second, f->second);
              st.foreign.erase(f);
            }
            drain_queues(self);
            return;
        }
      },
      [=](register_atom, const worker_actor& w, const publisher_actor& pub, const worker_info& info) {
        metered g(self->state.meter);
        register_worker(self, w, pub, info, true);
        return true;
      },
      [=](peer_atom, const worker_actor& w, const publisher_actor& pub, const worker_info& info) {
        metered g(self->state.meter);
        register_worker(self, w, pub, info, false);
      },
      [=](register_atom, const node_agent_actor& agent, const std::string& agent_node) {
        metered g(self->state.meter);
        auto& agents = self->state.agents;
        if (std::find(agents.begin(), agents.end(), agent) == agents.end()) {
          agents.push_back(agent);
          self->state.agent_nodes.push_back(agent_node);
          self->monitor(agent);
        }
        return true;
      },
      [=](agents_atom) {
        return caf::make_result(self->state.agents, self->state.agent_nodes);
      },
      [=](register_atom, const router_peer_actor& peer) {
        metered g(self->state.meter);
        auto& peers = self->state.peers;
        if (peer.address() != self->address() && std::find(peers.begin(), peers.end(), peer) == peers.end()) {
          peers.push_back(peer);
          self->monitor(peer);
          // It learns the workers registered here so far.
          for (auto& [name, w] : self->state.workers)
            if (w.alive) self->send(peer, peer_atom::value, w.handle, w.publisher, w.info);
        }
        return true;
      },
      [=](configure_atom, const routing_config& c) {
        metered g(self->state.meter);
        auto& st = self->state;
        model_entry& m = model_of(self, c.model);
        m.cfg = c;
        m.policy = make_policy(st.opt.kind, {c.overlap_score_weight, c.temperature, st.seed + 7919});
        m.queue.set_order(c.queue_policy);
        return true;
      },
      [=](list_atom) {
        std::vector<worker_info> out;
        for (auto& [name, w] : self->state.workers)
          if (w.alive) out.push_back(w.info);
        return out;
      },
      [=](stats_atom) {
        auto& st = self->state;
        router_stats s = st.stats;
        s.router = st.opt.name;
        s.peers = static_cast<int64_t>(st.peers.size());
        for (auto& [key, g] : st.groups) {
          s.kv_index_entries += g->index.n_entries();
          s.kv_index_bytes += g->index.memory_bytes() + g->predicted.memory_bytes();
          s.kv_index_evicted += g->index.n_evicted();
        }
        for (auto& [model, m] : st.models) s.model_stats.push_back(model_stats(self, model, m));
        for (auto& [name, w] : st.workers) {
          s.workers.push_back(name);
          s.models.push_back(w.info.model);
          s.alive.push_back(w.alive ? 1 : 0);
          s.in_sync.push_back(w.alive && !w.syncing && w.group->index.in_sync(w.slot) ? 1 : 0);
          s.in_flight_tokens.push_back(w.in_flight_tokens);
          s.in_flight_requests.push_back(w.in_flight_requests);
          s.active_blocks.push_back(w.active_blocks);
          s.queued_prefill_blocks.push_back(w.queued_prefill_blocks);
          s.routed_requests.push_back(w.routed);
          s.worker_prompt_tokens.push_back(w.prompt_tokens);
          s.worker_cached_tokens.push_back(w.cached_tokens);
          s.kv_events.push_back(w.events);
          s.kv_event_gaps.push_back(w.gaps);
          s.kv_dumps.push_back(w.dumps);
          s.kv_replays.push_back(w.replays);
          s.kv_cached_blocks.push_back(w.alive ? w.group->index.n_entries(w.slot) : 0);
          s.status.push_back(w.alive ? (w.draining ? "draining" : "active") : (w.stopped ? "stopped" : "lost"));
          s.roles.push_back(w.info.role);
        }
        for (auto& [model, a] : st.autoscalers) s.autoscalers.push_back(a);
        return s;
      },
      [=](snapshot_atom) {
        metered g(self->state.meter);
        return snapshot_bytes(self);
      },
      [=](load_atom, const std::string& model) {
        metered g(self->state.meter);
        auto& st = self->state;
        group_load l;
        l.model = model;
        for (auto& [name, w] : st.workers) {
          if (!w.alive || w.info.model != model) continue;
          l.in_flight_tokens += w.in_flight_tokens;
          l.workers.push_back(name);
          l.nodes.push_back(w.info.node);
          l.draining.push_back(w.draining ? 1 : 0);
          l.in_flight_requests.push_back(w.in_flight_requests);
          l.roles.push_back(w.info.role);
          l.units.push_back(w.info.unit);
          l.worker_tokens.push_back(w.in_flight_tokens);
        }
        // Requests waiting for a worker were admitted too: they are demand.
        for (auto& [id, e] : st.requests)
          if (e.queued && e.req.model == model)
            l.queued_tokens += static_cast<int64_t>(e.req.prompt.size()) + e.req.params.max_tokens;
        l.in_flight_tokens += l.queued_tokens;
        return l;
      },
      [=](drain_atom, const std::string& worker) {
        metered g(self->state.meter);
        auto it = self->state.workers.find(worker);
        if (it == self->state.workers.end() || !it->second.alive) return false;
        if (!it->second.draining) log_line(self, fmt::format("draining {}", worker));
        it->second.draining = true;
        return true;
      },
      [=](autoscale_atom, autoscaler_report& r) {
        metered g(self->state.meter);
        std::string model = r.model;
        if (r.retired) self->state.autoscalers.erase(model);
        else self->state.autoscalers[model] = std::move(r);
      },
      [=](metrics_atom) -> caf::result<std::vector<actor_stats>> {
        auto rp = self->make_response_promise<std::vector<actor_stats>>();
        auto all = std::make_shared<std::vector<actor_stats>>();
        all->push_back(make_stats(self->state.meter, self->mailbox().size()));
        auto pending = std::make_shared<size_t>(self->state.agents.size());
        if (*pending == 0) {
          rp.deliver(*all);
          return rp;
        }
        for (auto& a : self->state.agents)
          self->request(a, std::chrono::seconds(10), metrics_atom::value)
              .then(
                  [=](std::vector<actor_stats>& v) mutable {
                    all->insert(all->end(), v.begin(), v.end());
                    if (--*pending == 0) rp.deliver(*all);
                  },
                  [=](caf::error&) mutable {
                    if (--*pending == 0) rp.deliver(*all);
                  });
        return rp;
      },
  };
}

}  // namespace

void merge_router_stats(router_stats& into, const router_stats& r) {
  into.requests += r.requests;
  into.retried += r.retried;
  into.failed += r.failed;
  into.aborted += r.aborted;
  into.prompt_tokens += r.prompt_tokens;
  into.cached_tokens += r.cached_tokens;
  into.kv_events_applied += r.kv_events_applied;
  for (auto [to, from] : {std::pair{&into.decision_seconds, &r.decision_seconds}, {&into.queue_wait_seconds, &r.queue_wait_seconds}}) {
    if (to->counts.size() != from->counts.size()) continue;
    for (size_t i = 0; i < to->counts.size(); ++i) to->counts[i] += from->counts[i];
    to->sum += from->sum;
    to->count += from->count;
  }
  for (const router_model_stats& m : r.model_stats) {
    auto it = std::find_if(into.model_stats.begin(), into.model_stats.end(), [&](auto& x) { return x.model == m.model; });
    if (it == into.model_stats.end()) {
      into.model_stats.push_back(m);
      continue;
    }
    it->prompt_tokens += m.prompt_tokens;
    it->cached_tokens += m.cached_tokens;
    it->estimated_cached_tokens += m.estimated_cached_tokens;
    it->best_prefix_tokens += m.best_prefix_tokens;
    it->queued += m.queued;
    it->rejected += m.rejected;
  }
  for (size_t j = 0; j < r.workers.size(); ++j) {
    auto it = std::find(into.workers.begin(), into.workers.end(), r.workers[j]);
    if (it == into.workers.end()) continue;
    const auto i = static_cast<size_t>(it - into.workers.begin());
    into.routed_requests[i] += r.routed_requests[j];
    into.worker_prompt_tokens[i] += r.worker_prompt_tokens[j];
    into.worker_cached_tokens[i] += r.worker_cached_tokens[j];
  }
}

router_actor spawn_router(caf::actor_system& sys, std::string node, router_options options) {
  return sys.spawn(router_fn, std::move(node), std::move(options));
}

}  // namespace troupe
