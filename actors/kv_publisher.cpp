#include "actors/kv_publisher.hpp"

#include <algorithm>
#include <vector>

namespace troupe {
namespace {

struct publisher_state {
  static inline const char* name = "troupe.kv_publisher";
  std::vector<kv_sink_actor> subscribers;
  actor_meter meter;
};

publisher_actor::behavior_type publisher_fn(publisher_actor::stateful_pointer<publisher_state> self,
                                            actor_meter meter) {
  self->state.meter = std::move(meter);
  self->set_down_handler([=](const caf::down_msg& m) {
    auto& subs = self->state.subscribers;
    subs.erase(std::remove_if(subs.begin(), subs.end(), [&](const kv_sink_actor& s) { return s.address() == m.source; }),
               subs.end());
  });
  return {
      [=](subscribe_atom, const kv_sink_actor& sink) {
        metered g(self->state.meter);
        auto& subs = self->state.subscribers;
        if (std::find(subs.begin(), subs.end(), sink) != subs.end()) return;
        self->monitor(sink);
        subs.push_back(sink);
      },
      [=](kv_events_atom, const kv_events_msg& msg) {
        metered g(self->state.meter);
        for (const auto& s : self->state.subscribers) self->send(s, kv_events_atom::value, msg);
      },
      [=](metrics_atom) { return make_stats(self->state.meter, self->mailbox().size()); },
  };
}

}  // namespace

publisher_actor spawn_kv_publisher(caf::actor_system& sys, std::string node, std::string name) {
  return sys.spawn(publisher_fn, actor_meter{std::move(node), std::move(name), "kv_publisher", 0, 0});
}

}  // namespace troupe
