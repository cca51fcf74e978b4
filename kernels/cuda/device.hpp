// device: the CUDA devices this process can use, and why not when it cannot, in words a user
// can act on. The header needs no CUDA, so the command line can ask before anything starts.
#pragma once

#include <cstddef>
#include <string>

#include "runtime/result.hpp"

namespace troupe::cuda {

struct device_info {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  int n_sms = 0;
  size_t total_bytes = 0, free_bytes = 0;
};

// The number of devices, or "no CUDA device: cudaGetDeviceCount failed: <CUDA's words>" (no
// driver, no GPU) or "no CUDA device: the driver reports none".
[[nodiscard]] result<int> device_count();

// Device `index`, checked to exist and to run this build's kernels (built for sm_90).
[[nodiscard]] result<device_info> probe_device(int index);

// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB, 78.5 GiB free)".
std::string describe(const device_info& d);

}  // namespace troupe::cuda
