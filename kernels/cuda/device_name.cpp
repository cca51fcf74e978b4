#include "kernels/cuda/device_name.hpp"

#include <charconv>
#include <string>

namespace troupe::cuda {

result<int> device_index(std::string_view device) {
  if (device == "cpu") return -1;
  if (device == "cuda") return 0;
  if (device.substr(0, 5) == "cuda:") {
    const std::string_view n = device.substr(5);
    int index = -1;
    const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), index);
    if (ec == std::errc() && end == n.data() + n.size() && !n.empty() && index >= 0 && index < 1024) return index;
  }
  return make_error("--device must be cpu, cuda or cuda:N, not " + std::string(device));
}

}  // namespace troupe::cuda
