// snapshotter: keeps a router's KV index on disk. Every interval it asks the router for a
// snapshot (runtime/kv_snapshot.hpp) and writes it atomically (a crash leaves the old file or
// the new one, never a mix); `snapshot` writes one at once and answers the bytes written.
// load_snapshot reads one back for a router that starts: a missing file is no snapshot, and
// a corrupt or foreign one is reported in one log line and ignored.
#pragma once

#include <optional>
#include <string>

#include "actors/protocol.hpp"
#include "runtime/kv_snapshot.hpp"

namespace troupe {

struct snapshot_options {
  std::string dir;          // <state-dir>/router
  std::string file;         // "kv-index-0.snapshot"
  double interval_s = 30;
  std::string node;
};

// Detached: writing blocks.
snapshotter_actor spawn_snapshotter(caf::actor_system& sys, router_actor router, snapshot_options options);

// The snapshot at dir/file, if there is a valid one. `log` gets the one line saying why a
// file that is there was ignored.
std::optional<kv_snapshot> load_snapshot(const std::string& dir, const std::string& file, std::string* log);

}  // namespace troupe
