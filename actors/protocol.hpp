// protocol: every message and typed-actor interface of troupe's actors, in one CAF type-ID
// block, so that the whole protocol reads on one screen. The same types travel inside one
// process and between nodes (CAF's middleman serialises them with the inspect functions
// below), so an actor never knows whether its peer is local or remote.
//
//   HTTP frontend --submit--> router --submit--> worker --forward--> device (one per worker)
//        ^                     |  ^                |  \--kv_events--> kv publisher --> routers
//        |                     |  |                |
//   stream actor <--token_delta----------------- worker
//        \--first_token, done--> router (in-flight accounting, retries on a lost worker)
//   node agent: starts and stops workers; router and node agents answer metrics (/v1/actors).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/metering.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/executor.hpp"
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
  std::string text;
  bool finished = false;
  std::string finish_reason;  // stop | length | abort | error
  std::string stop_string;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;
  int32_t error_status = 0;
  std::string error;
  std::string worker;
};

using stream_actor = caf::typed_actor<caf::reacts_to<token_delta>>;

// What sampling asks for, as it travels (sampling_params with plain fields).
struct wire_sampling {
  float temperature = 1, top_p = 1, min_p = 0, repetition_penalty = 1, presence_penalty = 0,
        frequency_penalty = 0;
  int32_t top_k = 0, logprobs = -1, max_tokens = 16, min_tokens = 0;
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

struct generate_request {
  std::string id;     // unique per engine request
  std::string model;  // the served model name
  std::vector<int32_t> prompt;
  wire_sampling params;
  int32_t priority = 0;
  stream_actor reply_to;
  // What the output must match, as runtime/structured/constraint_spec.hpp writes it (a
  // compiled grammar cannot travel; the worker compiles this, once per spec); "" for none.
  std::string constraint;
};

struct wire_kv_event {
  uint64_t event_id = 0;
  uint8_t type = 0;  // kv_event::kind
  std::vector<uint64_t> hashes;
  bool has_parent = false;
  uint64_t parent = 0;
  int32_t block_size = 0;
};

struct kv_events_msg {
  std::string worker;
  std::vector<wire_kv_event> events;
};

// A worker as the router knows it.
struct worker_info {
  std::string name;   // unique in the cluster: "<node>/w<i>"
  std::string node;
  std::string model;  // served model name
  int32_t kv_block_size = 0;
  int32_t kv_blocks_total = 0;
  int32_t max_seq_len = 0;
  int32_t max_batch_size = 0;
  uint64_t hash_salt = 0;
};

// What a worker is started with: the model and its engine's settings (runtime/engine/factory.hpp).
struct worker_spec {
  std::string model_path;
  std::string served_name;
  engine_spec engine;
};

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
};

// What the router knows, for /metrics, /v1/actors and tests.
struct router_stats {
  int64_t requests = 0;
  int64_t retried = 0;           // resubmitted after their worker was lost
  int64_t failed = 0;            // ended with an error by the router
  int64_t aborted = 0;           // stopped by their client (a disconnect, or the frontend)
  int64_t prompt_tokens = 0;     // of finished requests
  int64_t cached_tokens = 0;     // of those, served from a worker's prefix cache
  int64_t best_prefix_tokens = 0;  // cached on the best worker when each was routed
  int64_t routed_prefix_tokens = 0;  // cached on the chosen worker when each was routed
  int64_t routed_prompt_tokens = 0;
  // Per worker, in the same order.
  std::vector<std::string> workers;
  std::vector<std::string> models;
  std::vector<uint8_t> alive;
  std::vector<int64_t> in_flight_tokens;
  std::vector<int64_t> worker_prompt_tokens;
  std::vector<int64_t> worker_cached_tokens;
  std::vector<uint64_t> kv_events;      // events received
  std::vector<uint64_t> kv_event_gaps;  // events missing from the sequence (should stay 0)
  std::vector<uint64_t> kv_cached_blocks;
};

struct forward_result {
  std::vector<float> logits;
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
using first_token_atom = caf::atom_constant<caf::atom("firsttok")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using list_atom = caf::atom_constant<caf::atom("list")>;
using stats_atom = caf::atom_constant<caf::atom("stats")>;

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

// Passes a worker's KV events on, in order, to every router that subscribed.
using publisher_actor = caf::typed_actor<
    caf::reacts_to<subscribe_atom, kv_sink_actor>,
    caf::reacts_to<kv_events_atom, kv_events_msg>,
    caf::replies_to<metrics_atom>::with<actor_stats>>;

// Owns one engine and runs its step loop.
using worker_actor = caf::typed_actor<
    caf::reacts_to<submit_atom, generate_request>,
    caf::reacts_to<abort_atom, std::string>,
    caf::reacts_to<stop_atom>,
    caf::replies_to<metrics_atom>::with<actor_stats>>;

// One per process: starts and stops workers, and reports on its actors.
using node_agent_actor = caf::typed_actor<
    caf::replies_to<start_atom, worker_spec>::with<worker_actor, publisher_actor, worker_info>,
    caf::replies_to<stop_atom, std::string>::with<bool>,
    caf::replies_to<metrics_atom>::with<std::vector<actor_stats>>>;

// Picks a worker per request, tracks what is in flight, fails over when a worker is lost.
using router_actor = kv_sink_actor::extend<
    caf::reacts_to<submit_atom, generate_request>,
    caf::reacts_to<abort_atom, std::string>,
    caf::reacts_to<first_token_atom, std::string>,
    caf::reacts_to<done_atom, std::string, int32_t, int32_t>,  // id, prompt, cached tokens
    caf::replies_to<register_atom, worker_actor, publisher_actor, worker_info>::with<bool>,
    caf::replies_to<register_atom, node_agent_actor, std::string>::with<bool>,
    caf::replies_to<list_atom>::with<std::vector<worker_info>>,
    caf::replies_to<stats_atom>::with<router_stats>,
    caf::replies_to<metrics_atom>::with<std::vector<actor_stats>>>;

// ---- serialisation -----------------------------------------------------------------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_logprob& x) {
  return f(caf::meta::type_name("wire_logprob"), x.id, x.logprob, x.top_ids, x.top_logprobs);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_delta& x) {
  return f(caf::meta::type_name("token_delta"), x.id, x.tokens, x.logprobs, x.text, x.finished,
           x.finish_reason, x.stop_string, x.prompt_tokens, x.completion_tokens, x.cached_tokens,
           x.error_status, x.error, x.worker);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, wire_sampling& x) {
  return f(caf::meta::type_name("wire_sampling"), x.temperature, x.top_p, x.min_p,
           x.repetition_penalty, x.presence_penalty, x.frequency_penalty, x.top_k, x.logprobs,
           x.max_tokens, x.min_tokens, x.bias_ids, x.bias_values, x.has_seed, x.seed,
           x.stop_token_ids, x.stop, x.ignore_eos);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, generate_request& x) {
  return f(caf::meta::type_name("generate_request"), x.id, x.model, x.prompt, x.params, x.priority,
           x.reply_to, x.constraint);
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
typename Inspector::result_type inspect(Inspector& f, worker_info& x) {
  return f(caf::meta::type_name("worker_info"), x.name, x.node, x.model, x.kv_block_size,
           x.kv_blocks_total, x.max_seq_len, x.max_batch_size, x.hash_salt);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, engine_spec& x) {
  return f(caf::meta::type_name("engine_spec"), x.device, x.threads, x.kv_block_size, x.kv_n_blocks,
           x.kv_cache_bytes, x.kv_cache_fraction, x.max_batch_size, x.max_num_tokens, x.max_seq_len,
           x.enable_chunked_prefill, x.hybrid_prefill, x.prefix_cache, x.max_recycling_seqs);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_spec& x) {
  return f(caf::meta::type_name("worker_spec"), x.model_path, x.served_name, x.engine);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, actor_stats& x) {
  return f(caf::meta::type_name("actor_stats"), x.node, x.actor, x.role, x.mailbox_size,
           x.messages_total, x.handling_seconds, x.running, x.waiting, x.kv_blocks_used,
           x.kv_blocks_total);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, router_stats& x) {
  return f(caf::meta::type_name("router_stats"), x.requests, x.retried, x.failed, x.aborted, x.prompt_tokens,
           x.cached_tokens, x.best_prefix_tokens, x.routed_prefix_tokens, x.routed_prompt_tokens,
           x.workers, x.models, x.alive, x.in_flight_tokens, x.worker_prompt_tokens,
           x.worker_cached_tokens, x.kv_events, x.kv_event_gaps, x.kv_cached_blocks);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, forward_result& x) {
  return f(caf::meta::type_name("forward_result"), x.logits, x.error, x.seconds);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, forward_batch::seq& x) {
  return f(caf::meta::type_name("forward_seq"), x.n_past, x.n_new, x.n_logits, x.table_offset,
           x.table_size);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, forward_batch& x) {
  return f(caf::meta::type_name("forward_batch"), x.tokens, x.seqs, x.block_tables);
}

}  // namespace troupe

CAF_BEGIN_TYPE_ID_BLOCK(troupe, caf::first_custom_type_id)
CAF_ADD_TYPE_ID(troupe, (troupe::wire_logprob))
CAF_ADD_TYPE_ID(troupe, (troupe::token_delta))
CAF_ADD_TYPE_ID(troupe, (troupe::wire_sampling))
CAF_ADD_TYPE_ID(troupe, (troupe::generate_request))
CAF_ADD_TYPE_ID(troupe, (troupe::wire_kv_event))
CAF_ADD_TYPE_ID(troupe, (troupe::kv_events_msg))
CAF_ADD_TYPE_ID(troupe, (troupe::worker_info))
CAF_ADD_TYPE_ID(troupe, (troupe::engine_spec))
CAF_ADD_TYPE_ID(troupe, (troupe::worker_spec))
CAF_ADD_TYPE_ID(troupe, (troupe::actor_stats))
CAF_ADD_TYPE_ID(troupe, (troupe::router_stats))
CAF_ADD_TYPE_ID(troupe, (troupe::forward_result))
CAF_ADD_TYPE_ID(troupe, (troupe::forward_batch))
CAF_ADD_TYPE_ID(troupe, (std::vector<troupe::worker_info>))
CAF_ADD_TYPE_ID(troupe, (std::vector<troupe::actor_stats>))
CAF_ADD_TYPE_ID(troupe, (troupe::stream_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::kv_sink_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::device_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::publisher_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::worker_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::node_agent_actor))
CAF_ADD_TYPE_ID(troupe, (troupe::router_actor))
CAF_END_TYPE_ID_BLOCK(troupe)

namespace troupe {
// Registers the block with an actor system's configuration (both sides of a connection).
void add_troupe_types(caf::actor_system_config& cfg);
// The last delta of a request that failed: HTTP status and a message for the client.
token_delta failure_delta(std::string id, int status, std::string message, std::string worker = "");
// An actor's report: its meter and its mailbox size now.
actor_stats make_stats(const actor_meter& m, size_t mailbox_size);
}  // namespace troupe
