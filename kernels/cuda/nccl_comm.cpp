#include "kernels/cuda/nccl_comm.hpp"

#include <fmt/format.h>

#include "kernels/cuda/device.hpp"

#if defined(TROUPE_HAVE_NCCL)
#include <nccl.h>
#endif

namespace troupe::cuda {

bool have_nccl() {
#if defined(TROUPE_HAVE_NCCL)
  return true;
#else
  return false;
#endif
}

result<std::shared_ptr<nccl_group>> nccl_group::create(const rank_plan& plan) {
  if (plan.devices.empty()) return make_error("NCCL: no devices to make a communicator over");
#if defined(TROUPE_HAVE_NCCL)
  // NCCL would fail on a machine without a GPU too, but in its own words; ask CUDA first.
  for (int d : plan.devices) {
    TROUPE_TRY(const device_info info, probe_device(d));
    (void)info;
  }
  std::shared_ptr<nccl_group> g(new nccl_group());
  g->devices_ = plan.devices;
  std::vector<ncclComm_t> comms(plan.devices.size(), nullptr);
  const ncclResult_t r = ncclCommInitAll(comms.data(), static_cast<int>(comms.size()), plan.devices.data());
  if (r != ncclSuccess)
    return make_error(fmt::format("NCCL: ncclCommInitAll over {} device(s) failed: {}", plan.devices.size(),
                                  ncclGetErrorString(r)));
  g->comms_.assign(comms.begin(), comms.end());
  return g;
#else
  return make_error("NCCL: this build has no NCCL (libnccl was not found when it was configured)");
#endif
}

nccl_group::~nccl_group() {
#if defined(TROUPE_HAVE_NCCL)
  for (void* c : comms_)
    if (c) ncclCommDestroy(static_cast<ncclComm_t>(c));
#endif
}

std::string nccl_group::describe() const {
  std::string devs;
  for (int d : devices_) devs += fmt::format("{}cuda:{}", devs.empty() ? "" : ", ", d);
#if defined(TROUPE_HAVE_NCCL)
  int v = 0;
  ncclGetVersion(&v);
  return fmt::format("NCCL {}.{}.{}, {} rank{} ({})", v / 10000, v / 100 % 100, v % 100, devices_.size(),
                     devices_.size() == 1 ? "" : "s", devs);
#else
  return "no NCCL";
#endif
}

}  // namespace troupe::cuda
