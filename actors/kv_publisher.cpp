#include "actors/kv_publisher.hpp"

#include <algorithm>
#include <deque>
#include <vector>

#include <fmt/format.h>

namespace troupe {
namespace {

struct publisher_state {
  static inline const char* name = "troupe.kv_publisher";
  std::vector<kv_sink_actor> subscribers;
  std::string worker;               // whose events (from the first message)
  std::deque<wire_kv_event> kept;  // the latest events, in order
  size_t kept_hashes = 0;
  uint64_t next_event = 0;  // one past the last event seen
  publisher_limits limits;
  actor_meter meter;
};

using self_ptr = publisher_actor::stateful_pointer<publisher_state>;

void keep(self_ptr self, const kv_events_msg& msg) {
  auto& st = self->state;
  st.worker = msg.worker;
  for (const wire_kv_event& e : msg.events) {
    st.kept.push_back(e);
    st.kept_hashes += e.hashes.size();
    st.next_event = e.event_id + 1;
  }
  while (!st.kept.empty() && (st.kept.size() > st.limits.max_events || st.kept_hashes > st.limits.max_hashes)) {
    st.kept_hashes -= st.kept.front().hashes.size();
    st.kept.pop_front();
  }
}

publisher_actor::behavior_type publisher_fn(self_ptr self, actor_meter meter, publisher_limits limits) {
  self->state.meter = std::move(meter);
  self->state.limits = limits;
  self->set_down_handler([=](const caf::down_msg& m) {
    auto& subs = self->state.subscribers;
    subs.erase(std::remove_if(subs.begin(), subs.end(), [&](const kv_sink_actor& s) { return s.address() == m.source; }),
               subs.end());
  });
  return {
      [=](subscribe_atom, const kv_sink_actor& sink) {
        metered g(self->state.meter);
        auto& subs = self->state.subscribers;
        if (std::find(subs.begin(), subs.end(), sink) == subs.end()) {
          self->monitor(sink);
          subs.push_back(sink);
        }
        return self->state.next_event;  // every later event goes to the sink
      },
      [=](kv_events_atom, const kv_events_msg& msg) {
        metered g(self->state.meter);
        keep(self, msg);
        for (const auto& s : self->state.subscribers) self->send(s, kv_events_atom::value, msg);
      },
      [=](replay_atom, uint64_t from) -> caf::result<kv_events_msg> {
        metered g(self->state.meter);
        auto& st = self->state;
        const uint64_t oldest = st.kept.empty() ? st.next_event : st.kept.front().event_id;
        if (from > st.next_event || from < oldest)
          return caf::make_error(caf::sec::runtime_error,
                                 fmt::format("the publisher holds events {} to {}, not from {}", oldest, st.next_event, from));
        kv_events_msg out;
        out.worker = st.worker;
        for (const wire_kv_event& e : st.kept)
          if (e.event_id >= from) out.events.push_back(e);
        return out;
      },
      [=](metrics_atom) { return make_stats(self->state.meter, self->mailbox().size()); },
  };
}

}  // namespace

publisher_actor spawn_kv_publisher(caf::actor_system& sys, std::string node, std::string name, publisher_limits limits) {
  return sys.spawn(publisher_fn, actor_meter{std::move(node), std::move(name), "kv_publisher", 0, 0}, limits);
}

}  // namespace troupe
