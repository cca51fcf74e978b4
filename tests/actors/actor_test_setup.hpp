// actor_test_setup: what the actor tests share: the project's own model (for simulated
// workers) and an actor system configuration that knows troupe's types.
#pragma once

#include <cstdlib>
#include <string>

#include "actors/protocol.hpp"

namespace troupe::testing_setup {

inline std::string model_dir() {
  const char* src = std::getenv("TROUPE_SOURCE_DIR");
  return std::string(src ? src : ".") + "/models/troupe-py-7m";
}

inline caf::actor_system_config& with_types(caf::actor_system_config& cfg) {
  add_troupe_types(cfg);
  cfg.set("logger.verbosity", caf::atom("quiet"));
  return cfg;
}

}  // namespace troupe::testing_setup
