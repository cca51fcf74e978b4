// autoscaler: sizes one served model's replica group (aggregated serving: one engine worker
// per replica) by its in-flight tokens, with token-based autoscaling's rule
// (runtime/autoscale/autoscale_rule.hpp; README "Autoscaling").
//
// What it owns: the rule and its history, the settings (autoscaling_settings; `configure`
// replaces them and they take effect at the next decision), the replicas it is starting, the
// decision log, and its timer. Every tick it asks the model's router for the load (prompt +
// max_tokens of the requests routed and not ended, and of those queued for a worker), feeds
// the rule, and carries out what it decides:
//   scale up:   a node agent starts a worker (the node with the fewest workers of the model,
//               counting those starting; its own process's agent, or across processes those
//               registered with the router), which is registered with the router once ready;
//               it counts as a replica ("starting") from the moment it is asked for.
//   scale down: the routers drain the active worker with the fewest requests in flight (no
//               new requests go to it; it finishes what it holds); once the router counts
//               nothing in flight on it, its node agent stops it. A drain never fails a request.
// Retired (stop: its deployment was deleted), it decides no more and tells the router to
// forget its report; a replica it was still starting is stopped through its node agent when
// the start completes (never left running unregistered), and it quits once no start is
// pending.
// After every tick it sends its report (load, desired and current replicas, the log) to the
// router, which shows it on /metrics and /v1/actors.
//
// Disaggregated serving (prefill_per_unit and decode_per_unit > 0; actors/kv_transfer.hpp): it
// counts and scales whole replication units, never single workers (the reference: "the
// autoscaler scales the number of units, not individual pods"). The rule sees two groups,
// prefill (the in-flight tokens the router counts on prefill workers) and decode (on decode
// workers), each plus the queued tokens, and asks for ceil(load / (target x that group's
// workers per unit)) units, the more of the two, clamped to [min_replica, max_replica] units.
//   scale up:   P prefill + D decode workers with a new unit id, on the node with the fewest
//               workers of the model, each registered with the router with its role; the unit
//               counts as starting until all of them are registered. A unit that does not
//               start whole is drained and stopped.
//   scale down: every worker of the active unit with the fewest requests in flight is drained
//               (the router picks no draining worker, nor a draining decode worker for a
//               hand-off); once none of them holds a request (a decode worker holds a request
//               routed to it from the routing on, hand-off included), all are stopped together.
//
// What it does not own: the workers (node agents start and stop them), the routing and the
// load picture (the router's).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "actors/protocol.hpp"

namespace troupe {

namespace config {
struct autoscaling_settings;
}

struct autoscaler_options {
  std::string node;   // for its name in logs: "<node>/autoscaler/<model>"
  std::string model;  // the served model name
  worker_spec spec;   // what a new replica is started with
  autoscale_settings settings;
  std::vector<router_actor> routers;  // [0] is asked for the load and registers new workers; all drain
  std::vector<std::pair<std::string, node_agent_actor>> agents;  // by node name
  // Across processes (troupe node --role control): every tick the agents are the ones
  // registered with the router, except this node's (a control node runs no workers).
  bool agents_from_router = false;
  std::string control_node;
  // Disaggregated serving: the workers of one replication unit (both > 0), else aggregated.
  int32_t prefill_per_unit = 0;
  int32_t decode_per_unit = 0;
  double tick_s = 1;      // between decisions
  size_t log_size = 100;  // decision log entries kept
};

autoscaler_actor spawn_autoscaler(caf::actor_system& sys, autoscaler_options options);

// autoscaling_settings (config/settings.hpp; delays and window in seconds) as the rule takes them.
autoscale_settings to_rule_settings(const config::autoscaling_settings& a);

}  // namespace troupe
