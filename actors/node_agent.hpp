// node_agent: one per process. Starts workers (loading each model once per process and
// sharing its weights between the workers that serve it), stops them, and gathers the
// metrics of every actor on its node.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "actors/protocol.hpp"

namespace troupe {

struct model_bundle;

// Spawned detached: loading a model blocks for a moment. `preloaded` maps model paths to
// bundles this process has loaded already (the frontend's), so that weights and tokenizer
// are loaded once.
node_agent_actor spawn_node_agent(
    caf::actor_system& sys, std::string node,
    std::map<std::string, std::shared_ptr<const model_bundle>> preloaded = {});

// Free memory for a KV cache of kv_cache_memory when given as a fraction: MemAvailable.
size_t available_memory_bytes();

}  // namespace troupe
