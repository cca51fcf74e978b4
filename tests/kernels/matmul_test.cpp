// Proves every matmul path equals a double-precision reference for every weight type and
// awkward shapes: the reference path (generic, AVX2, AVX-512 micro-kernels, BLAS over
// dequantized panels) against the stored values, and the fast path (bf16 dot products, integer
// dot products) against the same sums over the activations as it rounds them.
#include "kernels/cpu/matmul.hpp"

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
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
        default: ADD_FAILURE() << "pack: use random_blocks for " << wtype_name(t); return p;
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
  std::fill(y.begin(), y.end(), NAN);
  matmul(x.data(), n_in, n_rows, m, y.data(), n_out, pool, precision::f32, matmul_path::kernel);
  compare(y, "kernel path");
  std::fill(y.begin(), y.end(), NAN);
  matmul(x.data(), n_in, n_rows, m, y.data(), n_out, pool, precision::f32, matmul_path::blas);
  compare(y, "blas path");
  // dequantize_rows gives the values the kernels multiply by
  std::vector<float> rows(static_cast<size_t>(2 * n_in));
  dequantize_rows(m, n_out - 2, n_out, rows.data());
  for (int64_t i = 0; i < 2 * n_in; ++i)
    ASSERT_EQ(rows[static_cast<size_t>(i)], p.values[static_cast<size_t>((n_out - 2) * n_in + i)]);
}

// n values drawn from N(0, 1) with the given seed.
std::vector<float> normal_values(int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(static_cast<size_t>(n));
  for (float& e : v) e = nd(rng);
  return v;
}

// Random GGML blocks of type t: random bits, with scales that keep values in a sane range.
std::vector<uint8_t> random_blocks(wtype t, int64_t n_out, int64_t n_in, unsigned seed) {
  std::mt19937 rng(seed);
  const int64_t n_blocks = n_out * n_in / block_values(t);
  const size_t bb = block_bytes(t);
  std::vector<uint8_t> out(static_cast<size_t>(n_blocks) * bb);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  auto put = [](uint8_t* p, float v) {
    const uint16_t h = f32_to_fp16(v);
    std::memcpy(p, &h, 2);
  };
  for (int64_t b = 0; b < n_blocks; ++b) {
    uint8_t* blk = out.data() + static_cast<size_t>(b) * bb;
    switch (t) {
      case wtype::q8_0: put(blk, u(rng) / 127); break;
      case wtype::q4_0: put(blk, u(rng) / 8); break;
      case wtype::q4_k: put(blk, u(rng) / 900); put(blk + 2, u(rng) / 120); break;
      case wtype::q5_k: put(blk, u(rng) / 1800); put(blk + 2, u(rng) / 120); break;
      case wtype::q6_k: put(blk + 208, u(rng) / 2000); break;
      default: break;
    }
  }
  return out;
}

// The fast path against the double-precision sums over the values it multiplies: activations
// rounded as the contract says (bf16, or int8 blocks), weights as stored.
void check_fast_path(wtype t, int64_t n_rows, int64_t n_out, int64_t n_in) {
  std::mt19937 rng(static_cast<unsigned>(n_rows * 31 + n_out * 3 + n_in + static_cast<int>(t)));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n_rows * n_in));
  for (float& v : x) v = nd(rng);
  x[0] = 0.0f;  // an all-zero block must not divide by zero
  std::vector<uint8_t> bytes;
  if (t == wtype::bf16) {
    std::vector<float> w(static_cast<size_t>(n_out * n_in));
    for (float& v : w) v = nd(rng);
    bytes = pack(t, w, n_out, n_in).bytes;
  } else {
    bytes = random_blocks(t, n_out, n_in, static_cast<unsigned>(n_out + n_in));
  }
  weight_matrix m{t, bytes.data(), n_out, n_in};
  std::vector<float> wv(static_cast<size_t>(n_out * n_in));
  dequantize_rows(m, 0, n_out, wv.data());
  // The activations as the fast path rounds them.
  std::vector<double> xr(x.size());
  if (t == wtype::bf16) {
    for (size_t i = 0; i < x.size(); ++i) xr[i] = bf16_to_f32(f32_to_bf16(x[i]));
  } else {
    const int64_t bs = act_block(t);
    for (int64_t r = 0; r < n_rows; ++r)
      for (int64_t b = 0; b < n_in / bs; ++b) {
        float amax = 0;
        for (int64_t i = 0; i < bs; ++i) amax = std::max(amax, std::fabs(x[static_cast<size_t>(r * n_in + b * bs + i)]));
        const float d = amax / 127.0f, is = amax > 0 ? 127.0f / amax : 0.0f;
        for (int64_t i = 0; i < bs; ++i) {
          const size_t k = static_cast<size_t>(r * n_in + b * bs + i);
          xr[k] = static_cast<double>(d) * std::nearbyint(x[k] * is);
        }
      }
  }
  thread_pool pool(2);
  std::vector<float> y(static_cast<size_t>(n_rows * n_out), NAN);
  matmul(x.data(), n_in, n_rows, m, y.data(), n_out, pool, precision::fast);
  if (t == wtype::bf16 && can_pack_bf16()) {  // packed at load: the same bits as packed per call
    const packed_bf16 pk(m);
    weight_matrix mp = m;
    mp.packed = pk.data();
    std::vector<float> yp(y.size(), NAN);
    matmul(x.data(), n_in, n_rows, mp, yp.data(), n_out, pool, precision::fast);
    ASSERT_EQ(std::memcmp(y.data(), yp.data(), y.size() * 4), 0) << "packed, rows " << n_rows << " out " << n_out
                                                                  << " in " << n_in;
  }
  for (int64_t r = 0; r < n_rows; ++r)
    for (int64_t c = 0; c < n_out; ++c) {
      double want = 0, mag = 0;
      for (int64_t i = 0; i < n_in; ++i) {
        const double p = xr[static_cast<size_t>(r * n_in + i)] * wv[static_cast<size_t>(c * n_in + i)];
        want += p;
        mag += std::fabs(p);
      }
      // f32 sums (and f32 scales of exact integer sums): a few ulp of the magnitude.
      ASSERT_NEAR(y[static_cast<size_t>(r * n_out + c)], want, 1e-6 * mag + 1e-6)
          << "fast path, " << wtype_name(t) << " rows " << n_rows << " out " << n_out << " in " << n_in
          << " at row " << r << " col " << c;
    }
}

TEST(matmul, fast_path_matches_its_rounding_for_every_weight_type) {
  for (wtype t : {wtype::bf16, wtype::q8_0, wtype::q4_0, wtype::q4_k, wtype::q5_k, wtype::q6_k})
    for (int64_t rows : {1, 2, 3, 5, 7, 13, 17, 40})  // (bf16: 16 rows or more go to oneDNN where built in)
      for (auto [out, in] : {std::pair<int64_t, int64_t>{1, 256}, {3, 512}, {37, 768}, {70, 2048}})
        check_fast_path(t, rows, out, in);
}

// The kernels' edges: every row count of their tiles (1-9; the packed bf16 kernel's row tiles,
// tiles of 4 strips (64 columns) and blocks of k from 13 rows), column counts that leave partial
// tiles and strips, and lengths that leave partial blocks: an odd count of 32-blocks (the
// q8_0/q4_0 kernel's half pair and partial group of 16), and for bf16 a length that is no
// multiple of the packed kernel's 256-value blocks of k.
TEST(matmul, fast_path_kernel_edges) {
  for (wtype t : {wtype::bf16, wtype::q8_0, wtype::q4_0, wtype::q4_k, wtype::q5_k, wtype::q6_k}) {
    const std::vector<int64_t> lengths = t == wtype::bf16 ? std::vector<int64_t>{272, 2064}
                                         : block_values(t) == 32 ? std::vector<int64_t>{544, 1056}
                                                                 : std::vector<int64_t>{256, 768};
    for (int64_t in : lengths)
      for (int64_t rows : {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 32, 33})
        for (int64_t out : {1, 5, 67, 130}) check_fast_path(t, rows, out, in);
  }
}

// The AVX-512 fast path rounds activations to bf16 and widens them in one pass: bit for bit
// what round_to_bf16 and bf16_to_f32 give, ties to even, NaN, infinities and subnormals
// included, at lengths that leave a partial vector.
TEST(matmul, avx512_bf16_rounding_equals_round_to_bf16) {
  if (best_isa() != isa::avx512) GTEST_SKIP() << "no AVX-512 on this CPU";
  std::mt19937 rng(7);
  std::vector<uint32_t> bits = {0x00000000u, 0x80000000u, 0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x7f7fffffu,
                                0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffffffffu, 0x00000001u,
                                0x007fffffu, 0x7f7f8000u, 0x3fffffffu};
  for (int i = 0; i < 1000; ++i) bits.push_back(rng());
  std::vector<float> x(bits.size());
  std::memcpy(x.data(), bits.data(), bits.size() * 4);
  for (size_t n : {bits.size(), size_t{15}, size_t{33}}) {
    std::vector<uint16_t> h(n);
    round_to_bf16(x.data(), static_cast<int64_t>(n), h.data());
    std::vector<float> got(n);
    detail::round_bf16_f32_avx512(x.data(), static_cast<int64_t>(n), got.data());
    for (size_t i = 0; i < n; ++i) {
      uint32_t g;
      std::memcpy(&g, &got[i], 4);
      ASSERT_EQ(g, static_cast<uint32_t>(h[i]) << 16) << "input bits " << std::hex << bits[i];
    }
  }
}

TEST(matmul, reference_path_reads_every_block_type) {
  for (wtype t : {wtype::q8_0, wtype::q4_0, wtype::q4_k, wtype::q5_k, wtype::q6_k})
    for (int64_t n_rows : {1, 7, 50}) {
      const int64_t n_out = 21, n_in = 512;
      std::vector<uint8_t> bytes = random_blocks(t, n_out, n_in, 9);
      weight_matrix m{t, bytes.data(), n_out, n_in};
      std::vector<float> wv(static_cast<size_t>(n_out * n_in)), wg(wv.size());
      dequantize_rows(m, 0, n_out, wv.data());
      detail::dequant_generic(m, 0, n_out, wg.data());
      ASSERT_EQ(wv, wg) << wtype_name(t);
      std::mt19937 rng(4);
      std::normal_distribution<float> nd;
      std::vector<float> x(static_cast<size_t>(n_rows * n_in));
      for (float& v : x) v = nd(rng);
      thread_pool pool(2);
      for (matmul_path path : {matmul_path::kernel, matmul_path::blas}) {
        std::vector<float> y(static_cast<size_t>(n_rows * n_out), NAN);
        matmul(x.data(), n_in, n_rows, m, y.data(), n_out, pool, precision::f32, path);
        for (int64_t r = 0; r < n_rows; ++r)
          for (int64_t c = 0; c < n_out; ++c) {
            double want = 0;
            for (int64_t i = 0; i < n_in; ++i)
              want += static_cast<double>(x[static_cast<size_t>(r * n_in + i)]) * wv[static_cast<size_t>(c * n_in + i)];
            ASSERT_NEAR(y[static_cast<size_t>(r * n_out + c)], want, 1e-4 * std::sqrt(double(n_in)) * (1 + std::fabs(want)))
                << wtype_name(t) << " rows " << n_rows;
          }
      }
    }
}

TEST(matmul, every_integer_kernel_equals_the_generic_one) {
  if (!detect().avx512_vnni) GTEST_SKIP() << "no AVX512-VNNI";
  for (wtype t : {wtype::q8_0, wtype::q4_0, wtype::q4_k, wtype::q5_k, wtype::q6_k}) {
    const int64_t n_rows = 6, n_out = 9, n_in = 1024;
    std::vector<uint8_t> bytes = random_blocks(t, n_out, n_in, 5);
    weight_matrix m{t, bytes.data(), n_out, n_in};
    const std::vector<float> x = normal_values(n_rows * n_in, 3);
    q8_rows a;
    a.n_rows = n_rows;
    a.n_in = n_in;
    a.block = act_block(t);
    a.ldq = n_in;
    alignas(64) static int8_t q[6 * 1024];
    std::vector<float> d(static_cast<size_t>(n_rows * n_in / a.block));
    std::vector<int16_t> s16(static_cast<size_t>(n_rows * n_in / 16));
    a.q = q;
    a.d = d.data();
    a.sum16 = s16.data();
    quantize_rows_q8(x.data(), n_in, 0, n_rows, a);
    std::vector<float> want(static_cast<size_t>(n_rows * n_out)), got(want.size());
    detail::q8_tile_generic(a, m, 0, n_out, want.data(), n_out);
    detail::q8_tile_avx512vnni(a, m, 0, n_out, got.data(), n_out);
    for (size_t i = 0; i < want.size(); ++i)
      ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << wtype_name(t) << " at " << i;
  }
}

// The AVX-512 activation quantization gives the plain C++ one's bits (rows of 32- and 256-blocks,
// zeros, an all-zero block, ties at .5).
TEST(matmul, avx512_quantize_equals_generic) {
  if (best_isa() != isa::avx512) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (int64_t block : {32, 256}) {
    const int64_t n_rows = 3, n_in = 1024, ldq = 1024;
    std::mt19937 rng(static_cast<unsigned>(block));
    std::normal_distribution<float> nd(0.0f, 3.0f);
    std::vector<float> x(static_cast<size_t>(n_rows * n_in));
    for (float& v : x) v = nd(rng);
    for (int64_t i = 0; i < block; ++i) x[static_cast<size_t>(n_in + i)] = 0.0f;  // row 1's first block
    for (int64_t i = 0; i < block; ++i)  // row 2's first block: x * 127 / amax lands on .5 ties
      x[static_cast<size_t>(2 * n_in + i)] = i == 0 ? 127.0f : static_cast<float>(i % 9) + 0.5f;
    auto run = [&](bool avx) {
      std::vector<int8_t> q(static_cast<size_t>(n_rows * ldq));
      std::vector<float> d(static_cast<size_t>(n_rows * n_in / block));
      std::vector<int16_t> s16(static_cast<size_t>(n_rows * n_in / 16));
      q8_rows a;
      a.n_rows = n_rows;
      a.n_in = n_in;
      a.block = block;
      a.ldq = ldq;
      a.q = q.data();
      a.d = d.data();
      a.sum16 = s16.data();
      if (avx) detail::quantize_rows_q8_avx512(x.data(), n_in, 0, n_rows, a);
      else detail::quantize_rows_q8_generic(x.data(), n_in, 0, n_rows, a);
      return std::make_tuple(q, d, s16);
    };
    const auto [q0, d0, s0] = run(false);
    const auto [q1, d1, s1] = run(true);
    EXPECT_EQ(q0, q1) << "block " << block;
    EXPECT_EQ(d0, d1) << "block " << block;
    EXPECT_EQ(s0, s1) << "block " << block;
  }
}

TEST(matmul, every_path_matches_reference_for_every_weight_type) {
  for (wtype t : {wtype::f32, wtype::f16, wtype::bf16, wtype::q8_0})
    for (int64_t rows : {1, 2, 5, 6, 7, 13, 33, 64})
      for (auto [out, in] : {std::pair<int64_t, int64_t>{4, 32}, {7, 64}, {37, 96}, {130, 2048 + 64}})
        check_all_paths(t, rows, out, in);
}

// bf16 weights: a row's outputs are the same bits whatever the rows beside it (1 to 40 rows: a
// decode, a verification, a batch), on both paths, packed at load or not, on 1 or 2 threads:
// batched = sequential and speculative = plain hold bit for bit. Lengths that are no multiple of
// 32 (nor of the packed kernel's blocks of k) and column counts that leave partial strips and tiles.
TEST(matmul, bf16_rows_are_the_same_bits_whatever_the_row_count) {
  constexpr int64_t max_rows = 40;
  thread_pool one(1), two(2);
  for (auto [n_out, n_in] : {std::pair<int64_t, int64_t>{67, 272}, {130, 48}, {200, 784}, {16, 560}}) {
    std::mt19937 rng(static_cast<unsigned>(n_out * 1000 + n_in));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(max_rows * n_in)), wf(static_cast<size_t>(n_out * n_in));
    for (float& v : x) v = nd(rng);
    for (float& v : wf) v = nd(rng);
    const std::vector<uint8_t> bytes = pack(wtype::bf16, wf, n_out, n_in).bytes;
    const weight_matrix plain{wtype::bf16, bytes.data(), n_out, n_in};
    packed_bf16 pk;
    weight_matrix packed_m = plain;
    if (can_pack_bf16()) {
      pk = packed_bf16(plain, &two);
      packed_m.packed = pk.data();
    }
    for (precision prec : {precision::fast, precision::f32}) {
      // (f32 through the micro-kernels: from 48 rows the reference path would switch to BLAS.)
      const matmul_path path = prec == precision::f32 ? matmul_path::kernel : matmul_path::automatic;
      std::vector<float> all(static_cast<size_t>(max_rows * n_out));
      matmul(x.data(), n_in, max_rows, packed_m, all.data(), n_out, two, prec, path);
      for (int64_t rows = 1; rows <= max_rows; ++rows)
        for (const weight_matrix* m : std::initializer_list<const weight_matrix*>{&plain, &packed_m})
          for (thread_pool* pool : std::initializer_list<thread_pool*>{&one, &two}) {
            // rows starting at a row other than 0, so each row's place in its tile changes too
            const int64_t r0 = (max_rows - rows) / 2;
            std::vector<float> y(static_cast<size_t>(rows * n_out), NAN);
            matmul(x.data() + r0 * n_in, n_in, rows, *m, y.data(), n_out, *pool, prec, path);
            for (int64_t r = 0; r < rows; ++r)
              for (int64_t c = 0; c < n_out; ++c) {
                const float got = y[static_cast<size_t>(r * n_out + c)];
                const float want = all[static_cast<size_t>((r0 + r) * n_out + c)];
                ASSERT_EQ(std::memcmp(&got, &want, 4), 0)
                    << precision_name(prec) << " " << n_out << "x" << n_in << ": row " << r0 + r << " of " << rows
                    << " rows from " << r0 << (m == &plain ? ", unpacked" : ", packed") << ", " << pool->size()
                    << " threads, col " << c << ": " << got << " vs " << want << " in " << max_rows << " rows";
              }
          }
    }
  }
}

// The packing itself: every word as packed_bf16 defines it, zeros in the padding, at an odd
// length (its last pair half empty) and a column count that leaves a partial strip.
TEST(matmul, packed_bf16_layout) {
  if (!can_pack_bf16()) GTEST_SKIP() << "the AVX-512 kernels are not in use";
  for (auto [n_out, n_in] : {std::pair<int64_t, int64_t>{37, 75}, {32, 64}, {50, 1030}}) {
    std::vector<uint16_t> w(static_cast<size_t>(n_out * n_in));
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<uint16_t>(i * 2654435761u >> 7);
    const weight_matrix m{wtype::bf16, w.data(), n_out, n_in};
    const packed_bf16 pk(m);
    const int64_t pairs = (n_in + 1) / 2, strips = (n_out + 15) / 16;
    ASSERT_EQ(pk.bytes(), static_cast<size_t>(strips * pairs * 64));
    ASSERT_EQ(reinterpret_cast<uintptr_t>(pk.data()) % 64, 0u);
    for (int64_t s = 0; s < strips; ++s)
      for (int64_t p = 0; p < pairs; ++p)
        for (int64_t j = 0; j < 16; ++j) {
          const int64_t c = 16 * s + j;
          uint32_t want = 0;
          if (c < n_out) {
            want = w[static_cast<size_t>(c * n_in + 2 * p)];
            if (2 * p + 1 < n_in) want |= static_cast<uint32_t>(w[static_cast<size_t>(c * n_in + 2 * p + 1)]) << 16;
          }
          ASSERT_EQ(pk.data()[(s * pairs + p) * 16 + j], want) << n_out << "x" << n_in << " strip " << s << " pair " << p << " col " << j;
        }
  }
}

// Below the int8 GEMM's row count, the fast path sums each (row, column) of a quantized matmul in
// the same order however many rows share the call (the decode kernels' tiles of 1-4 rows and
// 1-4 weight rows): a batch's row is bit for bit what that row alone gives, at column counts that
// leave partial tiles.
TEST(matmul, fast_path_rows_below_the_gemm_equal_one_row_alone) {
  for (wtype t : {wtype::q8_0, wtype::q4_0, wtype::q4_k, wtype::q5_k, wtype::q6_k}) {
    const int64_t gemm_rows = detail::q8_gemm_min_rows(t);
    const int64_t max_rows = gemm_rows > 0 ? std::min<int64_t>(gemm_rows - 1, 9) : 9;
    const int64_t n_out = 71, n_in = 768;
    std::vector<uint8_t> bytes = random_blocks(t, n_out, n_in, 11);
    weight_matrix m{t, bytes.data(), n_out, n_in};
    const std::vector<float> x = normal_values(max_rows * n_in, 12);
    thread_pool pool(2);
    std::vector<float> alone(static_cast<size_t>(max_rows * n_out));
    for (int64_t r = 0; r < max_rows; ++r)
      matmul(x.data() + r * n_in, n_in, 1, m, alone.data() + r * n_out, n_out, pool, precision::fast);
    for (int64_t rows = 2; rows <= max_rows; ++rows) {
      std::vector<float> y(static_cast<size_t>(rows * n_out), NAN);
      matmul(x.data(), n_in, rows, m, y.data(), n_out, pool, precision::fast);
      for (int64_t i = 0; i < rows * n_out; ++i)
        ASSERT_EQ(y[static_cast<size_t>(i)], alone[static_cast<size_t>(i)])
            << wtype_name(t) << " rows " << rows << " at row " << i / n_out << " col " << i % n_out;
    }
  }
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
