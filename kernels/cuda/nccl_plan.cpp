// The rank plan of nccl_comm.hpp: plain C++, built with or without CUDA.
#include <algorithm>

#include "kernels/cuda/nccl_comm.hpp"

namespace troupe::cuda {

rank_plan plan_ranks(std::span<const int> stream_devices) {
  rank_plan p;
  p.devices.assign(stream_devices.begin(), stream_devices.end());
  std::sort(p.devices.begin(), p.devices.end());
  p.devices.erase(std::unique(p.devices.begin(), p.devices.end()), p.devices.end());
  for (int d : stream_devices)
    p.rank_of_stream.push_back(
        static_cast<int>(std::lower_bound(p.devices.begin(), p.devices.end(), d) - p.devices.begin()));
  return p;
}

}  // namespace troupe::cuda
