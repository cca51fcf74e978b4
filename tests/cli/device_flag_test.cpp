// Proves --device on the command line by running the built binary: a name that is not a
// device is a command-line error (exit status 2); `--device cuda` fails at once with status 1,
// saying why, where there is no GPU (or no CUDA backend in the build) for generate, serve, node
// and bench engine; and where there is a GPU, generate runs on it.
#include <gtest/gtest.h>

#include <string>

#include "tests/cli/run_command.hpp"
#if defined(TROUPE_HAVE_CUDA)
#include "kernels/cuda/device.hpp"
#endif

namespace {

using troupe::testing::run_result;

run_result troupe_run(const std::string& args) {
  return troupe::testing::run_command("timeout 60 '" + troupe::testing::troupe_binary() + "' " + args);
}

// Why `--device cuda` cannot work here, or "" when it can.
std::string why_no_cuda() {
#if defined(TROUPE_HAVE_CUDA)
  auto d = troupe::cuda::probe_device(0);
  return d.ok() ? "" : d.message();
#else
  return "this build of troupe has no CUDA backend";
#endif
}

TEST(device_flag, a_name_that_is_not_a_device_is_refused) {
  for (const std::string cmd : {"generate --prompt hi", "serve", "bench engine"}) {
    const run_result r = troupe_run(cmd + " --device tpu");
    EXPECT_EQ(r.rc, 2) << cmd;  // a command-line error
    EXPECT_NE(r.err.find("--device: must be cpu, cuda or cuda:N, not tpu"), std::string::npos) << cmd << ": " << r.err;
  }
}

TEST(device_flag, cuda_without_a_gpu_fails_at_once_saying_why) {
  const std::string why = why_no_cuda();
  if (why.empty()) GTEST_SKIP() << "this machine has a usable GPU";
  const std::string model = troupe::testing::source_dir() + "/models/troupe-py-7m";
  const std::vector<std::string> commands = {
      "generate --device cuda --prompt hi", "serve --device cuda --port 0", "serve --device cuda:1 --port 0",
      "node --role worker --join 127.0.0.1:9 --model " + model + " --device cuda", "bench engine --device cuda"};
  for (const std::string& args : commands) {
    const run_result r = troupe_run(args);
    EXPECT_EQ(r.rc, 1) << args << ": " << r.err;
    EXPECT_NE(r.err.find(why), std::string::npos) << args << ": " << r.err;
    EXPECT_LT(r.seconds, 20.0) << args << " should fail before starting anything";
  }
}

TEST(device_flag, cuda_with_a_gpu_generates) {
  if (!why_no_cuda().empty()) GTEST_SKIP() << why_no_cuda();
  const run_result r = troupe_run("generate --device cuda --prompt 'Once upon a time' --max-tokens 8 --temperature 0 --json");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("\"completion_tokens\": 8"), std::string::npos) << r.out;
}

}  // namespace
