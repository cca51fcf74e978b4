// device: the actor that runs one worker's forward passes on its own thread (the CPU
// executor here; a CUDA stream actor implements the same interface), so that the worker
// keeps handling messages while a forward runs. A simulated device answers after the
// modelled time on a timer, with no thread of its own: hundreds share the scheduler's.
#pragma once

#include <memory>
#include <string>

#include "actors/protocol.hpp"

namespace troupe {

class executor;
class sim_executor;

// Spawned detached: the forward blocks its thread, never the scheduler's.
device_actor spawn_device(caf::actor_system& sys, std::shared_ptr<executor> ex, std::string node,
                          std::string name);

// Not detached: a forward is a timer, not work.
device_actor spawn_sim_device(caf::actor_system& sys, std::shared_ptr<const sim_executor> ex, std::string node,
                              std::string name);

}  // namespace troupe
