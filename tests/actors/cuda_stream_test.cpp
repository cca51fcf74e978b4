// Proves the CUDA stream actor: forwards sent to it (several in flight at once) each come back
// with the logits a synchronous forward gives, their device time measured;
// a bad batch is answered with an error and the actor goes on; several stream actors share
// one device (and its weights); metrics count the messages. Skips without a GPU.
#include <gtest/gtest.h>

#include <fstream>
#include <numeric>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/cuda_stream.hpp"
#include "actors/protocol.hpp"
#include "kernels/cuda/cuda_executor.hpp"
#include "kernels/cuda/device.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/engine/factory.hpp"
#include "tests/test_data.hpp"

namespace troupe {
namespace {

#define REQUIRE_GPU()                                                                               \
  do {                                                                                              \
    auto d_ = cuda::probe_device(0);                                                                \
    if (!d_.ok())                                                                                   \
      GTEST_SKIP() << (d_.message().rfind("no CUDA device", 0) == 0 ? d_.message()                  \
                                                                    : "no CUDA device: " + d_.message()); \
  } while (0)

std::string test_model() {
  const std::string dir = testing::build_dir() + "/testmodels";
  std::ifstream in(dir + "/models.json");
  if (!in) return "";
  for (const std::string& n : nlohmann::json::parse(in).get<std::vector<std::string>>())
    if (n.find("qwen3-hf-f32") != std::string::npos) return dir + "/" + n;
  return "";
}

std::unique_ptr<cuda::cuda_executor> executor_on(std::shared_ptr<const cuda::device_weights> w) {
  cuda::executor_options o;
  o.kv_block_size = 4;
  o.kv_n_blocks = 64;
  o.max_batch_tokens = 256;
  o.max_seqs = 8;
  auto ex = cuda::make_cuda_executor(std::move(w), o);
  EXPECT_TRUE(ex.ok()) << ex.message();
  return std::move(*ex);
}

forward_batch batch_of(int n, int32_t first_token) {
  forward_batch b;
  std::vector<token_id> toks(static_cast<size_t>(n));
  std::iota(toks.begin(), toks.end(), first_token);
  std::vector<int32_t> table(16);
  std::iota(table.begin(), table.end(), 0);
  b.add(0, toks, table, 1);
  return b;
}

TEST(cuda_stream, answers_forwards_in_order_with_the_synchronous_logits) {
  REQUIRE_GPU();
  const std::string path = test_model();
  ASSERT_FALSE(path.empty()) << "the reference_models fixture makes the test models";
  auto ck = checkpoint::open(path);
  ASSERT_TRUE(ck.ok()) << ck.message();
  auto w = cuda::upload_weights(*ck, 0, cuda::precision::f32);
  ASSERT_TRUE(w.ok()) << w.message();
  // The expected logits, from a separate executor on the same weights.
  auto reference = executor_on(*w);
  std::vector<std::vector<float>> want;
  for (int i = 0; i < 6; ++i) {
    std::vector<float> l;
    ASSERT_TRUE(reference->forward(batch_of(3 + i, 10 * i), l).ok());
    want.push_back(std::move(l));
  }

  caf::actor_system_config cfg;
  add_troupe_types(cfg);
  caf::actor_system sys{cfg};
  cuda_devices devices;
  std::shared_ptr<cuda::cuda_executor> ex = executor_on(*w);
  device_actor a = devices.spawn(sys, ex, "test", "test/w0/cuda_stream");
  device_actor b = devices.spawn(sys, executor_on(*w), "test", "test/w1/cuda_stream");  // a second stream
  caf::scoped_actor self{sys};
  // Six requests in flight at once to a (queued behind each other on its stream), one to b.
  using handle = decltype(self->request(a, std::chrono::seconds(60), forward_atom::value, forward_batch{}));
  std::vector<handle> pending;
  for (int i = 0; i < 6; ++i)
    pending.push_back(self->request(a, std::chrono::seconds(60), forward_atom::value, batch_of(3 + i, 10 * i)));
  auto on_b = self->request(b, std::chrono::seconds(60), forward_atom::value, batch_of(3, 0));
  std::vector<forward_result> from_a;
  for (auto& h : pending)
    h.receive([&](forward_result& r) { from_a.push_back(std::move(r)); },
              [&](caf::error& e) { FAIL() << sys.render(e); });
  forward_result from_b;
  on_b.receive([&](forward_result& r) { from_b = std::move(r); }, [&](caf::error& e) { FAIL() << sys.render(e); });
  ASSERT_EQ(from_a.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_TRUE(from_a[static_cast<size_t>(i)].error.empty()) << from_a[static_cast<size_t>(i)].error;
    EXPECT_EQ(from_a[static_cast<size_t>(i)].logits, want[static_cast<size_t>(i)]) << "request " << i;
    EXPECT_GT(from_a[static_cast<size_t>(i)].seconds, 0.0);
  }
  EXPECT_EQ(from_b.logits, want[0]);

  // A batch the model cannot take is answered with an error, and the actor goes on.
  forward_batch bad = batch_of(2, 0);
  bad.tokens[0] = 1 << 30;
  self->request(a, std::chrono::seconds(30), forward_atom::value, bad)
      .receive([&](forward_result& r) { EXPECT_FALSE(r.error.empty()); },
               [&](caf::error& e) { FAIL() << sys.render(e); });
  self->request(a, std::chrono::seconds(30), forward_atom::value, batch_of(3, 0))
      .receive([&](forward_result& r) { EXPECT_EQ(r.logits, want[0]); },
               [&](caf::error& e) { FAIL() << sys.render(e); });
  self->request(a, std::chrono::seconds(30), metrics_atom::value)
      .receive([&](actor_stats& s) {
                 EXPECT_EQ(s.role, "device");
                 EXPECT_GE(s.messages_total, 8);
               },
               [&](caf::error& e) { FAIL() << sys.render(e); });
  self->send_exit(a, caf::exit_reason::user_shutdown);
  self->send_exit(b, caf::exit_reason::user_shutdown);
}

TEST(cuda_stream, the_factory_shares_the_weights_of_a_model_per_device) {
  REQUIRE_GPU();
  const std::string path = test_model();
  ASSERT_FALSE(path.empty());
  auto ck = checkpoint::open(path);
  ASSERT_TRUE(ck.ok()) << ck.message();
  auto shared = std::make_shared<const checkpoint>(std::move(*ck));
  executor_factory factory;
  engine_spec spec;
  spec.device = "cuda:0";
  spec.kv_cache_bytes = 1 << 20;
  spec.max_num_tokens = 256;
  spec.max_batch_size = 8;
  auto a = factory.make_executor(shared, path, spec);
  auto b = factory.make_executor(shared, path, spec);
  ASSERT_TRUE(a.ok()) << a.message();
  ASSERT_TRUE(b.ok()) << b.message();
  EXPECT_NE(a->get(), b->get());  // each worker its own stream and cache
  std::vector<float> la, lb;
  ASSERT_TRUE((*a)->forward(batch_of(4, 1), la).ok());
  ASSERT_TRUE((*b)->forward(batch_of(4, 1), lb).ok());
  EXPECT_EQ(la, lb);
  spec.device = "cuda:999";
  EXPECT_FALSE(factory.make_executor(shared, path, spec).ok());
}

}  // namespace
}  // namespace troupe
