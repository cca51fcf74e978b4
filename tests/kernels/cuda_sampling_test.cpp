// Proves the CUDA sampling kernel equal, token for token, to its host reference
// (sampling_ref.hpp, itself tested without a GPU) on random logits: greedy with ties,
// temperature, top-k (ties at the k-th value included), top-p, min-p and their combinations,
// -inf logits, vocabularies from 3 to Qwen's 151936, and many seeds and counters per row.
#include "tests/kernels/cuda_test_util.hpp"

#include <set>

#include "kernels/cuda/sampling.cuh"
#include "kernels/cuda/sampling_ref.hpp"

namespace troupe::cuda {
namespace {

using namespace testing;

sampling_row make_row(float t, int32_t k, float p, float min_p, uint64_t seed, uint64_t counter, int64_t n_vocab) {
  sampling_params sp;
  sp.temperature = t;
  sp.top_k = k;
  sp.top_p = p;
  sp.min_p = min_p;
  sp.seed = seed;
  return *pack_sampling(sp, 0, counter, n_vocab);
}

void check(int32_t n_vocab, uint32_t seed) {
  const int32_t n_rows = 48;
  std::vector<float> logits = random_floats(static_cast<size_t>(n_rows) * n_vocab, -6, 6, seed);
  // Ties at the top and a few impossible tokens.
  for (int32_t r = 0; r < n_rows; ++r) {
    float* row = logits.data() + static_cast<size_t>(r) * n_vocab;
    if (r % 3 == 0) row[n_vocab / 2] = row[n_vocab - 1] = 9.0f;
    if (n_vocab > 4) row[1] = -INFINITY;
  }
  std::vector<sampling_row> rows;
  const float temps[] = {0.0f, 1.0f, 0.7f, 1.5f};
  const int32_t ks[] = {0, 1, 5, 50, n_vocab + 3};
  const float ps[] = {1.0f, 0.9f, 0.5f, 1e-4f};
  const float min_ps[] = {0.0f, 0.05f, 0.3f};
  for (int32_t r = 0; r < n_rows; ++r)
    rows.push_back(make_row(temps[r % 4], ks[r % 5], ps[(r / 4) % 4], min_ps[(r / 3) % 3], 1000 + r, 17 * r, n_vocab));
  device_buffer dl = upload(logits), drows = upload(rows), dout = upload(std::vector<int32_t>(n_rows, -1));
  ASSERT_EQ(launch_sample(dl.as<float>(), n_vocab, n_rows, n_vocab, drows.as<sampling_row>(), dout.as<int32_t>(), nullptr),
            cudaSuccess);
  const std::vector<int32_t> got = download<int32_t>(dout, n_rows);
  for (int32_t r = 0; r < n_rows; ++r) {
    const std::span<const float> row(logits.data() + static_cast<size_t>(r) * n_vocab, static_cast<size_t>(n_vocab));
    EXPECT_EQ(got[static_cast<size_t>(r)], sample_reference(row, rows[static_cast<size_t>(r)]))
        << "vocabulary " << n_vocab << ", row " << r << ": temperature " << rows[static_cast<size_t>(r)].temperature
        << ", top_k " << rows[static_cast<size_t>(r)].top_k << ", top_p " << rows[static_cast<size_t>(r)].top_p
        << ", min_p " << rows[static_cast<size_t>(r)].min_p;
  }
}

TEST(cuda_sampling, equals_the_host_reference_token_for_token) {
  TROUPE_REQUIRE_GPU();
  for (int32_t v : {3, 100, 1000, 1024, 1025, 32000, 128256, 151936}) check(v, static_cast<uint32_t>(v));
}

TEST(cuda_sampling, many_draws_of_one_row_follow_the_reference) {
  TROUPE_REQUIRE_GPU();
  const int32_t n_vocab = 5000, n_rows = 512;
  const std::vector<float> one = random_floats(static_cast<size_t>(n_vocab), -4, 4, 77);
  std::vector<float> logits;
  std::vector<sampling_row> rows;
  for (int32_t r = 0; r < n_rows; ++r) {
    logits.insert(logits.end(), one.begin(), one.end());
    rows.push_back(make_row(0.9f, 40, 0.95f, 0.0f, 5, static_cast<uint64_t>(r), n_vocab));  // one seed, counters 0..511
  }
  device_buffer dl = upload(logits), drows = upload(rows), dout = upload(std::vector<int32_t>(n_rows, -1));
  ASSERT_EQ(launch_sample(dl.as<float>(), n_vocab, n_rows, n_vocab, drows.as<sampling_row>(), dout.as<int32_t>(), nullptr),
            cudaSuccess);
  const std::vector<int32_t> got = download<int32_t>(dout, n_rows);
  std::set<int32_t> distinct;
  for (int32_t r = 0; r < n_rows; ++r) {
    EXPECT_EQ(got[static_cast<size_t>(r)], sample_reference(one, rows[static_cast<size_t>(r)])) << "counter " << r;
    distinct.insert(got[static_cast<size_t>(r)]);
  }
  EXPECT_GT(distinct.size(), 5u);
  EXPECT_LE(distinct.size(), 40u);  // top-k 40
}

}  // namespace
}  // namespace troupe::cuda
