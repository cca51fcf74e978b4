#include "actors/cuda_stream.hpp"

#include <cstdio>
#include <deque>

#include <fmt/format.h>

#include "actors/metering.hpp"
#include "kernels/cuda/cuda_executor.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/device_name.hpp"
#include "kernels/cuda/nccl_comm.hpp"
#include "runtime/checkpoint.hpp"

namespace troupe {
namespace {

struct cuda_stream_state {
  static inline const char* name = "troupe.cuda_stream";
  struct job {
    forward_batch batch;
    caf::typed_response_promise<forward_result> rp;
  };
  std::shared_ptr<cuda::cuda_executor> ex;
  std::shared_ptr<cuda::nccl_group> nccl;  // held for KV transfers
  int rank = -1;
  actor_meter meter;
  std::deque<job> queue;  // the front one is on the stream while busy
  bool busy = false;
  uint64_t seq = 0;  // numbers forwards, so a stale completion cannot be taken for the current one
};

using self_ptr = cuda_stream_actor::stateful_pointer<cuda_stream_state>;

// Runs on a CUDA driver thread when the stream has finished a forward: it may not call CUDA,
// so it only posts the news back to the actor.
struct completion {
  cuda_stream_actor self;
  uint64_t seq;
};
void on_stream_done(void* p) {
  auto* c = static_cast<completion*>(p);
  caf::anon_send(c->self, done_atom::value, c->seq);
  delete c;
}

void fail_front(self_ptr self, const std::string& error) {
  auto& st = self->state;
  forward_result r;
  r.error = error;
  st.queue.front().rp.deliver(std::move(r));
  st.queue.pop_front();
}

// Puts the next queued forward on the stream, answering at once those that cannot start.
void start_next(self_ptr self) {
  auto& st = self->state;
  while (!st.busy && !st.queue.empty()) {
    if (status s = st.ex->enqueue(st.queue.front().batch); !s.ok()) {
      fail_front(self, s.message());
      continue;
    }
    auto* c = new completion{self, ++st.seq};
    if (status s = st.ex->notify_when_done(&on_stream_done, c); !s.ok()) {
      delete c;
      std::vector<float> unused;
      (void)st.ex->collect(unused, nullptr);  // waits: the stream is broken, nothing else works
      fail_front(self, s.message());
      continue;
    }
    st.busy = true;
  }
}

cuda_stream_actor::behavior_type cuda_stream_fn(self_ptr self, std::shared_ptr<cuda::cuda_executor> ex,
                                                std::shared_ptr<cuda::nccl_group> nccl, int rank,
                                                actor_meter meter) {
  self->state.ex = std::move(ex);
  self->state.nccl = std::move(nccl);
  self->state.rank = rank;
  self->state.meter = std::move(meter);
  return {
      [=](forward_atom, forward_batch& b) -> caf::result<forward_result> {
        metered m(self->state.meter);
        if (b.n_hidden_rows() > 0) {
          forward_result r;
          r.error = "the CUDA executor does not return hidden states, so it cannot compute embeddings; serve "
                    "the model on the CPU for them";
          return r;
        }
        auto rp = self->make_response_promise<forward_result>();
        self->state.queue.push_back({std::move(b), rp});
        start_next(self);
        return rp;
      },
      [=](done_atom, uint64_t seq) {
        metered m(self->state.meter);
        auto& st = self->state;
        if (!st.busy || seq != st.seq) return;
        st.busy = false;
        forward_result r;
        if (status s = st.ex->collect(r.logits, &r.seconds); !s.ok()) r.error = s.message();
        st.queue.front().rp.deliver(std::move(r));
        st.queue.pop_front();
        start_next(self);
      },
      [=](metrics_atom) { return make_stats(self->state.meter, self->mailbox().size()); },
  };
}

}  // namespace

device_actor spawn_cuda_stream(caf::actor_system& sys, std::shared_ptr<cuda::cuda_executor> ex,
                               std::shared_ptr<cuda::nccl_group> nccl, int rank, std::string node, std::string name) {
  cuda_stream_actor a = sys.spawn(cuda_stream_fn, std::move(ex), std::move(nccl), rank,
                                  actor_meter{std::move(node), std::move(name), "device", 0, 0});
  return a;
}

device_actor cuda_devices::spawn(caf::actor_system& sys, std::shared_ptr<cuda::cuda_executor> ex, std::string node,
                                 std::string name) {
  const int device = ex->device();
  stream_devices_.push_back(device);
  const cuda::rank_plan plan = cuda::plan_ranks(stream_devices_);
  // A device not in the communicator yet means a new one over all of them (actors keep theirs).
  if (!nccl_ || nccl_->n_ranks() != static_cast<int>(plan.devices.size())) {
    auto g = cuda::nccl_group::create(plan);
    if (g.ok()) {
      nccl_ = *g;
      nccl_error_.clear();
    } else {
      nccl_.reset();
      if (g.message() != nccl_error_) {
        nccl_error_ = g.message();
        std::fprintf(stderr, "troupe: %s: NCCL is not set up (KV transfers between devices will not work): %s\n",
                     name.c_str(), nccl_error_.c_str());
      }
    }
  }
  const int rank = nccl_ ? plan.rank_of_stream.back() : -1;
  return spawn_cuda_stream(sys, std::move(ex), nccl_, rank, std::move(node), std::move(name));
}

}  // namespace troupe
