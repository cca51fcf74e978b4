// router: picks a worker for each request and owns what follows from that choice.
//
// It owns: per served model, a KV index (runtime/kv_index.hpp) of which worker holds which
// block, fed by the workers' KV events in order (a gap, a late start or a worker that joins:
// a full dump from that worker replaces its view; after a restart from a snapshot, a replay
// of the events after the snapshot's from the worker's publisher); the load picture (per
// worker: requests and tokens in flight, the prompt blocks they hold, the prompt blocks not
// yet prefilled, and the blocks it is predicted to hold once they are), made whole with the
// decisions of router replicas; the queue of requests that wait while every worker of their
// model is saturated; failure handling (a lost worker is dropped at once, its requests that
// streamed nothing are resubmitted, the others end with a clear error); and the reference's
// routing metrics. The policy (actors/routing_policy.hpp) only ranks workers.
//
// The decision, for a request of P prompt tokens on a model with KV blocks of B tokens:
//   hashes  = the chained hashes of its full blocks, computed once (runtime/block_hash.hpp)
//   overlap = per worker, max(the index's longest held prefix, the predicted one)
//   saturated worker: in-flight requests >= its max_batch_size, or
//                     active blocks + ceil(P / B) > busy_kv_fraction x its KV blocks
//   every worker saturated: the request waits in the model's queue (full: 429), else the
//   policy picks (KV-aware: weight x prefill blocks + decode blocks, routing_policy.hpp).
// It does not own the engines, the HTTP side, or the snapshot file (the snapshotter writes
// what `snapshot` answers).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "actors/protocol.hpp"
#include "actors/routing_policy.hpp"
#include "runtime/kv_snapshot.hpp"

namespace troupe {

struct router_options {
  std::string name;  // "<node>/router" (or "<node>/router<i>" for replicas)
  routing_kind kind = routing_kind::kv;
  routing_config defaults;            // b10_routing_config for models not configured otherwise
  size_t queue_capacity = 1024;       // requests waiting per model; more get 429
  double busy_kv_fraction = 0.95;     // see the header
  double metrics_window_s = 300;      // the routing metrics' window
  size_t max_index_entries = size_t{8} << 20;  // (worker, block) entries per model
  uint64_t seed = 0;                  // 0: from the clock
  std::optional<kv_snapshot> restore;  // a snapshot to start from
};

router_actor spawn_router(caf::actor_system& sys, std::string node, router_options options);

// Adds a replica's figures to a router's (for /metrics over several routers): counts and
// windows add up; per-worker load is each router's whole picture already, so it is kept.
void merge_router_stats(router_stats& into, const router_stats& replica);

// Histogram bucket bounds of the router's decision latency and queue wait, in seconds.
const std::vector<double>& decision_seconds_bounds();
const std::vector<double>& queue_wait_seconds_bounds();

}  // namespace troupe
