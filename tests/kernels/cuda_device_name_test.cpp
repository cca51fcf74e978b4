// Proves how --device is read (kernels/cuda/device_name.hpp) and the NCCL rank plan
// (nccl_comm.hpp): plain C++, the same in builds with and without CUDA.
#include <gtest/gtest.h>

#include "kernels/cuda/device_name.hpp"
#include "kernels/cuda/nccl_comm.hpp"

namespace troupe::cuda {
namespace {

TEST(cuda_device_name, cpu_cuda_and_numbered_devices) {
  EXPECT_EQ(*device_index("cpu"), -1);
  EXPECT_EQ(*device_index("cuda"), 0);
  EXPECT_EQ(*device_index("cuda:0"), 0);
  EXPECT_EQ(*device_index("cuda:3"), 3);
}

TEST(cuda_device_name, anything_else_is_an_error_naming_the_flag) {
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1a", "CUDA", "", "cuda:99999"}) {
    auto r = device_index(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.message(), std::string("--device must be cpu, cuda or cuda:N, not ") + bad);
  }
}

TEST(cuda_nccl_plan, one_rank_per_device_shared_by_its_streams) {
  // Three stream actors on device 0, one on device 2, one on device 1.
  const std::vector<int> streams = {0, 0, 2, 0, 1};
  const rank_plan p = plan_ranks(streams);
  EXPECT_EQ(p.devices, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(p.rank_of_stream, (std::vector<int>{0, 0, 2, 0, 1}));
}

TEST(cuda_nccl_plan, one_gpu_is_a_single_rank_communicator) {
  const std::vector<int> streams = {0, 0, 0, 0};
  const rank_plan p = plan_ranks(streams);
  EXPECT_EQ(p.devices, (std::vector<int>{0}));
  EXPECT_EQ(p.rank_of_stream, (std::vector<int>{0, 0, 0, 0}));
  EXPECT_TRUE(plan_ranks({}).devices.empty());
}

}  // namespace
}  // namespace troupe::cuda
