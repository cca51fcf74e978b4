#include "actors/autoscaler.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "config/settings.hpp"

namespace troupe {

autoscale_settings to_rule_settings(const config::autoscaling_settings& a) {
  autoscale_settings s;
  s.target_in_flight_tokens = a.target_in_flight_tokens;
  s.min_replica = a.min_replica;
  s.max_replica = a.max_replica;
  s.scale_up_delay_s = static_cast<double>(a.scale_up_delay);
  s.scale_down_delay_s = static_cast<double>(a.scale_down_delay);
  s.window_s = static_cast<double>(a.autoscaling_window);
  return s;
}

namespace {

using namespace std::chrono_literals;

struct autoscaler_state {
  static inline const char* name = "troupe.autoscaler";
  autoscaler_options opt;
  std::string me;  // "<node>/autoscaler/<model>"
  std::unique_ptr<autoscale_rule> rule;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  std::map<std::string, int64_t> starting_on;  // replicas being started, by node
  int64_t starting() const {
    int64_t n = 0;
    for (const auto& [node, k] : starting_on) n += k;
    return n;
  }
  std::set<std::string> stopping;              // drained workers whose agent was asked to stop them
  // Disaggregated serving: units being started (each counts once in starting_on), the next id.
  std::set<int32_t> starting_units;
  std::map<int32_t, int64_t> unit_pending;  // of those, workers not registered (nor failed) yet
  int32_t next_unit = 0;
  bool disaggregated() const { return opt.prefill_per_unit > 0 && opt.decode_per_unit > 0; }
  autoscaler_report report;
  bool retired = false;  // its deployment is gone: no more decisions; replicas starting stop
};

using self_ptr = autoscaler_actor::stateful_pointer<autoscaler_state>;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// An entry of the decision log (also on stderr, as the router logs its own changes).
void note(self_ptr self, const std::string& line) {
  auto& st = self->state;
  autoscaler_report& r = st.report;
  r.log_times.push_back(unix_now());
  r.log.push_back(line);
  while (r.log.size() > st.opt.log_size) {
    r.log.erase(r.log.begin());
    r.log_times.erase(r.log_times.begin());
  }
  std::fprintf(stderr, "troupe: %s: %s\n", st.me.c_str(), line.c_str());
}

const node_agent_actor* agent_of(self_ptr self, const std::string& node) {
  for (const auto& [name, a] : self->state.opt.agents)
    if (name == node) return &a;
  return nullptr;
}

void started_one(self_ptr self, const std::string& node) {
  auto& st = self->state;
  if (--st.starting_on[node] <= 0) st.starting_on.erase(node);
  // Retired, with the last start settled: nothing of it is left to clean up.
  if (st.retired && st.starting_on.empty()) self->quit();
}

// A replica that came up after its deployment was deleted: nobody would route to it or stop it.
void stop_unwanted(self_ptr self, const node_agent_actor& agent, const std::string& name) {
  note(self, fmt::format("started {}, but the deployment is gone; stopping it", name));
  self->request(agent, 10s, stop_atom::value, name).then([](bool) {}, [](caf::error&) {});
}

// Starts one replica on the node with the fewest workers of the model (those starting too).
void start_one(self_ptr self, const group_load& l) {
  auto& st = self->state;
  if (st.opt.agents.empty()) return note(self, "cannot start a replica: no node agent");
  std::map<std::string, int64_t> on_node;
  for (const auto& [node, n] : st.starting_on) on_node[node] += n;
  for (const std::string& node : l.nodes) ++on_node[node];
  const auto* pick = &st.opt.agents.front();
  for (const auto& a : st.opt.agents)
    if (on_node[a.first] < on_node[pick->first]) pick = &a;
  const std::string node = pick->first;
  const node_agent_actor agent = pick->second;
  ++st.starting_on[node];
  self->request(agent, std::chrono::minutes(5), start_atom::value, st.opt.spec)
      .then(
          [=](worker_actor& w, publisher_actor& p, worker_info& info) {
            const std::string name = info.name;
            if (self->state.retired) {
              stop_unwanted(self, agent, name);
              return started_one(self, node);
            }
            self->request(self->state.opt.routers.front(), 30s, register_atom::value, w, p, info)
                .then(
                    [=](bool) {
                      // Retired while the router took it: the deployment's own stop listed
                      // the router's workers before this one was among them.
                      if (self->state.retired) stop_unwanted(self, agent, name);
                      else note(self, fmt::format("started {}: active", name));
                      started_one(self, node);
                    },
                    [=](caf::error& e) {
                      started_one(self, node);
                      note(self, fmt::format("started {}, but the router did not take it ({}); stopping it", name,
                                             self->system().render(e)));
                      self->request(agent, 10s, stop_atom::value, name).then([](bool) {}, [](caf::error&) {});
                    });
          },
          [=](caf::error& e) {
            started_one(self, node);
            note(self, fmt::format("a replica did not start on {}: {}", node, self->system().render(e)));
          });
}

void drain_one(self_ptr self, const std::string& worker) {
  for (const router_actor& r : self->state.opt.routers)
    self->request(r, 10s, drain_atom::value, worker).then([](bool) {}, [](caf::error&) {});
  note(self, fmt::format("draining {}", worker));
}

// A drained worker holds nothing more: its node agent stops it.
void stop_drained(self_ptr self, const std::string& worker, const std::string& node) {
  auto& st = self->state;
  if (!st.stopping.insert(worker).second) return;
  const node_agent_actor* agent = agent_of(self, node);
  if (!agent) return note(self, fmt::format("{} is drained, but no node agent of {} is known to stop it", worker, node));
  self->request(*agent, 10s, stop_atom::value, worker)
      .then([=](bool ok) { note(self, fmt::format("{} drained: {}", worker, ok ? "stopped" : "already gone")); },
            [=](caf::error& e) { note(self, fmt::format("{} drained, stop failed: {}", worker, self->system().render(e))); });
}

// Disaggregated serving: starts one replication unit (P prefill + D decode workers with a new
// unit id) on the node with the fewest workers of the model. It counts as starting until every
// worker is registered; one that does not start whole is drained (and then stopped whole).
void start_unit(self_ptr self, const group_load& l) {
  auto& st = self->state;
  if (st.opt.agents.empty()) return note(self, "cannot start a replication unit: no node agent");
  std::map<std::string, int64_t> on_node;
  for (const auto& [node, n] : st.starting_on) on_node[node] += n * (st.opt.prefill_per_unit + st.opt.decode_per_unit);
  for (const std::string& node : l.nodes) ++on_node[node];
  const auto* pick = &st.opt.agents.front();
  for (const auto& a : st.opt.agents)
    if (on_node[a.first] < on_node[pick->first]) pick = &a;
  const std::string node = pick->first;
  const node_agent_actor agent = pick->second;
  const int32_t unit = st.next_unit++;
  st.starting_units.insert(unit);
  ++st.starting_on[node];
  struct progress {
    int pending = 0;
    bool failed = false;
    std::vector<std::string> registered;
  };
  auto pr = std::make_shared<progress>();
  pr->pending = st.opt.prefill_per_unit + st.opt.decode_per_unit;
  st.unit_pending[unit] = pr->pending;
  auto done_one = [=] {
    --self->state.unit_pending[unit];
    if (--pr->pending > 0) return;
    self->state.unit_pending.erase(unit);
    self->state.starting_units.erase(unit);
    if (pr->failed && !self->state.retired) {
      note(self, fmt::format("unit {} did not start whole; draining its {} started worker(s)", unit, pr->registered.size()));
      for (const std::string& w : pr->registered) drain_one(self, w);
    } else if (!self->state.retired) {
      note(self, fmt::format("unit {} started: {} prefill + {} decode workers active", unit, self->state.opt.prefill_per_unit,
                             self->state.opt.decode_per_unit));
    }
    started_one(self, node);
  };
  for (int32_t k = 0; k < st.opt.prefill_per_unit + st.opt.decode_per_unit; ++k) {
    worker_spec spec = st.opt.spec;
    spec.role = k < st.opt.prefill_per_unit ? "prefill" : "decode";
    spec.unit = unit;
    self->request(agent, std::chrono::minutes(5), start_atom::value, spec)
        .then(
            [=](worker_actor& w, publisher_actor& p, worker_info& info) {
              const std::string name = info.name;
              if (self->state.retired) {
                stop_unwanted(self, agent, name);
                return done_one();
              }
              self->request(self->state.opt.routers.front(), 30s, register_atom::value, w, p, info)
                  .then(
                      [=](bool) {
                        if (self->state.retired) stop_unwanted(self, agent, name);
                        else pr->registered.push_back(name);
                        done_one();
                      },
                      [=](caf::error& e) {
                        pr->failed = true;
                        note(self, fmt::format("started {}, but the router did not take it ({}); stopping it", name,
                                               self->system().render(e)));
                        self->request(agent, 10s, stop_atom::value, name).then([](bool) {}, [](caf::error&) {});
                        done_one();
                      });
            },
            [=](caf::error& e) {
              pr->failed = true;
              note(self, fmt::format("a {} worker of unit {} did not start on {}: {}", spec.role, unit, node,
                                     self->system().render(e)));
              done_one();
            });
  }
}

// The rule's reason without its leading "up ..: " or "down ..: " (the note says the direction).
std::string reason_without_direction(const std::string& reason) {
  const bool directed = reason.rfind("up ", 0) == 0 || reason.rfind("down ", 0) == 0;
  return reason.substr(directed ? reason.find(": ") + 2 : 0);
}

// The rule's decision for `current` replicas (or units), applied: the report's common fields,
// then start (desired - current) more, or drain the active ones with the least in flight
// (`active`: (requests in flight, id), sorted here); starting ones cannot be drained yet.
// `what` names them in the notes (" units" or ""), `load` says the load now. Returns how many
// were drained.
template <class Id, class Start, class Drain>
int64_t apply_decision(self_ptr self, double now, int64_t current, std::vector<std::pair<int64_t, Id>>& active,
                       const char* what, const std::string& load, double in_flight_tokens, Start start, Drain drain) {
  auto& st = self->state;
  const autoscale_decision d = st.rule->decide(now, current);
  autoscaler_report& r = st.report;
  r.settings = st.rule->settings();
  r.in_flight_tokens = in_flight_tokens;
  r.window_mean = 0;
  for (double g : d.group_load) r.window_mean = std::max(r.window_mean, g);
  r.recommended = d.recommended;
  r.desired = d.desired;
  r.reason = d.reason;
  // "scale up 1 -> 3: <the rule's reason>; <the load now>"
  const std::string why = reason_without_direction(d.reason);
  if (d.desired > current) {
    note(self, fmt::format("scale up {} -> {}{}: {}; {}", current, d.desired, what, why, load));
    for (int64_t i = current; i < d.desired; ++i) start();
    ++r.scale_ups;
    st.rule->scaled(now);
    return 0;
  }
  if (d.desired >= current) return 0;
  std::sort(active.begin(), active.end());
  const auto n = static_cast<size_t>(std::min<int64_t>(current - d.desired, static_cast<int64_t>(active.size())));
  if (n == 0) return 0;
  note(self, fmt::format("scale down {} -> {}{}: {}; {}", current, current - static_cast<int64_t>(n), what, why, load));
  for (size_t k = 0; k < n; ++k) drain(active[k].second);
  ++r.scale_downs;
  st.rule->scaled(now);
  return static_cast<int64_t>(n);
}

void decide_units(self_ptr self, const group_load& l, double now) {
  auto& st = self->state;
  // The rule's groups: 0 prefill, 1 decode; requests waiting for a worker need both.
  double prefill = static_cast<double>(l.queued_tokens), decode = static_cast<double>(l.queued_tokens);
  struct unit_view {
    int64_t in_flight = 0;
    bool draining = false, idle = true;
    std::vector<size_t> members;  // indices into l
  };
  std::map<int32_t, unit_view> units;
  std::set<std::string> listed;
  for (size_t i = 0; i < l.workers.size(); ++i) {
    listed.insert(l.workers[i]);
    const int32_t id = i < l.units.size() ? l.units[i] : 0;
    const std::string role = i < l.roles.size() ? l.roles[i] : "aggregated";
    const double tokens = i < l.worker_tokens.size() ? static_cast<double>(l.worker_tokens[i]) : 0;
    (role == "decode" ? decode : prefill) += tokens;
    unit_view& u = units[id];
    u.members.push_back(i);
    u.in_flight += l.in_flight_requests[i];
    if (l.draining[i]) u.draining = true;
    if (l.in_flight_requests[i] != 0) u.idle = false;
    st.next_unit = std::max(st.next_unit, id + 1);
  }
  st.rule->observe(now, 0, prefill);
  st.rule->observe(now, 1, decode);
  for (auto it = st.stopping.begin(); it != st.stopping.end();) it = listed.count(*it) ? std::next(it) : st.stopping.erase(it);

  // Draining units: every worker of one drains, and all stop together once none holds anything.
  std::vector<std::pair<int64_t, int32_t>> active;  // (requests in flight, unit)
  int64_t draining = 0;
  for (auto& [id, u] : units) {
    if (st.starting_units.count(id)) continue;
    if (!u.draining) {
      active.emplace_back(u.in_flight, id);
      continue;
    }
    ++draining;
    for (size_t i : u.members)
      if (!l.draining[i]) drain_one(self, l.workers[i]);  // a drain that reached a router late
    if (u.idle)
      for (size_t i : u.members) stop_drained(self, l.workers[i], l.nodes[i]);
  }

  const int64_t current = static_cast<int64_t>(active.size()) + static_cast<int64_t>(st.starting_units.size());
  st.report.group = "disaggregated";
  const std::string load = fmt::format("in-flight tokens now: {} prefill, {} decode; target {}", prefill, decode,
                                       st.rule->settings().target_in_flight_tokens);
  const int64_t drained_now = apply_decision(
      self, now, current, active, " units", load, static_cast<double>(l.in_flight_tokens), [&] { start_unit(self, l); },
      [&](int32_t unit) {
        note(self, fmt::format("draining unit {}", unit));
        for (size_t i : units[unit].members) drain_one(self, l.workers[i]);
      });
  draining += drained_now;
  autoscaler_report& r = st.report;
  r.starting = static_cast<int64_t>(st.starting_units.size());
  r.starting_workers = 0;
  for (const auto& [id, n] : st.unit_pending) r.starting_workers += n;
  r.draining = draining;
  r.current = static_cast<int64_t>(active.size()) - drained_now + r.starting;  // units active or starting
  self->send(st.opt.routers.front(), autoscale_atom::value, r);
}

void decide(self_ptr self, const group_load& l) {
  auto& st = self->state;
  if (st.retired) return;  // a load asked for before the stop
  const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - st.t0).count();
  if (st.disaggregated()) return decide_units(self, l, now);
  st.rule->observe(now, 0, static_cast<double>(l.in_flight_tokens));

  // Workers by state; drained ones stop.
  std::vector<std::pair<int64_t, std::string>> active;  // (requests in flight, name)
  int64_t draining = 0;
  std::set<std::string> listed;
  for (size_t i = 0; i < l.workers.size(); ++i) {
    listed.insert(l.workers[i]);
    if (l.draining[i]) {
      ++draining;
      if (l.in_flight_requests[i] == 0) stop_drained(self, l.workers[i], l.nodes[i]);
    } else {
      active.emplace_back(l.in_flight_requests[i], l.workers[i]);
    }
  }
  for (auto it = st.stopping.begin(); it != st.stopping.end();) it = listed.count(*it) ? std::next(it) : st.stopping.erase(it);

  const int64_t current = static_cast<int64_t>(active.size()) + st.starting();
  const std::string load = fmt::format("{} in-flight tokens now, target {}", l.in_flight_tokens,
                                       st.rule->settings().target_in_flight_tokens);
  draining += apply_decision(self, now, current, active, "", load, static_cast<double>(l.in_flight_tokens),
                             [&] { start_one(self, l); }, [&](const std::string& w) { drain_one(self, w); });
  autoscaler_report& r = st.report;
  r.starting = st.starting();
  r.starting_workers = r.starting;
  r.draining = draining;
  r.current = static_cast<int64_t>(l.workers.size()) - draining + st.starting();
  self->send(st.opt.routers.front(), autoscale_atom::value, r);
}

autoscaler_actor::behavior_type autoscaler_fn(self_ptr self, autoscaler_options opt) {
  auto& st = self->state;
  st.opt = std::move(opt);
  st.me = fmt::format("{}/autoscaler/{}", st.opt.node, st.opt.model);
  st.rule = std::make_unique<autoscale_rule>(
      st.opt.settings, st.disaggregated() ? std::vector<int64_t>{st.opt.prefill_per_unit, st.opt.decode_per_unit}
                                          : std::vector<int64_t>{1});
  if (st.disaggregated()) st.report.group = "disaggregated";
  st.report.model = st.opt.model;
  st.report.settings = st.opt.settings;
  self->send(self, tick_atom::value);
  return {
      [=](tick_atom) {
        auto& s = self->state;
        if (s.retired) return;
        const auto next = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(s.opt.tick_s));
        if (s.opt.routers.empty()) return;
        const router_actor router = s.opt.routers.front();
        auto load_and_decide = [=] {
          self->request(router, 10s, load_atom::value, self->state.opt.model)
              .then(
                  [=](group_load& l) {
                    decide(self, l);
                    self->delayed_send(self, next, tick_atom::value);
                  },
                  [=](caf::error&) { self->delayed_send(self, next, tick_atom::value); });
        };
        if (!s.opt.agents_from_router) return load_and_decide();
        self->request(router, 10s, agents_atom::value)
            .then(
                [=](std::vector<node_agent_actor>& agents, std::vector<std::string>& nodes) {
                  auto& known = self->state.opt.agents;
                  known.clear();
                  for (size_t i = 0; i < agents.size() && i < nodes.size(); ++i)
                    if (nodes[i] != self->state.opt.control_node) known.emplace_back(nodes[i], agents[i]);
                  load_and_decide();
                },
                [=](caf::error&) { self->delayed_send(self, next, tick_atom::value); });
      },
      [=](configure_atom, const autoscale_settings& s) {
        self->state.rule->set_settings(s);
        self->state.report.settings = s;
        note(self, fmt::format("settings: target_in_flight_tokens {}, min_replica {}, max_replica {}, scale_up_delay {}, "
                               "scale_down_delay {}, autoscaling_window {}",
                               s.target_in_flight_tokens, s.min_replica, s.max_replica, s.scale_up_delay_s,
                               s.scale_down_delay_s, s.window_s));
        return true;
      },
      [=](stop_atom) {
        auto& s = self->state;
        if (s.retired) return;
        s.retired = true;
        // The router forgets its report (metrics, /v1/status): the model is gone.
        autoscaler_report last = s.report;
        last.retired = true;
        if (!s.opt.routers.empty()) self->send(s.opt.routers.front(), autoscale_atom::value, std::move(last));
        if (s.starting_on.empty()) return self->quit();
        note(self, fmt::format("retired with {} replica(s) or unit(s) starting: they stop as they come up", s.starting()));
      },
      [=](stats_atom) { return self->state.report; },
  };
}

}  // namespace

autoscaler_actor spawn_autoscaler(caf::actor_system& sys, autoscaler_options options) {
  return sys.spawn(autoscaler_fn, std::move(options));
}

}  // namespace troupe
