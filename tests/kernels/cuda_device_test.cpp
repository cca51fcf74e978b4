// Proves what the CUDA backend does where no GPU can be used, as on the machines that build
// troupe: every entry point fails at once with the same reason, "no CUDA device:
// cudaGetDeviceCount failed: ...", before allocating anything; and where a GPU is present,
// that the same calls succeed instead.
#include <gtest/gtest.h>

#include "kernels/cuda/bench_probe.hpp"
#include "kernels/cuda/cuda_executor.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/nccl_comm.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/model_config.hpp"

namespace troupe::cuda {
namespace {

model_config tiny() {
  model_config c;
  c.arch_name = "LlamaForCausalLM";
  c.n_vocab = 256;
  c.n_embd = 64;
  c.n_layer = 1;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.head_dim = 16;
  c.n_ff = 128;
  c.max_position = 128;
  return c;
}

TEST(cuda_device, count_says_why_there_is_none) {
  auto n = device_count();
  if (n.ok()) {
    EXPECT_GE(*n, 1);
    return;
  }
  // Without a driver CUDA fails the call (and leaves the count alone): say so, with CUDA's words.
  EXPECT_EQ(n.message().rfind("no CUDA device: ", 0), 0u) << n.message();
  EXPECT_TRUE(n.message().find("cudaGetDeviceCount failed: ") != std::string::npos ||
              n.message().find("the driver reports none") != std::string::npos)
      << n.message();
}

TEST(cuda_device, without_a_gpu_every_entry_point_fails_with_the_reason) {
  auto n = device_count();
  if (n.ok()) GTEST_SKIP() << "this machine has a CUDA device; the no-GPU paths are not reachable here";
  const std::string why = n.message();
  EXPECT_EQ(probe_device(0).message(), why);
  EXPECT_EQ(random_weights(tiny(), 0, 1).message(), why);
  auto ck = checkpoint::synthetic(tiny(), dtype::bf16, 1);
  ASSERT_TRUE(ck.ok()) << ck.message();
  EXPECT_EQ(upload_weights(*ck, 0, precision::bf16).message(), why);
  EXPECT_EQ(copy_bandwidth(0, 1 << 20).message(), why);
  const gemm_shape s{16, 64, 64};
  EXPECT_EQ(cublas_gemm_seconds(0, std::span(&s, 1)).message(), why);
  auto g = nccl_group::create(plan_ranks(std::vector<int>{0}));
  ASSERT_FALSE(g.ok());
  if (have_nccl()) {
    EXPECT_EQ(g.message(), why);
  } else {
    EXPECT_NE(g.message().find("no NCCL"), std::string::npos);
  }
  EXPECT_EQ(make_cuda_executor(nullptr, {}).message(), "cuda executor: no weights");
  // Asking again gives the same answer: the failed call left no state behind.
  EXPECT_EQ(device_count().message(), why);
}

TEST(cuda_device, with_a_gpu_the_same_calls_succeed) {
  auto n = device_count();
  if (!n.ok()) GTEST_SKIP() << n.message();
  auto d = probe_device(0);
  ASSERT_TRUE(d.ok()) << d.message();
  EXPECT_GE(d->sm_major, 9) << describe(*d);
  EXPECT_FALSE(probe_device(*n).ok()) << "a device past the last is refused";
  auto w = random_weights(tiny(), 0, 1);
  ASSERT_TRUE(w.ok()) << w.message();
  executor_options o;
  o.kv_n_blocks = 8;
  auto ex = make_cuda_executor(*w, o);
  ASSERT_TRUE(ex.ok()) << ex.message();
  EXPECT_EQ((*ex)->kv_n_blocks(), 8);
  EXPECT_NE((*ex)->describe().find("cuda:0"), std::string::npos);
  auto bw = copy_bandwidth(0, 64 << 20, 2);
  ASSERT_TRUE(bw.ok()) << bw.message();
  EXPECT_GT(*bw, 1e10);
  if (have_nccl()) {
    auto g = nccl_group::create(plan_ranks(std::vector<int>{0, 0}));
    ASSERT_TRUE(g.ok()) << g.message();
    EXPECT_EQ((*g)->n_ranks(), 1);
    EXPECT_NE((*g)->comm(0), nullptr);
  }
}

}  // namespace
}  // namespace troupe::cuda
