#include "actors/snapshotter.hpp"

#include <sys/stat.h>

#include <chrono>

#include <fmt/format.h>

#include "config/atomic_file.hpp"

namespace troupe {
namespace {

struct snapshotter_state {
  static inline const char* name = "troupe.snapshotter";
  snapshotter_state() = default;  // (CAF would build an aggregate state from the actor pointer)
  router_actor router;
  snapshot_options opt;
  actor_meter meter;
  bool dir_made = false;
};

using self_ptr = snapshotter_actor::stateful_pointer<snapshotter_state>;

// Asks the router for its snapshot and writes it; done gets the bytes written or the error.
template <class Done>
void write_snapshot(self_ptr self, Done done) {
  self->request(self->state.router, std::chrono::seconds(60), snapshot_atom::value)
      .then(
          [=](const std::string& bytes) mutable {
            metered g(self->state.meter);
            auto& s = self->state;
            status ok;
            if (!s.dir_made) ok = config::make_dir_durable(s.opt.dir);
            s.dir_made = ok.ok();
            if (ok.ok()) ok = config::write_file_atomic(s.opt.dir, s.opt.file, bytes);
            if (!ok.ok()) {
              std::fprintf(stderr, "troupe: cannot write the KV index snapshot: %s\n", ok.message().c_str());
              done(caf::make_error(caf::sec::runtime_error, ok.message()));
            } else {
              done(static_cast<uint64_t>(bytes.size()));
            }
          },
          [=](caf::error& e) mutable { done(std::move(e)); });
}

snapshotter_actor::behavior_type snapshotter_fn(self_ptr self, router_actor router, snapshot_options opt) {
  auto& st = self->state;
  st.router = std::move(router);
  st.opt = std::move(opt);
  st.meter = {st.opt.node, st.opt.node + "/snapshotter", "snapshotter", 0, 0};
  self->monitor(st.router);
  self->set_down_handler([=](const caf::down_msg&) { self->quit(); });  // nothing left to write
  const auto every = std::chrono::milliseconds(static_cast<int64_t>(1000 * st.opt.interval_s));
  self->delayed_send(self, every, snapshot_atom::value, uint64_t{0});
  return {
      [=](snapshot_atom) -> caf::result<uint64_t> {
        auto rp = self->make_response_promise<uint64_t>();
        write_snapshot(self, [=](auto outcome) mutable { rp.deliver(std::move(outcome)); });
        return rp;
      },
      [=](snapshot_atom, uint64_t round) {
        write_snapshot(self, [](auto) {});
        self->delayed_send(self, every, snapshot_atom::value, round + 1);
      },
      [=](metrics_atom) { return make_stats(self->state.meter, self->mailbox().size()); },
  };
}

}  // namespace

snapshotter_actor spawn_snapshotter(caf::actor_system& sys, router_actor router, snapshot_options options) {
  return sys.spawn<caf::detached>(snapshotter_fn, std::move(router), std::move(options));
}

std::optional<kv_snapshot> load_snapshot(const std::string& dir, const std::string& file, std::string* log) {
  const std::string path = dir + "/" + file;
  struct stat sb {};
  if (stat(path.c_str(), &sb) != 0) return std::nullopt;  // none yet
  auto bytes = config::read_file(path);
  std::string why;
  if (!bytes.ok()) {
    why = bytes.message();
  } else {
    auto s = decode_kv_snapshot(*bytes);
    if (s.ok()) return std::move(*s);
    why = s.message();
  }
  if (log)
    *log = fmt::format("ignoring the KV index snapshot {}: {}; the router starts empty and rebuilds its index from the "
                       "workers' dumps",
                       path, why);
  return std::nullopt;
}

}  // namespace troupe
