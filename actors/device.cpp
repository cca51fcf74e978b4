#include "actors/device.hpp"

#include <chrono>

#include "actors/metering.hpp"
#include "runtime/executor.hpp"

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
        status s = self->state.ex->forward(b, r.logits);
        if (!s.ok()) r.error = s.message();
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        return r;
      },
      [=](metrics_atom) { return make_stats(self->state.meter, self->mailbox().size()); },
  };
}

}  // namespace

device_actor spawn_device(caf::actor_system& sys, std::shared_ptr<executor> ex, std::string node,
                          std::string name) {
  return sys.spawn<caf::detached>(device_fn, std::move(ex),
                                  actor_meter{std::move(node), std::move(name), "device", 0, 0});
}

}  // namespace troupe
