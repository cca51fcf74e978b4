#include "kernels/cuda/cuda_util.hpp"

#include <fmt/format.h>

namespace troupe::cuda {

std::string error_text(cudaError_t e) { return fmt::format("{}: {}", cudaGetErrorName(e), cudaGetErrorString(e)); }

status check(cudaError_t e, std::string_view what) {
  if (e == cudaSuccess) return {};
  return make_error(fmt::format("{}: {}", what, error_text(e)));
}

result<device_buffer> device_buffer::alloc(size_t bytes, std::string_view what) {
  device_buffer b;
  if (bytes == 0) return b;
  const cudaError_t e = cudaMalloc(&b.p_, bytes);
  if (e != cudaSuccess) {
    b.p_ = nullptr;
    return make_error(fmt::format("cannot allocate {} MiB of device memory for {}: {}", (bytes + (1 << 20) - 1) >> 20,
                                  what, error_text(e)));
  }
  b.bytes_ = bytes;
  return b;
}

device_buffer::~device_buffer() {
  if (p_) cudaFree(p_);  // cudaFree finds the pointer's device itself (unified addressing)
}

result<pinned_buffer> pinned_buffer::alloc(size_t bytes, std::string_view what) {
  pinned_buffer b;
  if (bytes == 0) return b;
  const cudaError_t e = cudaMallocHost(&b.p_, bytes);
  if (e != cudaSuccess) {
    b.p_ = nullptr;
    return make_error(fmt::format("cannot allocate {} MiB of pinned host memory for {}: {}",
                                  (bytes + (1 << 20) - 1) >> 20, what, error_text(e)));
  }
  b.bytes_ = bytes;
  return b;
}

pinned_buffer::~pinned_buffer() {
  if (p_) cudaFreeHost(p_);
}

status use_device(int device) { return check(cudaSetDevice(device), fmt::format("cudaSetDevice({})", device)); }

}  // namespace troupe::cuda
