// nccl_comm: the NCCL communicators that CUDA stream actors will move KV blocks over when
// serving is disaggregated (a prefill worker hands its blocks to a decode worker). NCCL
// allows one rank per GPU in a communicator, so a process gets one rank per device it uses and
// every stream actor on a device shares that device's rank; on one GPU that is a single-rank
// communicator. The header needs no CUDA or NCCL.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe::cuda {

// The ranks of one process's communicator: the distinct devices of its stream actors, in
// ascending order, and which rank each stream actor uses.
struct rank_plan {
  std::vector<int> devices;         // rank r is devices[r]
  std::vector<int> rank_of_stream;  // per stream actor, in the order given
};
rank_plan plan_ranks(std::span<const int> stream_devices);

// One process's NCCL communicators, one per device of the plan.
class nccl_group {
 public:
  // ncclCommInitAll over the plan's devices. Errors name NCCL's reason ("no CUDA device", or a
  // build without NCCL).
  [[nodiscard]] static result<std::shared_ptr<nccl_group>> create(const rank_plan& plan);
  ~nccl_group();
  nccl_group(const nccl_group&) = delete;
  nccl_group& operator=(const nccl_group&) = delete;

  int n_ranks() const { return static_cast<int>(devices_.size()); }
  int device_of(int rank) const { return devices_.at(static_cast<size_t>(rank)); }
  // The ncclComm_t of a rank (void* keeps NCCL out of this header).
  void* comm(int rank) const { return comms_.at(static_cast<size_t>(rank)); }
  // "NCCL 2.27.3, 1 rank (cuda:0)".
  std::string describe() const;

 private:
  nccl_group() = default;
  std::vector<int> devices_;
  std::vector<void*> comms_;
};

// Whether this build links NCCL.
bool have_nccl();

}  // namespace troupe::cuda
