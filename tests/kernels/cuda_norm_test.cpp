// Proves the CUDA RMSNorm kernels against the CPU kernels on random inputs: the norm fused
// with the residual add (written back or not, over gathered rows) and Qwen3's per-head q/k
// norm, in f32 (to 1e-5 relative) and bf16 (inputs rounded to bf16 on both sides; outputs
// to one bf16 step, 2^-6 relative).
#include "tests/kernels/cuda_test_util.hpp"

#include "kernels/cpu/ops.hpp"
#include "kernels/cuda/qk_norm.cuh"
#include "kernels/cuda/rms_norm.cuh"

namespace troupe::cuda {
namespace {

using namespace testing;
constexpr float eps = 1e-5f;

template <class T>
std::vector<float> run_add_rms_norm(std::vector<float>& x, const std::vector<float>* y, const std::vector<int32_t>* rows,
                                    int32_t n_out, int64_t n, const std::vector<float>& w, bool write_back) {
  device_buffer dx = upload(x), dw = upload(w), drows = upload(rows ? *rows : std::vector<int32_t>{});
  device_buffer dy, dout;
  if constexpr (std::is_same_v<T, float>) {
    if (y) dy = upload(*y);
    dout = upload(std::vector<float>(static_cast<size_t>(n_out * n)));
  } else {
    if (y) dy = upload(to_bf16(*y));
    dout = upload(std::vector<uint16_t>(static_cast<size_t>(n_out * n)));
  }
  EXPECT_EQ(launch_add_rms_norm<T>(dx.as<float>(), y ? dy.as<T>() : nullptr, rows ? drows.as<int32_t>() : nullptr,
                                   n_out, n, dw.as<float>(), eps, write_back, dout.as<T>(), nullptr),
            cudaSuccess);
  x = download<float>(dx, x.size());
  if constexpr (std::is_same_v<T, float>) return download<float>(dout, static_cast<size_t>(n_out * n));
  else return from_bf16(download<uint16_t>(dout, static_cast<size_t>(n_out * n)));
}

template <class T>
void check_add_rms_norm(int64_t n, double rel) {
  const int32_t n_rows = 7;
  const bool bf = !std::is_same_v<T, float>;
  std::vector<float> x = random_floats(static_cast<size_t>(n_rows * n), -2, 2, 1);
  std::vector<float> y = random_floats(x.size(), -1, 1, 2), w = random_floats(static_cast<size_t>(n), 0.5f, 1.5f, 3);
  if (bf) y = round_bf16(y);
  // The CPU: x += y, then the norm.
  std::vector<float> cx = x, cout(x.size());
  cpu::add(cx.data(), y.data(), static_cast<int64_t>(x.size()));
  cpu::rms_norm(cx.data(), n, n_rows, n, w.data(), eps, cout.data(), n);
  std::vector<float> gx = x;
  const std::vector<float> got = run_add_rms_norm<T>(gx, &y, nullptr, n_rows, n, w, true);
  expect_close(gx, cx, 0, 0, "the residual written back");
  expect_close(got, bf ? round_bf16(cout) : cout, 1e-6, rel, "the normed rows, n " + std::to_string(n));

  // Gathered rows, nothing written back: rows 5 and 2 of x + y.
  const std::vector<int32_t> rows = {5, 2};
  std::vector<float> gx2 = x;
  const std::vector<float> got2 = run_add_rms_norm<T>(gx2, &y, &rows, 2, n, w, false);
  expect_close(gx2, x, 0, 0, "x untouched");
  std::vector<float> want2;
  for (int32_t r : rows) want2.insert(want2.end(), cout.begin() + r * n, cout.begin() + (r + 1) * n);
  expect_close(got2, bf ? round_bf16(want2) : want2, 1e-6, rel, "gathered rows");

  // No y: the norm alone.
  std::vector<float> plain(x.size());
  cpu::rms_norm(x.data(), n, n_rows, n, w.data(), eps, plain.data(), n);
  std::vector<float> gx3 = x;
  const std::vector<float> got3 = run_add_rms_norm<T>(gx3, nullptr, nullptr, n_rows, n, w, true);
  expect_close(got3, bf ? round_bf16(plain) : plain, 1e-6, rel, "without a residual");
}

TEST(cuda_rms_norm, f32_matches_the_cpu) {
  TROUPE_REQUIRE_GPU();
  for (int64_t n : {64, 1000, 4096, 5120}) check_add_rms_norm<float>(n, 1e-5);
}

TEST(cuda_rms_norm, bf16_matches_the_cpu_to_bf16_resolution) {
  TROUPE_REQUIRE_GPU();
  for (int64_t n : {64, 4096}) check_add_rms_norm<bf16>(n, 1.0 / 64);
}

template <class T>
void check_head_norm(int32_t head_dim, double rel) {
  const int32_t n_tokens = 5, n_q = 4, n_k = 2;
  const int64_t ld = (n_q + 2 * n_k) * head_dim, k_col0 = n_q * head_dim;
  const bool bf = !std::is_same_v<T, float>;
  std::vector<float> x = random_floats(static_cast<size_t>(n_tokens * ld), -3, 3, 4);
  if (bf) x = round_bf16(x);
  const std::vector<float> wq = random_floats(static_cast<size_t>(head_dim), 0.5f, 1.5f, 5),
                           wk = random_floats(static_cast<size_t>(head_dim), 0.5f, 1.5f, 6);
  std::vector<float> want = x;
  for (int32_t t = 0; t < n_tokens; ++t) {
    float* row = want.data() + t * ld;
    cpu::rms_norm(row, head_dim, n_q, head_dim, wq.data(), eps, row, head_dim);
    cpu::rms_norm(row + k_col0, head_dim, n_k, head_dim, wk.data(), eps, row + k_col0, head_dim);
  }
  device_buffer dwq = upload(wq), dwk = upload(wk);
  std::vector<float> got;
  if constexpr (std::is_same_v<T, float>) {
    device_buffer dx = upload(x);
    ASSERT_EQ(launch_head_rms_norm<T>(dx.as<T>(), ld, n_tokens, n_q, head_dim, 0, dwq.as<float>(), eps, nullptr), cudaSuccess);
    ASSERT_EQ(launch_head_rms_norm<T>(dx.as<T>(), ld, n_tokens, n_k, head_dim, k_col0, dwk.as<float>(), eps, nullptr),
              cudaSuccess);
    got = download<float>(dx, x.size());
  } else {
    device_buffer dx = upload(to_bf16(x));
    ASSERT_EQ(launch_head_rms_norm<T>(dx.as<T>(), ld, n_tokens, n_q, head_dim, 0, dwq.as<float>(), eps, nullptr), cudaSuccess);
    ASSERT_EQ(launch_head_rms_norm<T>(dx.as<T>(), ld, n_tokens, n_k, head_dim, k_col0, dwk.as<float>(), eps, nullptr),
              cudaSuccess);
    got = from_bf16(download<uint16_t>(dx, x.size()));
    want = round_bf16(want);
  }
  expect_close(got, want, 1e-6, rel, "head norm, head_dim " + std::to_string(head_dim));
}

TEST(cuda_qk_norm, per_head_norm_matches_the_cpu) {
  TROUPE_REQUIRE_GPU();
  for (int32_t hd : {16, 64, 128, 256}) check_head_norm<float>(hd, 1e-5);
  for (int32_t hd : {32, 128}) check_head_norm<bf16>(hd, 1.0 / 64);
}

}  // namespace
}  // namespace troupe::cuda
