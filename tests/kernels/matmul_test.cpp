// Proves every matmul path (generic, AVX2, AVX-512 micro-kernels, BLAS over dequantized
// panels) equals a double-precision reference for every weight type and awkward shapes.
#include "kernels/cpu/matmul.hpp"

#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cpu/cpu_features.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/half.hpp"

namespace troupe::cpu {
namespace {

struct packed {
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // what the packed weights stand for, as f32
};

packed pack(wtype t, const std::vector<float>& w, int64_t n_out, int64_t n_in) {
  packed p;
  p.values.resize(w.size());
  for (int64_t r = 0; r < n_out; ++r) {
    for (int64_t i = 0; i < n_in; ++i) {
      const float v = w[static_cast<size_t>(r * n_in + i)];
      float stored = v;
      switch (t) {
        case wtype::f32: {
          const auto* b = reinterpret_cast<const uint8_t*>(&v);
          p.bytes.insert(p.bytes.end(), b, b + 4);
          break;
        }
        case wtype::f16: {
          const uint16_t h = f32_to_fp16(v);
          stored = fp16_to_f32(h);
          p.bytes.push_back(static_cast<uint8_t>(h & 0xff));
          p.bytes.push_back(static_cast<uint8_t>(h >> 8));
          break;
        }
        case wtype::bf16: {
          const uint16_t h = f32_to_bf16(v);
          stored = bf16_to_f32(h);
          p.bytes.push_back(static_cast<uint8_t>(h & 0xff));
          p.bytes.push_back(static_cast<uint8_t>(h >> 8));
          break;
        }
        case wtype::q8_0: {
          if (i % 32 == 0) {
            float amax = 0;
            for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(w[static_cast<size_t>(r * n_in + i + j)]));
            const uint16_t dh = f32_to_fp16(amax / 127.0f);
            const float d = fp16_to_f32(dh);
            p.bytes.push_back(static_cast<uint8_t>(dh & 0xff));
            p.bytes.push_back(static_cast<uint8_t>(dh >> 8));
            for (int j = 0; j < 32; ++j) {
              const float x = w[static_cast<size_t>(r * n_in + i + j)];
              const int q = d == 0 ? 0 : static_cast<int>(std::lround(x / d));
              p.bytes.push_back(static_cast<uint8_t>(static_cast<int8_t>(std::clamp(q, -127, 127))));
              p.values[static_cast<size_t>(r * n_in + i + j)] = d * static_cast<float>(std::clamp(q, -127, 127));
            }
          }
          continue;
        }
      }
      p.values[static_cast<size_t>(r * n_in + i)] = stored;
    }
  }
  return p;
}

void check_all_paths(wtype t, int64_t n_rows, int64_t n_out, int64_t n_in) {
  std::mt19937 rng(static_cast<unsigned>(n_rows * 131 + n_out * 7 + n_in));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n_rows * n_in)), w(static_cast<size_t>(n_out * n_in));
  for (float& v : x) v = nd(rng);
  for (float& v : w) v = nd(rng);
  packed p = pack(t, w, n_out, n_in);
  weight_matrix m{t, p.bytes.data(), n_out, n_in};
  std::vector<double> ref(static_cast<size_t>(n_rows * n_out));
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t c = 0; c < n_out; ++c) {
      double s = 0;
      for (int64_t i = 0; i < n_in; ++i)
        s += static_cast<double>(x[static_cast<size_t>(r * n_in + i)]) * p.values[static_cast<size_t>(c * n_in + i)];
      ref[static_cast<size_t>(r * n_out + c)] = s;
    }
  const double tol = 1e-4 * std::sqrt(static_cast<double>(n_in));  // f32 accumulation of n_in terms
  auto compare = [&](const std::vector<float>& y, const char* what) {
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(y[i], ref[i], tol) << what << " type " << static_cast<int>(t) << " rows " << n_rows
                                     << " out " << n_out << " in " << n_in << " at " << i;
  };
  thread_pool pool(3);
  std::vector<float> y(static_cast<size_t>(n_rows * n_out));
  std::vector<detail::tile_fn> tiles = {detail::tile_generic};
  if (detect().avx2) tiles.push_back(detail::tile_avx2);
  if (detect().avx512) tiles.push_back(detail::tile_avx512);
  for (auto tile : tiles) {
    std::fill(y.begin(), y.end(), NAN);
    tile(x.data(), n_in, n_rows, m, 0, n_out, y.data(), n_out);
    compare(y, "tile");
  }
  if (t == wtype::bf16 && n_in % 32 == 0 && detect().avx512_bf16) {
    std::fill(y.begin(), y.end(), NAN);
    detail::tile_avx512bf16(x.data(), n_in, n_rows, m, 0, n_out, y.data(), n_out);
    compare(y, "bf16 dot products, split activations");
    // Activations rounded to bf16: each product is off by at most 2^-8 of its size.
    std::fill(y.begin(), y.end(), NAN);
    detail::tile_avx512bf16_single(x.data(), n_in, n_rows, m, 0, n_out, y.data(), n_out);
    for (int64_t r = 0; r < n_rows; ++r)
      for (int64_t c = 0; c < n_out; ++c) {
        double bound = 0;
        for (int64_t i = 0; i < n_in; ++i)
          bound += std::fabs(static_cast<double>(x[static_cast<size_t>(r * n_in + i)]) * p.values[static_cast<size_t>(c * n_in + i)]);
        ASSERT_NEAR(y[static_cast<size_t>(r * n_out + c)], ref[static_cast<size_t>(r * n_out + c)], bound / 256 + tol)
            << "bf16 dot products, single activations";
      }
  }
  std::fill(y.begin(), y.end(), NAN);
  matmul(x.data(), n_in, n_rows, m, y.data(), n_out, pool, matmul_path::kernel);
  compare(y, "kernel path");
  std::fill(y.begin(), y.end(), NAN);
  matmul(x.data(), n_in, n_rows, m, y.data(), n_out, pool, matmul_path::blas);
  compare(y, "blas path");
  // dequantize_rows gives the values the kernels multiply by
  std::vector<float> rows(static_cast<size_t>(2 * n_in));
  dequantize_rows(m, n_out - 2, n_out, rows.data());
  for (int64_t i = 0; i < 2 * n_in; ++i)
    ASSERT_EQ(rows[static_cast<size_t>(i)], p.values[static_cast<size_t>((n_out - 2) * n_in + i)]);
}

TEST(matmul, every_path_matches_reference_for_every_weight_type) {
  for (wtype t : {wtype::f32, wtype::f16, wtype::bf16, wtype::q8_0})
    for (int64_t rows : {1, 2, 5, 6, 7, 13, 33, 64})
      for (auto [out, in] : {std::pair<int64_t, int64_t>{4, 32}, {7, 64}, {37, 96}, {130, 2048 + 64}})
        check_all_paths(t, rows, out, in);
}

TEST(matmul, results_do_not_depend_on_thread_count) {
  std::vector<float> x(3 * 256), w(300 * 256);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (float& v : x) v = nd(rng);
  for (float& v : w) v = nd(rng);
  weight_matrix m{wtype::f32, w.data(), 300, 256};
  std::vector<float> a(3 * 300), b(3 * 300);
  thread_pool one(1), four(4);
  matmul(x.data(), 256, 3, m, a.data(), 300, one);
  matmul(x.data(), 256, 3, m, b.data(), 300, four);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace troupe::cpu
