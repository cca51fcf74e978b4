// Proves the cuBLASLt products (kernels/cuda/gemm.hpp) against the CPU matmul: y = x · Wᵀ
// row-major, with row strides wider than the rows, in f32 (no TF32: 1e-5 relative to the row's
// scale) and bf16 (inputs rounded to bf16 on both sides; bf16 output to one bf16 step, f32
// output to 1e-5), from decode-sized to prefill-sized m.
#include "tests/kernels/cuda_test_util.hpp"

#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "kernels/cuda/gemm.hpp"

namespace troupe::cuda {
namespace {

using namespace testing;

void check(gemm_runner& g, int64_t m, int64_t n, int64_t k, gemm_type in, gemm_type out) {
  const int64_t ldx = k + 16, ldy = n + 8;
  std::vector<float> w = random_floats(static_cast<size_t>(n * k), -1, 1, 31);
  std::vector<float> x = random_floats(static_cast<size_t>(m * ldx), -1, 1, 32);
  if (in == gemm_type::bf16) {
    w = round_bf16(w);
    x = round_bf16(x);
  }
  cpu::weight_matrix cw;
  cw.type = cpu::wtype::f32;
  cw.data = w.data();
  cw.n_out = n;
  cw.n_in = k;
  std::vector<float> want(static_cast<size_t>(m * ldy), 0.0f);
  cpu::thread_pool pool(2);
  cpu::matmul(x.data(), ldx, m, cw, want.data(), ldy, pool, cpu::precision::f32, cpu::matmul_path::kernel);
  device_buffer dw = in == gemm_type::bf16 ? upload(to_bf16(w)) : upload(w);
  device_buffer dx = in == gemm_type::bf16 ? upload(to_bf16(x)) : upload(x);
  device_buffer dy = out == gemm_type::bf16 ? upload(std::vector<uint16_t>(want.size())) : upload(std::vector<float>(want.size()));
  ASSERT_TRUE(g.run(dw.get(), dx.get(), ldx, dy.get(), ldy, m, n, k, in, out, nullptr).ok());
  std::vector<float> got = out == gemm_type::bf16 ? from_bf16(download<uint16_t>(dy, want.size()))
                                                  : download<float>(dy, want.size());
  // Only the first n columns of each row are results.
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = n; c < ldy; ++c) got[static_cast<size_t>(r * ldy + c)] = want[static_cast<size_t>(r * ldy + c)];
  const double scale = std::sqrt(static_cast<double>(k));  // the typical size of a result
  const bool bf_out = out == gemm_type::bf16;
  expect_close(got, bf_out ? round_bf16(want) : want, 1e-5 * scale, bf_out ? 1.0 / 64 : 1e-5,
               "m " + std::to_string(m) + ", n " + std::to_string(n) + ", k " + std::to_string(k));
}

TEST(cuda_gemm, f32_matches_the_cpu) {
  TROUPE_REQUIRE_GPU();
  auto g = gemm_runner::create();
  ASSERT_TRUE(g.ok()) << g.message();
  for (int64_t m : {1, 7, 64, 300})
    for (auto [n, k] : {std::pair<int64_t, int64_t>{64, 64}, {96, 256}, {1000, 128}})
      check(**g, m, n, k, gemm_type::f32, gemm_type::f32);
}

TEST(cuda_gemm, bf16_matches_the_cpu_with_bf16_or_f32_output) {
  TROUPE_REQUIRE_GPU();
  auto g = gemm_runner::create();
  ASSERT_TRUE(g.ok()) << g.message();
  for (int64_t m : {1, 8, 256})
    for (auto [n, k] : {std::pair<int64_t, int64_t>{64, 64}, {384, 512}, {1000, 256}}) {
      check(**g, m, n, k, gemm_type::bf16, gemm_type::bf16);
      check(**g, m, n, k, gemm_type::bf16, gemm_type::f32);
    }
  EXPECT_GT((*g)->n_plans(), 0u);
}

}  // namespace
}  // namespace troupe::cuda
