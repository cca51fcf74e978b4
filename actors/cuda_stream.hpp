// cuda_stream: the device actor of a worker on a GPU. It owns one CUDA executor, and so one
// CUDA stream, and never blocks its thread: a forward is queued on the stream, and the stream
// itself reports its end (a host callback posts a message back, after the CUDA events that time
// it), so one CAF thread serves many stream actors; several may share a device. The CUDA
// workers of a process share what is made once per device: the uploaded weights and the NCCL
// communicator that KV transfers between devices will use.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "actors/protocol.hpp"
#include "runtime/result.hpp"

namespace troupe {

class checkpoint;
namespace cuda {
class cuda_executor;
class nccl_group;
struct device_weights;
}  // namespace cuda

// A forward ahead of it, the stream actor queues a request; answers in order. nccl may be null
// (NCCL not set up: no KV transfers, which nothing needs yet).
device_actor spawn_cuda_stream(caf::actor_system& sys, std::shared_ptr<cuda::cuda_executor> ex,
                               std::shared_ptr<cuda::nccl_group> nccl, int rank, std::string node, std::string name);

// What a process's CUDA workers share, owned by its node agent: one NCCL communicator over the
// devices in use. (Weights uploaded once per (model, device) are the executor factory's:
// runtime/engine/factory.hpp.)
class cuda_devices {
 public:
  // Spawns the stream actor of ex, with its device's NCCL rank (set up on first use; if NCCL
  // cannot be set up the actor runs without, and the reason goes to stderr once).
  device_actor spawn(caf::actor_system& sys, std::shared_ptr<cuda::cuda_executor> ex, std::string node,
                     std::string name);

 private:
  std::vector<int> stream_devices_;
  std::shared_ptr<cuda::nccl_group> nccl_;
  std::string nccl_error_;
};

}  // namespace troupe
