// worker: the actor that owns one engine and runs its step loop. Between steps it accepts
// requests and aborts; each step's forward goes to its device actor, and it keeps handling
// messages while that runs. Token deltas go straight to each request's stream actor, KV
// events to its publisher; the router that routed a request hears of its first token and of
// its end from here. It answers dumps of its cached blocks (with the id of its next event),
// watches the stream actors and aborts a request whose client side is gone.
#pragma once

#include <memory>
#include <string>

#include "actors/protocol.hpp"

namespace troupe {

class engine;
class executor;
struct model_bundle;

struct worker_setup {
  std::string node;
  std::string name;
  std::shared_ptr<const model_bundle> model;  // keeps the tokenizer alive
  std::shared_ptr<engine> eng;
  device_actor device;
  publisher_actor publisher;
  uint64_t instance = 0;  // worker_info::instance
  // What its executor describes itself as, when it returns no hidden states (the CUDA and
  // simulated ones): embedding requests are then refused, saying so. Empty: it returns them.
  std::string no_hidden_states;
  // Disaggregated serving (actors/kv_transfer.hpp): its role (aggregated, prefill, decode), its
  // replication unit, and its executor, whose KV blocks it reads (prefill) or writes (decode)
  // between its steps (never while a forward runs).
  std::string role = "aggregated";
  int32_t unit = 0;
  std::shared_ptr<executor> kv_executor;
};

worker_actor spawn_worker(caf::actor_system& sys, worker_setup setup);

}  // namespace troupe
