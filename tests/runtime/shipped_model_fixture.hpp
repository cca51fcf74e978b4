// shipped_model_fixture: a GoogleTest fixture over the project's own model (models/troupe-py-7m),
// loaded once per test suite, and CPU executors of it (2 threads, 16-token KV blocks). For the
// engine tests that need real text and a trained model's behaviour (structured output,
// speculative decoding).
#pragma once

#include <memory>

#include <gtest/gtest.h>

#include "runtime/cpu_executor.hpp"
#include "runtime/model_bundle.hpp"
#include "tests/test_data.hpp"

namespace troupe::testing {

class shipped_model_fixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto b = load_model(source_dir() + "/models/troupe-py-7m");
    ASSERT_TRUE(b.ok()) << b.message();
    bundle_ = new model_bundle(std::move(*b));
  }
  static void TearDownTestSuite() {
    delete bundle_;
    bundle_ = nullptr;
  }

  static std::unique_ptr<executor> make_executor(int32_t n_blocks = 512) {
    cpu_executor_options o;
    o.n_threads = 2;
    o.kv_block_size = 16;
    o.kv_n_blocks = n_blocks;
    auto ex = make_cpu_executor(bundle_->weights, o);
    EXPECT_TRUE(ex.ok()) << ex.message();
    return ex.ok() ? std::move(*ex) : nullptr;
  }

  static inline model_bundle* bundle_ = nullptr;
};

}  // namespace troupe::testing
