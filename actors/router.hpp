// router: picks a worker for each request (through a routing_policy), tracks what each
// worker has in flight, and owns failure handling: when a worker goes down it stops using it
// at once, resubmits its requests that have streamed nothing, and ends the others with a
// clear error. It keeps each worker's set of cached block hashes from its KV events (in
// order, gaps counted) for the hit-rate metrics and, later, KV-aware routing.
#pragma once

#include <memory>
#include <string>

#include "actors/protocol.hpp"

namespace troupe {

class routing_policy;

router_actor spawn_router(caf::actor_system& sys, std::string node, std::shared_ptr<routing_policy> policy);

}  // namespace troupe
