#include "actors/device.hpp"

#include <chrono>
#include <map>

#include "actors/metering.hpp"
#include "runtime/executor.hpp"
#include "runtime/sim_executor.hpp"

namespace troupe {
namespace {

struct device_state {
  static inline const char* name = "troupe.device";
  std::shared_ptr<executor> ex;
  actor_meter meter;
};

device_actor::behavior_type device_fn(device_actor::stateful_pointer<device_state> self,
                                      std::shared_ptr<executor> ex, actor_meter meter) {
  self->state.ex = std::move(ex);
  self->state.meter = std::move(meter);
  return {
      [=](forward_atom, const forward_batch& b) {
        metered m(self->state.meter);
        forward_result r;
        const auto t0 = std::chrono::steady_clock::now();
        status s = self->state.ex->forward_hidden(b, r.logits, r.hidden);
        if (!s.ok()) r.error = s.message();
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return r;
      },
      [=](metrics_atom) { return make_stats(self->state.meter, self->mailbox().size()); },
  };
}

struct sim_device_state {
  static inline const char* name = "troupe.sim_device";
  std::shared_ptr<const sim_executor> ex;
  actor_meter meter;
  uint64_t next = 0;
  std::map<uint64_t, std::pair<caf::typed_response_promise<forward_result>, forward_result>> pending;
};

sim_device_actor::behavior_type sim_device_fn(sim_device_actor::stateful_pointer<sim_device_state> self,
                                              std::shared_ptr<const sim_executor> ex, actor_meter meter) {
  self->state.ex = std::move(ex);
  self->state.meter = std::move(meter);
  return {
      [=](forward_atom, const forward_batch& b) -> caf::result<forward_result> {
        metered m(self->state.meter);
        forward_result r;
        auto seconds = self->state.ex->plan(b, r.logits);
        if (!seconds.ok()) {
          r.error = seconds.message();
          return r;
        }
        r.seconds = *seconds;
        const uint64_t n = self->state.next++;
        auto rp = self->make_response_promise<forward_result>();
        self->state.pending.emplace(n, std::make_pair(rp, std::move(r)));
        self->delayed_send(self, std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::duration<double>(*seconds)),
                           done_atom::value, n);
        return rp;
      },
      [=](done_atom, uint64_t n) {
        auto it = self->state.pending.find(n);
        if (it == self->state.pending.end()) return;
        it->second.first.deliver(std::move(it->second.second));
        self->state.pending.erase(it);
      },
      [=](metrics_atom) { return make_stats(self->state.meter, self->mailbox().size()); },
  };
}

}  // namespace

device_actor spawn_sim_device(caf::actor_system& sys, std::shared_ptr<const sim_executor> ex, std::string node,
                              std::string name) {
  return caf::actor_cast<device_actor>(
      sys.spawn(sim_device_fn, std::move(ex), actor_meter{std::move(node), std::move(name), "device", 0, 0}));
}

device_actor spawn_device(caf::actor_system& sys, std::shared_ptr<executor> ex, std::string node,
                          std::string name) {
  return sys.spawn<caf::detached>(device_fn, std::move(ex),
                                  actor_meter{std::move(node), std::move(name), "device", 0, 0});
}

}  // namespace troupe
