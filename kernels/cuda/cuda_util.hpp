// cuda_util: CUDA errors as troupe errors, and owners for device memory, pinned host memory,
// streams and events. For the host code of kernels/cuda (it includes the CUDA runtime).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>

#include "runtime/result.hpp"

namespace troupe::cuda {

// "cudaErrorNoDevice: no CUDA-capable device is detected"
std::string error_text(cudaError_t e);
// ok, or an error "what: <error_text>".
[[nodiscard]] status check(cudaError_t e, std::string_view what);

#define TROUPE_CUDA_TRY(expr, what)                                         \
  do {                                                                      \
    const cudaError_t troupe_cuda_e_ = (expr);                              \
    if (troupe_cuda_e_ != cudaSuccess) return ::troupe::cuda::check(troupe_cuda_e_, what).err(); \
  } while (0)

// Device memory from cudaMalloc, freed on destruction.
class device_buffer {
 public:
  device_buffer() = default;
  [[nodiscard]] static result<device_buffer> alloc(size_t bytes, std::string_view what);
  device_buffer(device_buffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  device_buffer& operator=(device_buffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
  ~device_buffer();

  void* get() const { return p_; }
  template <class T>
  T* as() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory (cudaMallocHost), so that copies to and from it run asynchronously.
class pinned_buffer {
 public:
  pinned_buffer() = default;
  [[nodiscard]] static result<pinned_buffer> alloc(size_t bytes, std::string_view what);
  pinned_buffer(pinned_buffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  pinned_buffer& operator=(pinned_buffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  pinned_buffer(const pinned_buffer&) = delete;
  pinned_buffer& operator=(const pinned_buffer&) = delete;
  ~pinned_buffer();

  template <class T>
  T* as() const { return static_cast<T*>(p_); }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

// Makes device the current one of the calling thread (CUDA's current device is per thread,
// and an actor's handlers may run on any of the scheduler's threads).
[[nodiscard]] status use_device(int device);

}  // namespace troupe::cuda
