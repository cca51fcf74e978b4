// Proves the small CUDA kernels against the CPU: the embedding gather from f32, f16, bf16 and
// q8_0 tables (exactly: every stored value is exact in f32), the q/k/v bias add (exactly) and
// SiLU-and-multiply (f32 to 1e-5 relative, the two exps differing by a few ulp; bf16 to one
// bf16 step).
#include "tests/kernels/cuda_test_util.hpp"

#include <cstring>

#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cuda/bias_add.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/silu_mul.cuh"

namespace troupe::cuda {
namespace {

using namespace testing;

// A table of n_vocab rows of n_embd values stored as `type`, and its CPU view.
std::vector<uint8_t> make_table(cpu::wtype type, int64_t n_vocab, int64_t n_embd) {
  const std::vector<float> v = random_floats(static_cast<size_t>(n_vocab * n_embd), -2, 2, 11);
  std::vector<uint8_t> bytes;
  auto put16 = [&](uint16_t h) {
    bytes.push_back(static_cast<uint8_t>(h));
    bytes.push_back(static_cast<uint8_t>(h >> 8));
  };
  switch (type) {
    case cpu::wtype::f32:
      bytes.resize(v.size() * 4);
      std::memcpy(bytes.data(), v.data(), bytes.size());
      break;
    case cpu::wtype::f16:
      for (float x : v) put16(f32_to_fp16(x));
      break;
    case cpu::wtype::bf16:
      for (float x : v) put16(f32_to_bf16(x));
      break;
    case cpu::wtype::q8_0:
      for (size_t b = 0; b < v.size(); b += 32) {
        float amax = 0;
        for (size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(v[b + i]));
        const float d = amax / 127.0f;
        put16(f32_to_fp16(d));
        for (size_t i = 0; i < 32; ++i)
          bytes.push_back(static_cast<uint8_t>(static_cast<int8_t>(std::lround(d > 0 ? v[b + i] / d : 0))));
      }
      break;
    default: ADD_FAILURE() << "no table of type " << cpu::wtype_name(type); break;
  }
  return bytes;
}

TEST(cuda_embedding, rows_of_every_table_type_match_the_cpu_exactly) {
  TROUPE_REQUIRE_GPU();
  const int64_t n_vocab = 50, n_embd = 96;
  const std::vector<int32_t> tokens = {3, 49, 0, 3, 17};
  const std::pair<cpu::wtype, table_type> types[] = {{cpu::wtype::f32, table_type::f32},
                                                      {cpu::wtype::f16, table_type::f16},
                                                      {cpu::wtype::bf16, table_type::bf16},
                                                      {cpu::wtype::q8_0, table_type::q8_0}};
  for (auto [ct, gt] : types) {
    const std::vector<uint8_t> table = make_table(ct, n_vocab, n_embd);
    cpu::weight_matrix m;
    m.type = ct;
    m.data = table.data();
    m.n_out = n_vocab;
    m.n_in = n_embd;
    std::vector<float> want(tokens.size() * static_cast<size_t>(n_embd));
    for (size_t t = 0; t < tokens.size(); ++t)
      cpu::dequantize_rows(m, tokens[t], tokens[t] + 1, want.data() + t * static_cast<size_t>(n_embd));
    device_buffer dt = upload(table), dtok = upload(tokens), dx = upload(std::vector<float>(want.size()));
    ASSERT_EQ(launch_embedding(dt.get(), gt, n_embd, dtok.as<int32_t>(), static_cast<int32_t>(tokens.size()),
                               dx.as<float>(), nullptr),
              cudaSuccess);
    expect_close(download<float>(dx, want.size()), want, 0, 0, "table type " + std::to_string(static_cast<int>(gt)));
  }
}

TEST(cuda_bias_add, adds_each_column_its_bias) {
  TROUPE_REQUIRE_GPU();
  const int32_t n_rows = 6;
  const int64_t n = 80, ld = 100;  // the bias covers the first 80 of 100 columns
  const std::vector<float> x = round_bf16(random_floats(static_cast<size_t>(n_rows * ld), -1, 1, 12));
  const std::vector<float> b = random_floats(static_cast<size_t>(n), -1, 1, 13);
  std::vector<float> want = x;
  for (int32_t r = 0; r < n_rows; ++r)
    for (int64_t j = 0; j < n; ++j) want[static_cast<size_t>(r * ld + j)] += b[static_cast<size_t>(j)];
  device_buffer db = upload(b);
  {
    device_buffer dx = upload(x);
    ASSERT_EQ(launch_bias_add<float>(dx.as<float>(), ld, n_rows, n, db.as<float>(), nullptr), cudaSuccess);
    expect_close(download<float>(dx, x.size()), want, 0, 0, "f32");
  }
  device_buffer dx = upload(to_bf16(x));
  ASSERT_EQ(launch_bias_add<bf16>(dx.as<bf16>(), ld, n_rows, n, db.as<float>(), nullptr), cudaSuccess);
  expect_close(from_bf16(download<uint16_t>(dx, x.size())), round_bf16(want), 0, 0, "bf16");
}

TEST(cuda_silu_mul, matches_the_cpu) {
  TROUPE_REQUIRE_GPU();
  const int32_t n_rows = 5;
  const int64_t n_ff = 1000;
  const std::vector<float> gu = round_bf16(random_floats(static_cast<size_t>(n_rows * 2 * n_ff), -8, 8, 14));
  std::vector<float> want(static_cast<size_t>(n_rows * n_ff));
  for (int32_t r = 0; r < n_rows; ++r) {
    std::vector<float> g(gu.begin() + r * 2 * n_ff, gu.begin() + r * 2 * n_ff + n_ff);
    const float* u = gu.data() + r * 2 * n_ff + n_ff;
    cpu::silu_mul(g.data(), u, n_ff);
    std::copy(g.begin(), g.end(), want.begin() + r * n_ff);
  }
  {
    device_buffer dgu = upload(gu), dout = upload(std::vector<float>(want.size()));
    ASSERT_EQ(launch_silu_mul<float>(dgu.as<float>(), n_rows, n_ff, dout.as<float>(), nullptr), cudaSuccess);
    expect_close(download<float>(dout, want.size()), want, 1e-6, 1e-5, "f32");
  }
  device_buffer dgu = upload(to_bf16(gu)), dout = upload(std::vector<uint16_t>(want.size()));
  ASSERT_EQ(launch_silu_mul<bf16>(dgu.as<bf16>(), n_rows, n_ff, dout.as<bf16>(), nullptr), cudaSuccess);
  expect_close(from_bf16(download<uint16_t>(dout, want.size())), round_bf16(want), 1e-6, 1.0 / 64, "bf16");
}

}  // namespace
}  // namespace troupe::cuda
