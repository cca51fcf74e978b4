// kv_publisher: takes a worker's KV events (drained from its engine after every step) and
// sends them, in order, to every router that subscribed; forgets routers that go down.
#pragma once

#include <string>

#include "actors/protocol.hpp"

namespace troupe {

publisher_actor spawn_kv_publisher(caf::actor_system& sys, std::string node, std::string name);

}  // namespace troupe
