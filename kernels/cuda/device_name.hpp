// device_name: what a --device flag names: "cpu", "cuda" (device 0) or "cuda:N". Plain C++,
// built with or without CUDA, so every build reads the flag the same way.
#pragma once

#include <string_view>

#include "runtime/result.hpp"

namespace troupe::cuda {

// -1 for "cpu", N for "cuda:N", 0 for "cuda"; anything else is an error naming the flag.
[[nodiscard]] result<int> device_index(std::string_view device);

}  // namespace troupe::cuda
