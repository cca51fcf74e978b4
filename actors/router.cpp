#include "actors/router.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "actors/routing_policy.hpp"
#include "runtime/block_hash.hpp"

namespace troupe {
namespace {

struct worker_entry {
  worker_actor handle;
  publisher_actor publisher;
  worker_info info;
  bool alive = true;
  int64_t in_flight_tokens = 0;
  int32_t in_flight_requests = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  uint64_t events = 0;
  uint64_t next_event = 0;
  uint64_t gaps = 0;
  std::unordered_set<uint64_t> cached;  // block hashes, replayed from KV events
};

struct request_entry {
  generate_request req;
  std::string worker;
  bool streamed = false;
  int64_t cost = 0;
  int attempts = 0;
};

struct router_state {
  static inline const char* name = "troupe.router";
  std::shared_ptr<routing_policy> policy;
  std::map<std::string, worker_entry> workers;
  std::unordered_map<std::string, request_entry> requests;
  std::vector<node_agent_actor> agents;
  router_stats stats;
  actor_meter meter;
};

using self_ptr = router_actor::stateful_pointer<router_state>;

// How many leading blocks of the prompt a worker has cached (by the hashes it published).
int64_t cached_prefix_tokens(const worker_entry& w, const std::vector<int32_t>& prompt) {
  if (w.cached.empty() || w.info.kv_block_size <= 0) return 0;
  auto hashes = hash_full_blocks(prompt, w.info.kv_block_size, w.info.hash_salt);
  size_t n = 0;
  while (n < hashes.size() && w.cached.count(hashes[n].value)) ++n;
  return static_cast<int64_t>(n) * w.info.kv_block_size;
}

// Sends the request to a live worker of its model; false when there is none.
bool dispatch(self_ptr self, request_entry& e) {
  auto& st = self->state;
  std::vector<worker_view> views;
  std::vector<worker_entry*> candidates;
  for (auto& [name, w] : st.workers)
    if (w.alive && w.info.model == e.req.model) {
      views.push_back({name, w.in_flight_tokens, w.in_flight_requests, w.info.kv_blocks_total});
      candidates.push_back(&w);
    }
  if (candidates.empty()) return false;
  const size_t pick = st.policy->choose({e.req.prompt, e.req.params.max_tokens}, views);
  worker_entry& w = *candidates[std::min(pick, candidates.size() - 1)];
  int64_t best = 0;
  for (worker_entry* c : candidates) best = std::max(best, cached_prefix_tokens(*c, e.req.prompt));
  st.stats.best_prefix_tokens += best;
  st.stats.routed_prefix_tokens += cached_prefix_tokens(w, e.req.prompt);
  st.stats.routed_prompt_tokens += static_cast<int64_t>(e.req.prompt.size());
  e.worker = w.info.name;
  e.cost = static_cast<int64_t>(e.req.prompt.size()) + e.req.params.max_tokens;
  ++e.attempts;
  w.in_flight_tokens += e.cost;
  ++w.in_flight_requests;
  self->send(w.handle, submit_atom::value, e.req);
  return true;
}

void release(self_ptr self, request_entry& e) {
  auto it = self->state.workers.find(e.worker);
  if (it == self->state.workers.end()) return;
  it->second.in_flight_tokens -= e.cost;
  --it->second.in_flight_requests;
}

void fail(self_ptr self, const std::string& id, int status, std::string message) {
  auto& st = self->state;
  auto it = st.requests.find(id);
  if (it == st.requests.end()) return;
  self->send(it->second.req.reply_to, failure_delta(id, status, std::move(message)));
  self->demonitor(it->second.req.reply_to.address());
  ++st.stats.failed;
  st.requests.erase(it);
}

void worker_lost(self_ptr self, worker_entry& w) {
  auto& st = self->state;
  w.alive = false;
  w.cached.clear();
  std::vector<std::string> ids;
  for (auto& [id, e] : st.requests)
    if (e.worker == w.info.name) ids.push_back(id);
  for (const std::string& id : ids) {
    request_entry& e = st.requests.at(id);
    release(self, e);
    e.worker.clear();
    if (!e.streamed && e.attempts < 3 && dispatch(self, e)) {
      ++st.stats.retried;
      continue;
    }
    fail(self, id, 503,
         e.streamed ? fmt::format("the worker serving this request ({}) was lost after it had started "
                                  "streaming; the request cannot be resumed", w.info.name)
                    : fmt::format("the worker serving this request ({}) was lost and no other worker of "
                                  "model {} is available", w.info.name, e.req.model));
  }
}

router_actor::behavior_type router_fn(self_ptr self, std::string node, std::shared_ptr<routing_policy> policy) {
  self->state.policy = policy ? std::move(policy) : std::shared_ptr<routing_policy>(make_least_loaded_policy());
  self->state.meter = {node, node + "/router", "router", 0, 0};
  self->set_down_handler([=](const caf::down_msg& m) {
    auto& st = self->state;
    for (auto& [name, w] : st.workers)
      if (w.alive && w.handle.address() == m.source) {
        worker_lost(self, w);
        return;
      }
    auto& agents = st.agents;
    agents.erase(std::remove_if(agents.begin(), agents.end(), [&](const node_agent_actor& a) { return a.address() == m.source; }),
                 agents.end());
    // A stream actor gone without a word: treat it as an abort.
    for (auto it = st.requests.begin(); it != st.requests.end(); ++it)
      if (it->second.req.reply_to.address() == m.source) {
        release(self, it->second);
        if (auto w = st.workers.find(it->second.worker); w != st.workers.end() && w->second.alive)
          self->send(w->second.handle, abort_atom::value, it->first);
        st.requests.erase(it);
        return;
      }
  });
  return {
      [=](kv_events_atom, const kv_events_msg& msg) {
        metered g(self->state.meter);
        auto it = self->state.workers.find(msg.worker);
        if (it == self->state.workers.end() || !it->second.alive) return;
        worker_entry& w = it->second;
        for (const wire_kv_event& e : msg.events) {
          ++w.events;
          if (e.event_id != w.next_event) w.gaps += e.event_id > w.next_event ? e.event_id - w.next_event : 1;
          w.next_event = e.event_id + 1;
          switch (e.type) {
            case 0: w.cached.insert(e.hashes.begin(), e.hashes.end()); break;
            case 1:
              for (uint64_t h : e.hashes) w.cached.erase(h);
              break;
            default: w.cached.clear(); break;
          }
        }
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
        bool known = false;
        for (auto& [name, w] : st.workers) known |= w.info.model == r.model;
        request_entry& e = st.requests[id];
        e.req = std::move(r);
        self->monitor(e.req.reply_to);
        if (!dispatch(self, e))
          fail(self, id, known ? 503 : 404,
               known ? fmt::format("no worker of model {} is available", e.req.model)
                     : fmt::format("The model `{}` does not exist", e.req.model));
      },
      [=](abort_atom, const std::string& id) {
        metered g(self->state.meter);
        auto& st = self->state;
        auto it = st.requests.find(id);
        if (it == st.requests.end()) return;
        ++st.stats.aborted;
        release(self, it->second);
        if (auto w = st.workers.find(it->second.worker); w != st.workers.end() && w->second.alive)
          self->send(w->second.handle, abort_atom::value, id);
        self->demonitor(it->second.req.reply_to.address());
        st.requests.erase(it);
      },
      [=](first_token_atom, const std::string& id) {
        metered g(self->state.meter);
        if (auto it = self->state.requests.find(id); it != self->state.requests.end()) it->second.streamed = true;
      },
      [=](done_atom, const std::string& id, int32_t prompt_tokens, int32_t cached_tokens) {
        metered g(self->state.meter);
        auto& st = self->state;
        auto it = st.requests.find(id);
        if (it == st.requests.end()) return;
        release(self, it->second);
        st.stats.prompt_tokens += prompt_tokens;
        st.stats.cached_tokens += cached_tokens;
        if (auto w = st.workers.find(it->second.worker); w != st.workers.end()) {
          w->second.prompt_tokens += prompt_tokens;
          w->second.cached_tokens += cached_tokens;
        }
        self->demonitor(it->second.req.reply_to.address());
        st.requests.erase(it);
      },
      [=](register_atom, const worker_actor& w, const publisher_actor& pub, const worker_info& info) {
        metered g(self->state.meter);
        auto& st = self->state;
        worker_entry e;
        e.handle = w;
        e.publisher = pub;
        e.info = info;
        st.workers[info.name] = std::move(e);
        self->monitor(w);
        self->send(pub, subscribe_atom::value, caf::actor_cast<kv_sink_actor>(self));
        return true;
      },
      [=](register_atom, const node_agent_actor& agent, const std::string&) {
        metered g(self->state.meter);
        auto& agents = self->state.agents;
        if (std::find(agents.begin(), agents.end(), agent) == agents.end()) {
          agents.push_back(agent);
          self->monitor(agent);
        }
        return true;
      },
      [=](list_atom) {
        std::vector<worker_info> out;
        for (auto& [name, w] : self->state.workers)
          if (w.alive) out.push_back(w.info);
        return out;
      },
      [=](stats_atom) {
        router_stats s = self->state.stats;
        for (auto& [name, w] : self->state.workers) {
          s.workers.push_back(name);
          s.models.push_back(w.info.model);
          s.alive.push_back(w.alive ? 1 : 0);
          s.in_flight_tokens.push_back(w.in_flight_tokens);
          s.worker_prompt_tokens.push_back(w.prompt_tokens);
          s.worker_cached_tokens.push_back(w.cached_tokens);
          s.kv_events.push_back(w.events);
          s.kv_event_gaps.push_back(w.gaps);
          s.kv_cached_blocks.push_back(w.cached.size());
        }
        return s;
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

router_actor spawn_router(caf::actor_system& sys, std::string node, std::shared_ptr<routing_policy> policy) {
  return sys.spawn(router_fn, std::move(node), std::move(policy));
}

}  // namespace troupe
