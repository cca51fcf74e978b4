// device: the actor that runs one worker's forward passes on its own thread (the CPU
// executor here; a CUDA stream actor implements the same interface), so that the worker
// keeps handling messages while a forward runs.
#pragma once

#include <memory>
#include <string>

#include "actors/protocol.hpp"

namespace troupe {

class executor;

// Spawned detached: the forward blocks its thread, never the scheduler's.
device_actor spawn_device(caf::actor_system& sys, std::shared_ptr<executor> ex, std::string node,
                          std::string name);

}  // namespace troupe
