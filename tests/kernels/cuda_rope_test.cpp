// Proves the CUDA RoPE kernel against the CPU kernel, both styles (neox halves, interleaved
// pairs), with Llama 3 frequency scaling and GGUF rope_freq_factors, at positions up to 10^5,
// query and key heads in one row as the fused q/k/v projection lays them out. The angles are
// computed in double on both sides and rounded once, so f32 agrees to 1e-6 of the values.
#include "tests/kernels/cuda_test_util.hpp"

#include "kernels/cpu/ops.hpp"
#include "kernels/cuda/rope.cuh"
#include "runtime/model_config.hpp"

namespace troupe::cuda {
namespace {

using namespace testing;

template <class T>
void check(bool interleaved, int32_t head_dim) {
  model_config c;
  c.head_dim = head_dim;
  c.rope_theta = 500000.0;
  c.scaling.type = rope_scaling::kind::llama3;
  c.scaling.factor = 8.0;
  std::vector<double> inv_freq = c.rope_inv_freq();
  for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] /= 1.0 + 0.01 * static_cast<double>(i % 5);  // factors
  const int32_t n_tokens = 9, n_q = 4, n_k = 2, half = head_dim / 2;
  const int64_t ld = (n_q + 2 * n_k) * head_dim, k_col0 = n_q * head_dim;
  const std::vector<int32_t> pos = {0, 1, 2, 17, 255, 4096, 8191, 65537, 100000};
  const bool bf = !std::is_same_v<T, float>;
  std::vector<float> x = random_floats(static_cast<size_t>(n_tokens * ld), -2, 2, 21);
  if (bf) x = round_bf16(x);
  // The CPU executor's angles: pos * inv_freq in double, cos and sin rounded to float.
  std::vector<float> cs(static_cast<size_t>(n_tokens * half)), sn(cs.size());
  for (int32_t t = 0; t < n_tokens; ++t)
    for (int32_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(pos[static_cast<size_t>(t)]) * inv_freq[static_cast<size_t>(i)];
      cs[static_cast<size_t>(t * half + i)] = static_cast<float>(std::cos(a));
      sn[static_cast<size_t>(t * half + i)] = static_cast<float>(std::sin(a));
    }
  std::vector<float> want = x;
  cpu::rope(want.data(), ld, n_tokens, n_q, head_dim, cs.data(), sn.data(), interleaved);
  cpu::rope(want.data() + k_col0, ld, n_tokens, n_k, head_dim, cs.data(), sn.data(), interleaved);
  device_buffer dpos = upload(pos), dfreq = upload(inv_freq);
  std::vector<float> got;
  if constexpr (std::is_same_v<T, float>) {
    device_buffer dx = upload(x);
    ASSERT_EQ(launch_rope<T>(dx.as<T>(), ld, n_tokens, n_q, n_k, k_col0, head_dim, dpos.as<int32_t>(), dfreq.as<double>(),
                             interleaved, nullptr),
              cudaSuccess);
    got = download<float>(dx, x.size());
  } else {
    device_buffer dx = upload(to_bf16(x));
    ASSERT_EQ(launch_rope<T>(dx.as<T>(), ld, n_tokens, n_q, n_k, k_col0, head_dim, dpos.as<int32_t>(), dfreq.as<double>(),
                             interleaved, nullptr),
              cudaSuccess);
    got = from_bf16(download<uint16_t>(dx, x.size()));
    want = round_bf16(want);
  }
  // The vacated v columns are untouched by both.
  expect_close(got, want, bf ? 2.0 / 128 : 2e-6, bf ? 1.0 / 64 : 1e-6,
               std::string(interleaved ? "interleaved" : "neox") + ", head_dim " + std::to_string(head_dim));
}

TEST(cuda_rope, neox_matches_the_cpu) {
  TROUPE_REQUIRE_GPU();
  for (int32_t hd : {16, 64, 128, 256}) check<float>(false, hd);
  check<bf16>(false, 128);
}

TEST(cuda_rope, interleaved_matches_the_cpu) {
  TROUPE_REQUIRE_GPU();
  for (int32_t hd : {16, 64, 128}) check<float>(true, hd);
  check<bf16>(true, 64);
}

}  // namespace
}  // namespace troupe::cuda
