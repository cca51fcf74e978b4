// kv_publisher: takes a worker's KV events (drained from its engine after every step) and
// sends them, in order, to every router that subscribed; forgets routers that go down. It
// keeps the latest events (a bounded count of events and of block hashes), so that a router
// that restarted from a snapshot asks it for the events after the snapshot's and needs no
// full dump when they are still here.
#pragma once

#include <cstddef>
#include <string>

#include "actors/protocol.hpp"

namespace troupe {

struct publisher_limits {
  size_t max_events = 65536;        // events kept for replay
  size_t max_hashes = size_t{1} << 20;  // block hashes in them (8 MiB)
};

publisher_actor spawn_kv_publisher(caf::actor_system& sys, std::string node, std::string name,
                                   publisher_limits limits = {});

}  // namespace troupe
