// Proves the CUDA KV block copy: every plane (each layer's keys and values) of each pair's
// block copied, nothing else touched, waves from copy_waves giving what sequential copies give;
// blocks of 16-byte multiples (uint4 moves) and of 4-byte multiples (word moves).
#include "tests/kernels/cuda_test_util.hpp"

#include <numeric>

#include "kernels/cuda/batch_plan.hpp"
#include "kernels/cuda/kv_copy.cuh"

namespace troupe::cuda {
namespace {

using namespace testing;

void check(size_t block_bytes) {
  const int32_t n_blocks = 12, n_planes = 6;
  const size_t words = block_bytes / 4, plane_bytes = block_bytes * n_blocks;
  std::vector<uint32_t> cache(words * n_blocks * n_planes);
  std::iota(cache.begin(), cache.end(), 1u);
  const std::vector<int32_t> src = {0, 1, 2, 3, 1, 4, 0, 5, 11}, dst = {1, 2, 3, 4, 5, 0, 6, 7, 10};
  // Sequential copies on the host.
  std::vector<uint32_t> want = cache;
  for (size_t i = 0; i < src.size(); ++i)
    for (int32_t p = 0; p < n_planes; ++p)
      std::copy_n(want.begin() + static_cast<ptrdiff_t>((p * n_blocks + src[i]) * words), words,
                  want.begin() + static_cast<ptrdiff_t>((p * n_blocks + dst[i]) * words));
  device_buffer dc = upload(cache);
  for (const auto& wave : copy_waves(src, dst)) {
    std::vector<int32_t> pairs;
    for (auto [s, d] : wave) {
      pairs.push_back(s);
      pairs.push_back(d);
    }
    device_buffer dp = upload(pairs);
    ASSERT_EQ(launch_kv_copy(dc.get(), plane_bytes, n_planes, block_bytes, dp.as<int32_t>(),
                             static_cast<int32_t>(wave.size()), nullptr),
              cudaSuccess);
    sync();
  }
  EXPECT_EQ(download<uint32_t>(dc, cache.size()), want) << "block of " << block_bytes << " bytes";
}

TEST(cuda_kv_copy, copies_every_plane_of_each_pair_in_order) {
  TROUPE_REQUIRE_GPU();
  check(4096);  // 16-byte multiples
  check(4 * 37);  // words
}

}  // namespace
}  // namespace troupe::cuda
