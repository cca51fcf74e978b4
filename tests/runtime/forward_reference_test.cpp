// Proves the CPU forward equals the independent numpy reference (scripts/reference_forward.py)
// for every architecture, weight dtype and file layout, one by one, batched and chunked, under
// the accuracy contract of kernels/cpu/matmul.hpp:
// - precision f32 (the reference path): logits at every position within 1e-3 of the largest
//   logit magnitude, and greedy continuations exactly;
// - precision fast (activations rounded to bf16 or int8 blocks as the weight types' fast kernels
//   read them): logits within 1e-3 + 0.75 D (D: the simulation's own deviation) of the numpy
//   forward that simulates that rounding (fast_sim_tolerance), and so within 1e-3 + 1.75 D of the exact
//   reference; greedy continuations exactly, up to the first step where the reference's top-2
//   gap is within twice that (a near-tie).
#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <optional>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/mapped_file.hpp"
#include "runtime/model_config.hpp"
#include "tests/test_data.hpp"

namespace troupe {
namespace {

// Logits may differ from the float64 reference by summation order in f32 only (both read the
// same stored weight values): at most 1e-3 of the largest logit magnitude at that position.
constexpr double rel_tolerance = 1e-3;
constexpr int32_t block_size = 4;
constexpr int32_t blocks_per_seq = 16;

std::string models_dir() { return testing::build_dir() + "/testmodels"; }

struct reference {
  struct prompt {
    std::vector<token_id> tokens, greedy;
    std::vector<double> top2_gaps;  // per greedy step, relative to the largest logit magnitude
    size_t offset = 0;
  };
  int64_t n_vocab = 0;
  std::vector<prompt> prompts;
  mapped_file bin;
  // The fast path's rounding simulated, where the model's weight types round (else null).
  std::optional<mapped_file> fast_bin;
  double fast_deviation = 0;  // largest |simulated - exact| / largest |exact| at any position
  const float* logits(const prompt& p, size_t pos) const {
    return reinterpret_cast<const float*>(bin.data()) + p.offset + pos * static_cast<size_t>(n_vocab);
  }
  const float* fast_logits(const prompt& p, size_t pos) const {
    if (!fast_bin) return logits(p, pos);
    return reinterpret_cast<const float*>(fast_bin->data()) + p.offset + pos * static_cast<size_t>(n_vocab);
  }
};

reference load_reference(const std::string& model) {
  reference r;
  std::ifstream in(models_dir() + "/" + model + ".ref.json");
  EXPECT_TRUE(in.good()) << model;
  auto j = nlohmann::json::parse(in);
  r.n_vocab = j["n_vocab"];
  for (auto& p : j["prompts"])
    r.prompts.push_back({p["tokens"].get<std::vector<token_id>>(), p["greedy"].get<std::vector<token_id>>(),
                         p["top2_gaps"].get<std::vector<double>>(), p["logits_offset"].get<size_t>()});
  auto m = mapped_file::open(models_dir() + "/" + model + ".ref.bin");
  EXPECT_TRUE(m.ok()) << m.message();
  r.bin = std::move(*m);
  if (j.contains("fast_logit_deviation")) {
    r.fast_deviation = j["fast_logit_deviation"];
    auto f = mapped_file::open(models_dir() + "/" + model + ".ref.fast.bin");
    EXPECT_TRUE(f.ok()) << f.message();
    if (f.ok()) r.fast_bin = std::move(*f);
  }
  return r;
}

std::vector<std::string> model_names() {
  std::ifstream in(models_dir() + "/models.json");
  if (!in) return {};
  return nlohmann::json::parse(in).get<std::vector<std::string>>();
}

// Non-contiguous KV blocks for sequence s, so that block tables are really used.
std::vector<int32_t> blocks_for(size_t s) {
  std::vector<int32_t> all(static_cast<size_t>(blocks_per_seq) * 8);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), std::mt19937(42));
  return {all.begin() + static_cast<ptrdiff_t>(s * blocks_per_seq),
          all.begin() + static_cast<ptrdiff_t>((s + 1) * blocks_per_seq)};
}

void expect_close(const float* got, const float* want, int64_t n, const std::string& where,
                  double tolerance = rel_tolerance) {
  double max_ref = 1.0, max_diff = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[i])));
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[i]) - want[i]));
  }
  ASSERT_LE(max_diff, tolerance * max_ref) << where;
}

// The fast path against its simulation: f32 sums, plus activations whose rounding flips (one
// bf16 ulp, one int8 step) because the engine's f32 value and numpy's float64 one fall on either
// side of a rounding boundary; in these 64- and 256-wide test models a few flipped activations
// move logits by up to ~60% of the whole rounding's deviation D (measured), so 0.75 D is allowed.
// (A rounding other than the simulated one, independent of it, would differ by about 1.4 D.)
double fast_sim_tolerance(const reference& ref) { return rel_tolerance + 0.75 * ref.fast_deviation; }
// Against the exact reference: the simulation's own deviation plus the above.
double fast_exact_tolerance(const reference& ref) { return rel_tolerance + 1.75 * ref.fast_deviation; }

// Each row of logits against the reference at its position: the reference path against the
// exact forward; the fast path against the simulated rounding, and against the exact forward
// within the tolerance that rounding implies.
void expect_row(const reference& ref, const reference::prompt& p, size_t pos, const float* got, cpu::precision prec,
                const std::string& where) {
  const int64_t V = ref.n_vocab;
  if (prec == cpu::precision::f32) {
    expect_close(got, ref.logits(p, pos), V, where);
    return;
  }
  expect_close(got, ref.fast_logits(p, pos), V, where + " (fast path against its simulated rounding)",
               fast_sim_tolerance(ref));
  expect_close(got, ref.logits(p, pos), V, where + " (fast path against the exact reference)",
               fast_exact_tolerance(ref));
}

int64_t argmax(const float* v, int64_t n) { return std::max_element(v, v + n) - v; }

TEST(forward_reference_models, all_variants_are_present) {
  // 5 architectures x (3 Hugging Face dtypes + 5 GGUF dtypes) + the K-type twins (5 Q4_K_M, one
  // Q5_K_M, one Q6_K)
  EXPECT_EQ(model_names().size(), 47u) << "run scripts/make_reference_outputs.py (the ctest fixture does)";
}

class forward_reference_prec
    : public ::testing::TestWithParam<std::tuple<std::string, cpu::precision>> {};

TEST_P(forward_reference_prec, logits_match_one_by_one_batched_and_chunked) {
  const std::string name = std::get<0>(GetParam());
  const cpu::precision prec = std::get<1>(GetParam());
  auto opened = checkpoint::open(models_dir() + "/" + name);
  ASSERT_TRUE(opened.ok()) << opened.message();
  auto ck = std::make_shared<const checkpoint>(std::move(*opened));
  reference ref = load_reference(name);
  ASSERT_EQ(ck->config().n_vocab, ref.n_vocab);
  const int64_t V = ref.n_vocab;
  cpu_executor_options opt;
  opt.n_threads = 2;
  opt.kv_block_size = block_size;
  opt.kv_n_blocks = blocks_per_seq * 8;
  opt.precision = prec;
  auto ex = make_cpu_executor(ck, opt);
  ASSERT_TRUE(ex.ok()) << ex.message();
  std::vector<float> logits;

  // One by one: logits at every position.
  for (size_t s = 0; s < ref.prompts.size(); ++s) {
    const auto& p = ref.prompts[s];
    forward_batch b;
    auto blocks = blocks_for(s);
    b.add(0, p.tokens, blocks, static_cast<int32_t>(p.tokens.size()));
    ASSERT_TRUE((*ex)->forward(b, logits).ok());
    for (size_t i = 0; i < p.tokens.size(); ++i)
      expect_row(ref, p, i, logits.data() + i * static_cast<size_t>(V), prec,
                 name + " alone, prompt " + std::to_string(s) + " position " + std::to_string(i));
  }
  // Batched: every prompt in one forward.
  {
    forward_batch b;
    for (size_t s = 0; s < ref.prompts.size(); ++s) {
      auto blocks = blocks_for(s);
      b.add(0, ref.prompts[s].tokens, blocks, static_cast<int32_t>(ref.prompts[s].tokens.size()));
    }
    ASSERT_TRUE((*ex)->forward(b, logits).ok());
    size_t row = 0;
    for (size_t s = 0; s < ref.prompts.size(); ++s)
      for (size_t i = 0; i < ref.prompts[s].tokens.size(); ++i, ++row)
        expect_row(ref, ref.prompts[s], i, logits.data() + row * static_cast<size_t>(V), prec,
                   name + " batched, prompt " + std::to_string(s) + " position " + std::to_string(i));
  }
  // Chunked: the longest prompt in chunks of 7 tokens, each chunk reading the cache.
  {
    const auto& p = ref.prompts.back();
    auto blocks = blocks_for(0);
    for (size_t start = 0; start < p.tokens.size(); start += 7) {
      const size_t n = std::min<size_t>(7, p.tokens.size() - start);
      forward_batch b;
      b.add(static_cast<int32_t>(start), std::span(p.tokens).subspan(start, n), blocks, static_cast<int32_t>(n));
      ASSERT_TRUE((*ex)->forward(b, logits).ok());
      for (size_t i = 0; i < n; ++i)
        expect_row(ref, p, start + i, logits.data() + i * static_cast<size_t>(V), prec,
                   name + " chunked, position " + std::to_string(start + i));
    }
  }
}

TEST_P(forward_reference_prec, greedy_continuations_match_batched_decode) {
  const std::string name = std::get<0>(GetParam());
  const cpu::precision prec = std::get<1>(GetParam());
  auto opened = checkpoint::open(models_dir() + "/" + name);
  ASSERT_TRUE(opened.ok()) << opened.message();
  auto ck = std::make_shared<const checkpoint>(std::move(*opened));
  reference ref = load_reference(name);
  const int64_t V = ref.n_vocab;
  cpu_executor_options opt;
  opt.n_threads = 2;
  opt.kv_block_size = block_size;
  opt.kv_n_blocks = blocks_per_seq * 8;
  opt.precision = prec;
  auto ex = make_cpu_executor(ck, opt);
  ASSERT_TRUE(ex.ok()) << ex.message();
  const size_t n = ref.prompts.size();
  std::vector<std::vector<token_id>> out(n);
  std::vector<std::vector<int32_t>> blocks(n);
  forward_batch b;
  for (size_t s = 0; s < n; ++s) {
    blocks[s] = blocks_for(s);
    b.add(0, ref.prompts[s].tokens, blocks[s], 1);
  }
  std::vector<float> logits;
  const size_t steps = ref.prompts[0].greedy.size();
  for (size_t step = 0; step < steps; ++step) {
    ASSERT_TRUE((*ex)->forward(b, logits).ok());
    forward_batch next;
    for (size_t s = 0; s < n; ++s) {
      const token_id t = static_cast<token_id>(argmax(logits.data() + s * static_cast<size_t>(V), V));
      out[s].push_back(t);
      const int32_t n_past = static_cast<int32_t>(ref.prompts[s].tokens.size() + step);
      next.add(n_past, std::span(&out[s].back(), 1), blocks[s], 1);
    }
    b = std::move(next);
  }
  for (size_t s = 0; s < n; ++s) {
    const auto& p = ref.prompts[s];
    if (prec == cpu::precision::f32) {
      EXPECT_EQ(out[s], p.greedy) << name << " prompt " << s;
      continue;
    }
    // The fast path: equal up to the first near-tie of the reference, where the rounding alone
    // may swap the top two tokens (each may move by the tolerance against the exact reference).
    const double tie = 2 * fast_exact_tolerance(ref);
    for (size_t i = 0; i < p.greedy.size(); ++i) {
      if (p.top2_gaps[i] <= tie) break;
      ASSERT_EQ(out[s][i], p.greedy[i]) << name << " prompt " << s << " step " << i << " (top-2 gap "
                                        << p.top2_gaps[i] << " of the largest logit; near-tie bound " << tie << ")";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(models, forward_reference_prec,
                         ::testing::Combine(::testing::ValuesIn(model_names()),
                                            ::testing::Values(cpu::precision::f32, cpu::precision::fast)),
                         [](const auto& param_info) {
                           std::string s = std::get<0>(param_info.param);
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s + "_" + cpu::precision_name(std::get<1>(param_info.param));
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(forward_reference_prec);

}  // namespace
}  // namespace troupe
