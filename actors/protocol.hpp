// protocol: every message and typed-actor interface of troupe's actors, in one CAF type-ID
// block, so that the whole protocol reads on one screen. The same types travel inside one
// process and between nodes (CAF's middleman serialises them with the inspect functions
// below), so an actor never knows whether its peer is local or remote.
//
//   HTTP frontend --submit--> router --submit--> worker --forward--> device (one per worker)
//        ^                     ^  ^  |            |  \--kv_events--> kv publisher --> routers
//        |                     |  |  \--dump-----> worker, --replay--> kv publisher
//   stream actor <--token_delta-----------------  worker
//                              \--first_token, done-- worker (in-flight accounting, retries)
//   routers <--route_decision--> router replicas (their in-flight pictures stay whole)
//   snapshotter --snapshot--> router; node agent: starts and stops workers; router and node
//   agents answer metrics (/v1/actors).
//   autoscaler --load--> router (in-flight tokens), --start/stop--> node agents,
//              --drain--> routers, --autoscale (its report)--> router (for /metrics)
//   disaggregated serving (actors/kv_transfer.hpp): prefill worker --kvhandoff, kvchunk-->
//   decode worker --kvpull, kvack, kvdone--> prefill worker (kvabort either way); the decode
//   worker --handoff--> router, and streams the rest of the tokens
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/metering.hpp"
#include "actors/router_queue.hpp"
#include "runtime/autoscale/autoscale_rule.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/engine/step.hpp"
#include "runtime/executor.hpp"
#include "runtime/kv_events.hpp"
#include "runtime/sampler.hpp"

namespace troupe {

// ---- messages ----------------------------------------------------------------------------

struct token_delta;
struct forward_result;

// A token's logprob and its alternatives, as it travels.
struct wire_logprob {
  int32_t id = 0;
  float logprob = 0;
  std::vector<int32_t> top_ids;
  std::vector<float> top_logprobs;
};

// The output of one engine request since the last delta. A delta with `finished` set is the
// last; one with error_status set failed (the status is the HTTP one the client should get).
struct token_delta {
  std::string id;
  std::vector<int32_t> tokens;
  std::vector<wire_logprob> logprobs;
  std::vector<wire_logprob> prompt_logprobs;  // prompt tokens 1.., with the first token (when asked)
  std::vector<float> embedding;               // an embedding request's result, in its last delta
  std::string text;
  bool finished = false;
  std::string finish_reason;  // stop | length | abort | error
  std::string stop_string;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;
  int32_t draft_tokens = 0;           // this delta's: draft tokens verified (speculative decoding)
  int32_t accepted_draft_tokens = 0;  // of those, accepted
  int32_t error_status = 0;
  std::string error;
  std::string worker;
};

using stream_actor = caf::typed_actor<caf::reacts_to<token_delta>>;

// What sampling asks for, as it travels (sampling_params with plain fields).
struct wire_sampling {
  float temperature = 1, top_p = 1, min_p = 0, repetition_penalty = 1, presence_penalty = 0,
        frequency_penalty = 0;
  int32_t top_k = 0, logprobs = -1, prompt_logprobs = -1, max_tokens = 16, min_tokens = 0;
  std::vector<int32_t> bias_ids;
  std::vector<float> bias_values;
  bool has_seed = false;
  uint64_t seed = 0;
  std::vector<int32_t> stop_token_ids;
  std::vector<std::string> stop;
  bool ignore_eos = false;
};
wire_sampling to_wire(const sampling_params& p);
sampling_params from_wire(const wire_sampling& w);

// What a worker tells the router that gave it a request: the request's first token, and
// that the request left it (finished, failed or aborted; with its token counts).
using first_token_atom = caf::atom_constant<caf::atom("firsttok")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
// Disaggregated serving (actors/kv_transfer.hpp): the decode worker took the request over
// from the prefill worker (id, prefill worker, decode worker).
using handoff_atom = caf::atom_constant<caf::atom("handoff")>;
using route_sink_actor = caf::typed_actor<
    caf::reacts_to<first_token_atom, std::string, std::string>,  // id, worker
    caf::reacts_to<done_atom, std::string, std::string, int32_t, int32_t>,  // id, worker, prompt, cached tokens
    caf::reacts_to<handoff_atom, std::string, std::string, std::string>>;

struct generate_request {
  std::string id;     // unique per engine request
  std::string model;  // the served model name
  std::vector<int32_t> prompt;
  wire_sampling params;
  int32_t priority = 0;
  stream_actor reply_to;
  route_sink_actor router;  // the router that routed it (none when sent to a worker directly)
  // What the output must match, as runtime/structured/constraint_spec.hpp writes it (a
  // compiled grammar cannot travel; the worker compiles this, once per spec); "" for none.
  std::string constraint;
  // Not none: an embedding request (runtime/engine/engine.hpp request::pool); its last delta
  // carries the embedding, and params are unused (max_tokens 0).
  pooling pool = pooling::none;
  // Disaggregated serving: the decode worker the prefill worker hands the request to after its
  // first token (a worker_actor; none: the worker serves it whole).
  caf::actor decode_to;
  std::string decode_name;
};

// Disaggregated serving (actors/kv_transfer.hpp): what a prefill worker sends the decode
// worker after the first token, and the chunks of blocks that follow.
struct kv_handoff {
  generate_request req;             // prompt, sampling, stream and router of the request
  std::vector<int32_t> generated;   // tokens the prefill worker sampled (and streamed)
  int32_t n_computed = 0;           // tokens of prompt + generated whose KV the blocks hold
  int32_t n_blocks = 0;             // blocks holding them
  int32_t cached_tokens = 0;        // prompt tokens the prefill worker had cached
  uint64_t bytes_per_block = 0;
  std::string layout;               // executor::kv_layout(): must equal the decode worker's
  std::string prefill;              // the prefill worker's name
};
struct kv_chunk {
  std::string id;
  int32_t first = 0;                // index of its first block in the request's block list
  int32_t n_blocks = 0;
  std::vector<uint8_t> bytes;       // n_blocks * bytes_per_block
};

// kv_event as it travels.
struct wire_kv_event {
  uint64_t event_id = 0;
  kv_event::kind type = kv_event::kind::block_stored;
  std::vector<uint64_t> hashes;
  bool has_parent = false;
  uint64_t parent = 0;
  int32_t block_size = 0;
};
wire_kv_event to_wire(kv_event e);
kv_event from_wire(const wire_kv_event& w);

struct kv_events_msg {
  std::string worker;
  std::vector<wire_kv_event> events;
};

// A worker's whole cached set as of its event next_event (what a router replaces its view
// of the worker with after a gap or a restart).
struct kv_dump {
  std::string worker;
  uint64_t instance = 0;
  uint64_t next_event = 0;
  std::vector<uint64_t> hashes;
};

// b10_routing_config for one model, as it travels.
struct routing_config {
  std::string model;
  queue_order queue_policy = queue_order::fcfs;
  double overlap_score_weight = 3.5;
  double temperature = 0.05;
};

// A routing decision and what became of it, as router replicas share them.
struct route_decision {
  enum class stage : uint8_t { routed, prefilled, finished };
  std::string id;
  std::string model;
  std::string worker;
  stage at = stage::routed;
  int32_t request_blocks = 0;  // the prompt's KV blocks
  int32_t uncached_blocks = 0;  // of those, not held by the worker when routed
  int64_t tokens = 0;           // prompt + max_tokens
  std::vector<uint64_t> hashes;  // routed: the prompt's block hashes (the worker will hold them)
};

// A worker as the router knows it.
struct worker_info {
  std::string name;   // unique in the cluster: "<node>/w<i>"
  std::string role = "aggregated";  // aggregated, prefill or decode (actors/kv_transfer.hpp)
  int32_t unit = 0;                 // its replication unit (disaggregated serving)
  std::string node;
  std::string model;  // served model name
  int32_t kv_block_size = 0;
  int32_t kv_blocks_total = 0;
  int32_t max_seq_len = 0;
  int32_t max_batch_size = 0;
  uint64_t hash_salt = 0;
  uint64_t instance = 0;  // random per worker start: a restarted worker has a new one
};

// What a worker is started with: the model and its engine's settings (runtime/engine/factory.hpp).
struct worker_spec {
  std::string model_path;
  std::string served_name;
  engine_spec engine;
  std::string role = "aggregated";  // aggregated, prefill or decode
  int32_t unit = 0;
};

// A histogram as it travels: counts[i] of values <= bounds[i], the last of those above all.
struct histogram_data {
  std::vector<double> bounds;
  std::vector<uint64_t> counts;  // bounds.size() + 1
  double sum = 0;
  uint64_t count = 0;
};
histogram_data make_histogram(const std::vector<double>& bounds);
void observe(histogram_data& h, double v);

// One actor's counters, for /metrics and /v1/actors.
struct actor_stats {
  std::string node;
  std::string actor;
  std::string role;
  int64_t mailbox_size = 0;
  int64_t messages_total = 0;
  double handling_seconds = 0;  // total time spent in its handlers
  // Engine figures for workers (0 for other roles).
  int32_t running = 0;
  int32_t waiting = 0;
  int32_t kv_blocks_used = 0;
  int32_t kv_blocks_total = 0;
  // Speculative decoding, for workers whose engine drafts ("" otherwise): the decoding type,
  // draft tokens verified and accepted since the worker started, and the accepted length of
  // each verification (tokens it emitted: accepted drafts + the target's own).
  std::string decoding_type;
  int64_t draft_tokens = 0;
  int64_t accepted_draft_tokens = 0;
  histogram_data accepted_length;
  // Workers: their serving role (aggregated, prefill, decode) and replication unit; the KV
  // they received as decode workers (blocks and bytes written, blocks skipped because their
  // prefix cache held them, the time from hand-off to decoding), and the transfers that failed
  // on either side.
  std::string worker_role;
  int32_t unit = 0;
  int64_t kv_transfers = 0;
  int64_t kv_transfer_blocks = 0;
  int64_t kv_transfer_bytes = 0;
  int64_t kv_transfer_skipped_blocks = 0;
  int64_t kv_transfer_failures = 0;
  histogram_data kv_transfer_seconds;
};

// The reference's router metrics for one model, over the last window_s seconds of finished
// requests, and its routing settings.
struct router_model_stats {
  std::string model;
  std::string policy;  // kv, least-loaded, round-robin, random
  std::string queue_policy;
  double overlap_score_weight = 0;
  double temperature = 0;
  double window_s = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;            // measured by the engines
  int64_t estimated_cached_tokens = 0;  // the router's estimate when it routed them
  int64_t best_prefix_tokens = 0;       // held by the worker holding most of each prefix
  int64_t queued = 0;
  int64_t queue_capacity = 0;
  int64_t rejected = 0;  // 429s: the queue was full
};

// A model's in-flight tokens and its workers, as the router counts them, for its autoscaler.
struct group_load {
  std::string model;
  int64_t in_flight_tokens = 0;  // prompt + max_tokens of its requests routed and not ended, and queued
  int64_t queued_tokens = 0;     // of those, waiting in the router's queue
  // Its live workers (active or draining), in the same order.
  std::vector<std::string> workers;
  std::vector<std::string> nodes;
  std::vector<uint8_t> draining;
  std::vector<int32_t> in_flight_requests;
  // Disaggregated serving: each worker's role, replication unit and in-flight tokens.
  std::vector<std::string> roles;
  std::vector<int32_t> units;
  std::vector<int64_t> worker_tokens;
};

// What a model's autoscaler last decided (actors/autoscaler.hpp), for /metrics and /v1/actors.
struct autoscaler_report {
  std::string model;
  std::string group = "aggregated";  // the replica group: aggregated, or disaggregated (counts replication units)
  autoscale_settings settings;
  double in_flight_tokens = 0;  // the last sample
  double window_mean = 0;       // over autoscaling_window
  int64_t recommended = 0;      // ceil(mean / target), clamped
  int64_t desired = 0;
  int64_t current = 0;          // active + starting
  int64_t starting = 0;          // replicas (disaggregated: units) starting
  int64_t starting_workers = 0;  // workers starting, not registered yet (aggregated: = starting)
  int64_t draining = 0;
  int64_t scale_ups = 0, scale_downs = 0;  // scale events
  std::string reason;                      // the last decision's
  std::vector<double> log_times;           // unix seconds, oldest first
  std::vector<std::string> log;            // the decision log: scale events, starts, drains, stops
  bool retired = false;  // its last report (its deployment was deleted): the router forgets it
};

// What the router knows, for /metrics, /v1/actors and tests.
struct router_stats {
  std::string router;
  int64_t requests = 0;
  int64_t retried = 0;           // resubmitted after their worker was lost
  int64_t failed = 0;            // ended with an error by the router
  int64_t aborted = 0;           // stopped by their client (a disconnect, or the frontend)
  int64_t prompt_tokens = 0;     // of finished requests
  int64_t cached_tokens = 0;     // of those, served from a worker's prefix cache
  uint64_t kv_events_applied = 0;
  uint64_t kv_index_entries = 0;
  uint64_t kv_index_bytes = 0;
  uint64_t kv_index_evicted = 0;
  int64_t peers = 0;  // router replicas it shares decisions with
  histogram_data decision_seconds;
  histogram_data queue_wait_seconds;
  std::vector<router_model_stats> model_stats;
  // Per worker, in the same order.
  std::vector<std::string> workers;
  std::vector<std::string> models;
  std::vector<uint8_t> alive;
  std::vector<uint8_t> in_sync;  // its index view is current (no dump pending)
  std::vector<int64_t> in_flight_tokens;
  std::vector<int64_t> in_flight_requests;
  std::vector<int64_t> active_blocks;
  std::vector<int64_t> queued_prefill_blocks;
  std::vector<int64_t> routed_requests;
  std::vector<int64_t> worker_prompt_tokens;
  std::vector<int64_t> worker_cached_tokens;
  std::vector<uint64_t> kv_events;      // events received
  std::vector<uint64_t> kv_event_gaps;  // gaps seen (each answered by a dump)
  std::vector<uint64_t> kv_dumps;
  std::vector<uint64_t> kv_replays;     // event replays asked of its publisher (after a restart)
  std::vector<uint64_t> kv_cached_blocks;  // blocks it holds, in the index
  std::vector<std::string> status;  // active, draining, stopped (drained and gone) or lost
  std::vector<std::string> roles;   // aggregated, prefill or decode
  std::vector<autoscaler_report> autoscalers;  // the latest of each model's autoscaler
};

struct forward_result {
  std::vector<float> logits;
  std::vector<float> hidden;  // the batch's hidden rows (executor::forward_hidden)
  std::string error;  // empty on success
  double seconds = 0;
};

// ---- atoms -------------------------------------------------------------------------------

using submit_atom = caf::atom_constant<caf::atom("submit")>;
using abort_atom = caf::atom_constant<caf::atom("abort")>;
using register_atom = caf::atom_constant<caf::atom("register")>;
using forward_atom = caf::atom_constant<caf::atom("forward")>;
using kv_events_atom = caf::atom_constant<caf::atom("kvevents")>;
using subscribe_atom = caf::atom_constant<caf::atom("subscribe")>;
using metrics_atom = caf::atom_constant<caf::atom("metrics")>;
using start_atom = caf::atom_constant<caf::atom("start")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using list_atom = caf::atom_constant<caf::atom("list")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;
using dump_atom = caf::atom_constant<caf::atom("dump")>;
using replay_atom = caf::atom_constant<caf::atom("replay")>;
using configure_atom = caf::atom_constant<caf::atom("configure")>;
using snapshot_atom = caf::atom_constant<caf::atom("snapshot")>;
using peer_atom = caf::atom_constant<caf::atom("peer")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using drain_atom = caf::atom_constant<caf::atom("drain")>;
using load_atom = caf::atom_constant<caf::atom("load")>;
using autoscale_atom = caf::atom_constant<caf::atom("autoscale")>;
using agents_atom = caf::atom_constant<caf::atom("agents")>;
// KV transfer (actors/kv_transfer.hpp).
using kvhandoff_atom = caf::atom_constant<caf::atom("kvhandoff")>;
using kvpull_atom = caf::atom_constant<caf::atom("kvpull")>;
using kvchunk_atom = caf::atom_constant<caf::atom("kvchunk")>;
using kvack_atom = caf::atom_constant<caf::atom("kvack")>;
using kvdone_atom = caf::atom_constant<caf::atom("kvdone")>;
using kvabort_atom = caf::atom_constant<caf::atom("kvabort")>;

// ---- interfaces --------------------------------------------------------------------------

// Receives KV events (routers).
using kv_sink_actor = caf::typed_actor<caf::reacts_to<kv_events_atom, kv_events_msg>>;

// Runs forward passes for one worker: a CPU executor now, a CUDA stream later.
using device_actor = caf::typed_actor<
    caf::replies_to<forward_atom, forward_batch>::with<forward_result>,
    caf::replies_to<metrics_atom>::with<actor_stats>>;

// A device actor on a CUDA stream (actors/cuda_stream.hpp) also hears from its stream's
// completion callback: (done, forward number). Local only; workers see a device_actor.
using cuda_stream_actor = device_actor::extend<caf::reacts_to<done_atom, uint64_t>>;
// A simulated device (actors/device.hpp) has the same shape: (done, forward number) is its
// timer firing when the modelled forward time has passed.
using sim_device_actor = cuda_stream_actor;

// Passes a worker's KV events on, in order, to every router that subscribed, and keeps the
// latest ones: replay answers every event from an id on, or an error when it no longer
// holds them all.
using publisher_actor = caf::typed_actor<
    caf::replies_to<subscribe_atom, kv_sink_actor>::with<uint64_t>,  // the id of its next event
    caf::reacts_to<kv_events_atom, kv_events_msg>,
    caf::replies_to<replay_atom, uint64_t>::with<kv_events_msg>,
    caf::replies_to<metrics_atom>::with<actor_stats>>;

// Owns one engine and runs its step loop; dump answers its whole cached set.
using worker_actor = caf::typed_actor<
    caf::reacts_to<submit_atom, generate_request>,
    caf::reacts_to<abort_atom, std::string>,
    caf::reacts_to<stop_atom>,
    caf::replies_to<dump_atom>::with<kv_dump>,
    caf::replies_to<metrics_atom>::with<actor_stats>,
    // KV transfer (actors/kv_transfer.hpp): prefill -> decode: handoff, chunk; decode ->
    // prefill: pull (first block wanted), ack (bytes written), done; either way: abort (why).
    caf::reacts_to<kvhandoff_atom, kv_handoff>,
    caf::reacts_to<kvpull_atom, std::string, int32_t>,
    caf::reacts_to<kvchunk_atom, kv_chunk>,
    caf::reacts_to<kvack_atom, std::string, uint64_t>,
    caf::reacts_to<kvdone_atom, std::string>,
    caf::reacts_to<kvabort_atom, std::string, std::string>,
    caf::reacts_to<tick_atom>>;

// A worker a node agent runs, as a router registers it (a worker node that rejoins its
// control node registers every one, those an autoscaler started on it included).
struct agent_worker {
  worker_actor worker;
  publisher_actor publisher;
  worker_info info;
};

// One per process: starts and stops workers, lists the ones it runs (not those asked to
// stop), and reports on its actors.
using node_agent_actor = caf::typed_actor<
    caf::replies_to<start_atom, worker_spec>::with<worker_actor, publisher_actor, worker_info>,
    caf::replies_to<stop_atom, std::string>::with<bool>,
    caf::replies_to<list_atom>::with<std::vector<agent_worker>>,
    caf::replies_to<metrics_atom>::with<std::vector<actor_stats>>>;

// A router as its replicas see it: they tell each other their decisions, and the workers
// that register with one of them.
using router_peer_actor = caf::typed_actor<caf::reacts_to<peer_atom, route_decision>,
                                           caf::reacts_to<peer_atom, worker_actor, publisher_actor, worker_info>>;

// Picks a worker per request (KV-aware by default), tracks what is in flight, queues when
// every worker is saturated, fails over when a worker is lost. snapshot answers its KV index
// as kv_snapshot bytes (runtime/kv_snapshot.hpp).
using router_actor = kv_sink_actor::extend_with<route_sink_actor>::extend_with<router_peer_actor>::extend<
    caf::reacts_to<submit_atom, generate_request>,
    caf::reacts_to<abort_atom, std::string>,
    caf::replies_to<register_atom, worker_actor, publisher_actor, worker_info>::with<bool>,
    caf::replies_to<register_atom, node_agent_actor, std::string>::with<bool>,
    caf::replies_to<register_atom, router_peer_actor>::with<bool>,
    caf::replies_to<configure_atom, routing_config>::with<bool>,
    caf::replies_to<list_atom>::with<std::vector<worker_info>>,
    caf::replies_to<stats_atom>::with<router_stats>,
    caf::replies_to<snapshot_atom>::with<std::string>,
    caf::replies_to<metrics_atom>::with<std::vector<actor_stats>>,
    // The autoscaler's side: a model's load, a drain (the worker gets no new requests; it
    // finishes what it holds), and its latest report to show.
    caf::replies_to<load_atom, std::string>::with<group_load>,
    caf::replies_to<drain_atom, std::string>::with<bool>,
    caf::reacts_to<autoscale_atom, autoscaler_report>,
    // The node agents registered with it, and their nodes (where an autoscaler can start workers).
    caf::replies_to<agents_atom>::with<std::vector<node_agent_actor>, std::vector<std::string>>>;

// Sizes one model's replica group by its in-flight tokens (actors/autoscaler.hpp); configure
// replaces its settings (they take effect at its next decision); stop retires it (its model's
// deployment is gone): it decides no more, stops the replicas it is still starting as they
// come up, and then quits.
using autoscaler_actor = caf::typed_actor<
    caf::reacts_to<tick_atom>,
    caf::reacts_to<stop_atom>,
    caf::replies_to<configure_atom, autoscale_settings>::with<bool>,
    caf::replies_to<stats_atom>::with<autoscaler_report>>;

// Writes a router's KV index to disk every interval; snapshot writes one now (bytes written).
using snapshotter_actor = caf::typed_actor<
    caf::replies_to<snapshot_atom>::with<uint64_t>,
    caf::reacts_to<snapshot_atom, uint64_t>,  // its own timer (the round)
    caf::replies_to<metrics_atom>::with<actor_stats>>;

// ---- serialisation -----------------------------------------------------------------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_logprob& x) {
  return f(caf::meta::type_name("wire_logprob"), x.id, x.logprob, x.top_ids, x.top_logprobs);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_delta& x) {
  return f(caf::meta::type_name("token_delta"), x.id, x.tokens, x.logprobs, x.prompt_logprobs, x.embedding, x.text,
           x.finished,
           x.finish_reason, x.stop_string, x.prompt_tokens, x.completion_tokens, x.cached_tokens,
           x.draft_tokens, x.accepted_draft_tokens, x.error_status, x.error, x.worker);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_sampling& x) {
  return f(caf::meta::type_name("wire_sampling"), x.temperature, x.top_p, x.min_p,
           x.repetition_penalty, x.presence_penalty, x.frequency_penalty, x.top_k, x.logprobs,
           x.prompt_logprobs, x.max_tokens, x.min_tokens, x.bias_ids, x.bias_values, x.has_seed, x.seed,
           x.stop_token_ids, x.stop, x.ignore_eos);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, generate_request& x) {
  return f(caf::meta::type_name("generate_request"), x.id, x.model, x.prompt, x.params, x.priority,
           x.reply_to, x.router, x.constraint, x.pool, x.decode_to, x.decode_name);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kv_handoff& x) {
  return f(caf::meta::type_name("kv_handoff"), x.req, x.generated, x.n_computed, x.n_blocks, x.cached_tokens,
           x.bytes_per_block, x.layout, x.prefill);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kv_chunk& x) {
  return f(caf::meta::type_name("kv_chunk"), x.id, x.first, x.n_blocks, x.bytes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_kv_event& x) {
  return f(caf::meta::type_name("wire_kv_event"), x.event_id, x.type, x.hashes, x.has_parent, x.parent,
           x.block_size);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kv_events_msg& x) {
  return f(caf::meta::type_name("kv_events_msg"), x.worker, x.events);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kv_dump& x) {
  return f(caf::meta::type_name("kv_dump"), x.worker, x.instance, x.next_event, x.hashes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, routing_config& x) {
  return f(caf::meta::type_name("routing_config"), x.model, x.queue_policy, x.overlap_score_weight, x.temperature);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, route_decision& x) {
  return f(caf::meta::type_name("route_decision"), x.id, x.model, x.worker, x.at, x.request_blocks,
           x.uncached_blocks, x.tokens, x.hashes);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_info& x) {
  return f(caf::meta::type_name("worker_info"), x.name, x.role, x.unit, x.node, x.model, x.kv_block_size,
           x.kv_blocks_total, x.max_seq_len, x.max_batch_size, x.hash_salt, x.instance);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, agent_worker& x) {
  return f(caf::meta::type_name("agent_worker"), x.worker, x.publisher, x.info);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, engine_spec& x) {
  return f(caf::meta::type_name("engine_spec"), x.device, x.threads, x.kv_block_size, x.kv_n_blocks,
           x.kv_cache_bytes, x.kv_cache_fraction, x.max_batch_size, x.max_num_tokens, x.max_seq_len,
           x.enable_chunked_prefill, x.hybrid_prefill, x.prefix_cache, x.max_recycling_seqs, x.decoding_type,
           x.max_draft_len, x.num_nextn_predict_layers, x.spec_draft_length, x.spec_tree_width, x.max_matching_ngram_size,
           x.min_matching_ngram_size, x.speculative_model_dir, x.eagle3_one_model, x.simulate);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_spec& x) {
  return f(caf::meta::type_name("worker_spec"), x.model_path, x.served_name, x.engine, x.role, x.unit);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, histogram_data& x) {
  return f(caf::meta::type_name("histogram_data"), x.bounds, x.counts, x.sum, x.count);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, actor_stats& x) {
  return f(caf::meta::type_name("actor_stats"), x.node, x.actor, x.role, x.mailbox_size,
           x.messages_total, x.handling_seconds, x.running, x.waiting, x.kv_blocks_used,
           x.kv_blocks_total, x.decoding_type, x.draft_tokens, x.accepted_draft_tokens, x.accepted_length,
           x.worker_role, x.unit, x.kv_transfers, x.kv_transfer_blocks, x.kv_transfer_bytes,
           x.kv_transfer_skipped_blocks, x.kv_transfer_failures, x.kv_transfer_seconds);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, router_model_stats& x) {
  return f(caf::meta::type_name("router_model_stats"), x.model, x.policy, x.queue_policy, x.overlap_score_weight,
           x.temperature, x.window_s, x.prompt_tokens, x.cached_tokens, x.estimated_cached_tokens,
           x.best_prefix_tokens, x.queued, x.queue_capacity, x.rejected);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, router_stats& x) {
  return f(caf::meta::type_name("router_stats"), x.router, x.requests, x.retried, x.failed, x.aborted,
           x.prompt_tokens, x.cached_tokens, x.kv_events_applied, x.kv_index_entries, x.kv_index_bytes,
           x.kv_index_evicted, x.peers, x.decision_seconds, x.queue_wait_seconds, x.model_stats, x.workers,
           x.models, x.alive, x.in_sync, x.in_flight_tokens, x.in_flight_requests, x.active_blocks,
           x.queued_prefill_blocks, x.routed_requests, x.worker_prompt_tokens, x.worker_cached_tokens,
           x.kv_events, x.kv_event_gaps, x.kv_dumps, x.kv_replays, x.kv_cached_blocks, x.status, x.roles, x.autoscalers);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, autoscale_settings& x) {
  return f(caf::meta::type_name("autoscale_settings"), x.target_in_flight_tokens, x.min_replica, x.max_replica,
           x.scale_up_delay_s, x.scale_down_delay_s, x.window_s);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, group_load& x) {
  return f(caf::meta::type_name("group_load"), x.model, x.in_flight_tokens, x.queued_tokens, x.workers, x.nodes,
           x.draining, x.in_flight_requests, x.roles, x.units, x.worker_tokens);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, autoscaler_report& x) {
  return f(caf::meta::type_name("autoscaler_report"), x.model, x.group, x.settings, x.in_flight_tokens, x.window_mean,
           x.recommended, x.desired, x.current, x.starting, x.starting_workers, x.draining, x.scale_ups, x.scale_downs, x.reason,
           x.log_times, x.log, x.retired);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, forward_result& x) {
  return f(caf::meta::type_name("forward_result"), x.logits, x.hidden, x.error, x.seconds);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, forward_batch::seq& x) {
  return f(caf::meta::type_name("forward_seq"), x.n_past, x.n_new, x.n_logits, x.n_hidden, x.table_offset,
           x.table_size, x.tree_offset);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, forward_batch& x) {
  return f(caf::meta::type_name("forward_batch"), x.tokens, x.seqs, x.block_tables, x.tree_parents, x.kv_moves,
           x.aux_layers);
}

}  // namespace troupe

CAF_BEGIN_TYPE_ID_BLOCK(troupe, caf::first_custom_type_id)
CAF_ADD_TYPE_ID(troupe, (troupe::wire_logprob))
CAF_ADD_TYPE_ID(troupe, (troupe::token_delta))
CAF_ADD_TYPE_ID(troupe, (troupe::wire_sampling))
CAF_ADD_TYPE_ID(troupe, (troupe::generate_request))
CAF_ADD_TYPE_ID(troupe, (troupe::kv_handoff))
CAF_ADD_TYPE_ID(troupe, (troupe::kv_chunk))
CAF_ADD_TYPE_ID(troupe, (troupe::wire_kv_event))
CAF_ADD_TYPE_ID(troupe, (troupe::kv_events_msg))
CAF_ADD_TYPE_ID(troupe, (troupe::kv_dump))
CAF_ADD_TYPE_ID(troupe, (troupe::routing_config))
CAF_ADD_TYPE_ID(troupe, (troupe::route_decision))
CAF_ADD_TYPE_ID(troupe, (troupe::histogram_data))
CAF_ADD_TYPE_ID(troupe, (troupe::router_model_stats))
CAF_ADD_TYPE_ID(troupe, (troupe::worker_info))
CAF_ADD_TYPE_ID(troupe, (troupe::engine_spec))
CAF_ADD_TYPE_ID(troupe, (troupe::worker_spec))
CAF_ADD_TYPE_ID(troupe, (troupe::actor_stats))
CAF_ADD_TYPE_ID(troupe, (troupe::autoscale_settings))
CAF_ADD_TYPE_ID(troupe, (troupe::group_load))
CAF_ADD_TYPE_ID(troupe, (troupe::autoscaler_report))
CAF_ADD_TYPE_ID(troupe, (troupe::router_stats))
CAF_ADD_TYPE_ID(troupe, (troupe::forward_result))
CAF_ADD_TYPE_ID(troupe, (troupe::forward_batch))
CAF_ADD_TYPE_ID(troupe, (std::vector<troupe::worker_info>))
CAF_ADD_TYPE_ID(troupe, (std::vector<troupe::actor_stats>))
CAF_ADD_TYPE_ID(troupe, (std::vector<troupe::node_agent_actor>))
CAF_ADD_TYPE_ID(troupe, (troupe::stream_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::route_sink_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::router_peer_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::kv_sink_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::device_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::publisher_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::worker_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::node_agent_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::router_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::snapshotter_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::autoscaler_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::agent_worker))
CAF_ADD_TYPE_ID(troupe, (std::vector<troupe::agent_worker>))
CAF_END_TYPE_ID_BLOCK(troupe)

namespace troupe {
// Registers the block with an actor system's configuration (both sides of a connection).
void add_troupe_types(caf::actor_system_config& cfg);
// The last delta of a request that failed: HTTP status and a message for the client.
token_delta failure_delta(std::string id, int status, std::string message, std::string worker = "");
// An actor's report: its meter and its mailbox size now.
actor_stats make_stats(const actor_meter& m, size_t mailbox_size);
}  // namespace troupe
