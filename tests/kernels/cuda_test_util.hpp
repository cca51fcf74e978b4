// cuda_test_util: what the GPU tests share: skipping, with the reason, when no CUDA device can
// run them (ctest reports such a test as skipped: "no CUDA device: ..."), device copies of
// host vectors, bf16 rounding as the device sees it, and comparisons with stated tolerances.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_util.hpp"
#include "kernels/cuda/device.hpp"
#include "runtime/half.hpp"

#define TROUPE_REQUIRE_GPU()                                                                \
  do {                                                                                      \
    auto troupe_probe_ = ::troupe::cuda::probe_device(0);                                   \
    if (!troupe_probe_.ok()) {                                                              \
      const std::string troupe_why_ = troupe_probe_.message();                              \
      GTEST_SKIP() << (troupe_why_.rfind("no CUDA device", 0) == 0 ? troupe_why_            \
                                                                    : "no CUDA device: " + troupe_why_); \
    }                                                                                       \
  } while (0)

namespace troupe::cuda::testing {

template <class T>
device_buffer upload(const std::vector<T>& v) {
  auto b = device_buffer::alloc(std::max<size_t>(1, v.size()) * sizeof(T), "a test");
  EXPECT_TRUE(b.ok()) << b.message();
  if (!v.empty()) {
    EXPECT_EQ(cudaMemcpy(b->get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  return std::move(*b);
}

template <class T>
std::vector<T> download(const device_buffer& b, size_t n) {
  std::vector<T> v(n);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (n) {
    EXPECT_EQ(cudaMemcpy(v.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  }
  return v;
}

inline std::vector<float> random_floats(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
  return o;
}
inline std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = bf16_to_f32(v[i]);
  return o;
}
// The values a bf16 tensor can hold: inputs are rounded so that host and device start equal.
inline std::vector<float> round_bf16(const std::vector<float>& v) { return from_bf16(to_bf16(v)); }

// |got - want| <= abs + rel * |want| everywhere; reports the worst element.
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, double abs, double rel,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t worst = 0;
  double worst_excess = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]), lim = abs + rel * std::fabs(want[i]);
    if (!(d <= lim) && d - lim > worst_excess) {
      worst_excess = d - lim;
      worst = i;
    }
  }
  EXPECT_LT(worst_excess, 0.0) << what << ": element " << worst << " is " << got[worst] << ", want " << want[worst];
}

inline void sync() { ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess); }

}  // namespace troupe::cuda::testing
