// Proves the CUDA executor against the CPU executor (and the numpy reference both are held to)
// on every test model (5 architectures x 7 file types): in f32 precision, logits at every
// position within the reference test's tolerance (1e-3 of the largest logit), one by one,
// batched and chunked, and greedy continuations equal, decode steps replayed from CUDA graphs;
// in bf16 precision, logits within 5e-2 of the largest and greedy continuations equal wherever
// the reference's top-2 margin exceeds bf16's error. Also: graphs agree with eager launches,
// copy_blocks, the asynchronous API the stream actor uses, device sampling, and batches refused.
#include "tests/kernels/cuda_test_util.hpp"

#include <algorithm>
#include <fstream>
#include <future>
#include <numeric>

#include <nlohmann/json.hpp>

#include "kernels/cuda/cuda_executor.hpp"
#include "kernels/cuda/sampling_ref.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/mapped_file.hpp"
#include "runtime/model_config.hpp"
#include "tests/test_data.hpp"

namespace troupe::cuda {
namespace {

constexpr int32_t block_size = 4;
constexpr int32_t blocks_per_seq = 16;

std::string models_dir() { return troupe::testing::build_dir() + "/testmodels"; }

std::vector<std::string> model_names() {
  std::ifstream in(models_dir() + "/models.json");
  if (!in) return {};
  return nlohmann::json::parse(in).get<std::vector<std::string>>();
}

struct reference {
  struct prompt {
    std::vector<token_id> tokens, greedy;
    size_t offset = 0;
    double min_top2_gap = 0;
  };
  int64_t n_vocab = 0;
  std::vector<prompt> prompts;
  mapped_file bin;
  const float* logits(const prompt& p, size_t pos) const {
    return reinterpret_cast<const float*>(bin.data()) + p.offset + pos * static_cast<size_t>(n_vocab);
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
                         p["logits_offset"].get<size_t>(), p.value("min_top2_gap", 0.0)});
  auto m = mapped_file::open(models_dir() + "/" + model + ".ref.bin");
  EXPECT_TRUE(m.ok()) << m.message();
  r.bin = std::move(*m);
  return r;
}

std::vector<int32_t> blocks_for(size_t s) {
  std::vector<int32_t> all(static_cast<size_t>(blocks_per_seq) * 8);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), std::mt19937(42));
  return {all.begin() + static_cast<ptrdiff_t>(s * blocks_per_seq),
          all.begin() + static_cast<ptrdiff_t>((s + 1) * blocks_per_seq)};
}

// max |got - want| <= tol * max(1, max |want|) over one row of logits.
void expect_row_close(const float* got, const float* want, int64_t n, double tol, const std::string& where) {
  double max_ref = 1.0, max_diff = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[i])));
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(got[i]) - want[i]));
  }
  ASSERT_LE(max_diff, tol * max_ref) << where;
}

int32_t argmax(const float* v, int64_t n) { return static_cast<int32_t>(std::max_element(v, v + n) - v); }

struct loaded {
  std::shared_ptr<const checkpoint> ck;
  reference ref;
};

loaded load(const std::string& name) {
  auto opened = checkpoint::open(models_dir() + "/" + name);
  EXPECT_TRUE(opened.ok()) << opened.message();
  return {std::make_shared<const checkpoint>(std::move(*opened)), load_reference(name)};
}

std::unique_ptr<cuda_executor> gpu_executor(const checkpoint& ck, precision p, bool graphs = true) {
  auto w = upload_weights(ck, 0, p);
  EXPECT_TRUE(w.ok()) << w.message();
  executor_options o;
  o.kv_block_size = block_size;
  o.kv_n_blocks = blocks_per_seq * 8;
  o.max_batch_tokens = 512;
  o.max_logit_rows = 256;
  o.max_seqs = 16;
  o.graphs = graphs;
  o.split_tokens = 8;  // contexts of tens of tokens still span several splits
  auto ex = make_cuda_executor(*w, o);
  EXPECT_TRUE(ex.ok()) << ex.message();
  return std::move(*ex);
}

std::unique_ptr<executor> cpu_executor_for(std::shared_ptr<const checkpoint> ck) {
  cpu_executor_options o;
  o.n_threads = 2;
  o.kv_block_size = block_size;
  o.kv_n_blocks = blocks_per_seq * 8;
  o.precision = cpu::precision::f32;  // the reference path
  auto ex = make_cpu_executor(std::move(ck), o);
  EXPECT_TRUE(ex.ok()) << ex.message();
  return std::move(*ex);
}

class cuda_executor_models : public ::testing::TestWithParam<std::string> {};

// The reference test's three ways through the prompts, on both executors.
void compare_logits(const std::string& name, precision p, double tol) {
  loaded m = load(name);
  const int64_t V = m.ref.n_vocab;
  auto gpu = gpu_executor(*m.ck, p);
  auto cpu = cpu_executor_for(m.ck);
  std::vector<float> g, c;
  const std::string tag = name + (p == precision::f32 ? " f32" : " bf16");
  for (size_t s = 0; s < m.ref.prompts.size(); ++s) {
    const auto& pr = m.ref.prompts[s];
    forward_batch b;
    b.add(0, pr.tokens, blocks_for(s), static_cast<int32_t>(pr.tokens.size()));
    ASSERT_TRUE(gpu->forward(b, g).ok());
    ASSERT_TRUE(cpu->forward(b, c).ok());
    for (size_t i = 0; i < pr.tokens.size(); ++i) {
      const std::string where = tag + " alone, prompt " + std::to_string(s) + " position " + std::to_string(i);
      expect_row_close(g.data() + i * static_cast<size_t>(V), c.data() + i * static_cast<size_t>(V), V, tol, where + " vs cpu");
      expect_row_close(g.data() + i * static_cast<size_t>(V), m.ref.logits(pr, i), V, tol, where + " vs numpy");
    }
  }
  {
    forward_batch b;
    for (size_t s = 0; s < m.ref.prompts.size(); ++s)
      b.add(0, m.ref.prompts[s].tokens, blocks_for(s), static_cast<int32_t>(m.ref.prompts[s].tokens.size()));
    ASSERT_TRUE(gpu->forward(b, g).ok());
    size_t row = 0;
    for (size_t s = 0; s < m.ref.prompts.size(); ++s)
      for (size_t i = 0; i < m.ref.prompts[s].tokens.size(); ++i, ++row)
        expect_row_close(g.data() + row * static_cast<size_t>(V), m.ref.logits(m.ref.prompts[s], i), V, tol,
                         tag + " batched, prompt " + std::to_string(s) + " position " + std::to_string(i));
  }
  {
    const auto& pr = m.ref.prompts.back();
    for (size_t start = 0; start < pr.tokens.size(); start += 7) {
      const size_t n = std::min<size_t>(7, pr.tokens.size() - start);
      forward_batch b;
      b.add(static_cast<int32_t>(start), std::span(pr.tokens).subspan(start, n), blocks_for(0), static_cast<int32_t>(n));
      ASSERT_TRUE(gpu->forward(b, g).ok());
      for (size_t i = 0; i < n; ++i)
        expect_row_close(g.data() + i * static_cast<size_t>(V), m.ref.logits(pr, start + i), V, tol,
                         tag + " chunked, position " + std::to_string(start + i));
    }
  }
}

// Greedy decoding of every prompt at once, as the engine batches it: the prompts' prefill, then
// pure decode steps (replayed from a graph from the third on).
std::vector<std::vector<token_id>> greedy(executor& ex, const reference& ref, size_t steps) {
  const size_t n = ref.prompts.size();
  std::vector<std::vector<token_id>> out(n);
  std::vector<std::vector<int32_t>> blocks(n);
  forward_batch b;
  for (size_t s = 0; s < n; ++s) {
    blocks[s] = blocks_for(s);
    b.add(0, ref.prompts[s].tokens, blocks[s], 1);
  }
  std::vector<float> logits;
  for (size_t step = 0; step < steps; ++step) {
    EXPECT_TRUE(ex.forward(b, logits).ok());
    forward_batch next;
    for (size_t s = 0; s < n; ++s) {
      out[s].push_back(argmax(logits.data() + s * static_cast<size_t>(ref.n_vocab), ref.n_vocab));
      next.add(static_cast<int32_t>(ref.prompts[s].tokens.size() + step), std::span(&out[s].back(), 1), blocks[s], 1);
    }
    b = std::move(next);
  }
  return out;
}

TEST_P(cuda_executor_models, f32_logits_match_the_cpu_one_by_one_batched_and_chunked) {
  TROUPE_REQUIRE_GPU();
  compare_logits(GetParam(), precision::f32, 1e-3);
}

TEST_P(cuda_executor_models, f32_greedy_continuations_equal_the_cpu) {
  TROUPE_REQUIRE_GPU();
  loaded m = load(GetParam());
  auto gpu = gpu_executor(*m.ck, precision::f32);
  auto cpu = cpu_executor_for(m.ck);
  const size_t steps = m.ref.prompts[0].greedy.size();
  const auto g = greedy(*gpu, m.ref, steps), c = greedy(*cpu, m.ref, steps);
  for (size_t s = 0; s < g.size(); ++s) {
    EXPECT_EQ(g[s], c[s]) << GetParam() << " prompt " << s;
    EXPECT_EQ(g[s], m.ref.prompts[s].greedy) << GetParam() << " prompt " << s;
  }
  EXPECT_GT(gpu->stats().graph_replays, 0) << "decode steps should replay a graph";
}

TEST_P(cuda_executor_models, bf16_logits_are_close_and_greedy_agrees_where_the_margin_allows) {
  TROUPE_REQUIRE_GPU();
  compare_logits(GetParam(), precision::bf16, 5e-2);
  loaded m = load(GetParam());
  auto gpu = gpu_executor(*m.ck, precision::bf16);
  const auto g = greedy(*gpu, m.ref, m.ref.prompts[0].greedy.size());
  for (size_t s = 0; s < g.size(); ++s) {
    if (m.ref.prompts[s].min_top2_gap > 0.25) {
      EXPECT_EQ(g[s], m.ref.prompts[s].greedy) << GetParam() << " prompt " << s << " (margin "
                                               << m.ref.prompts[s].min_top2_gap << ")";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(models, cuda_executor_models, ::testing::ValuesIn(model_names()), [](const auto& param_info) {
  std::string s = param_info.param;
  for (char& ch : s)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return s;
});
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(cuda_executor_models);

// One model for the tests of the executor's own machinery.
std::string some_model() {
  const auto names = model_names();
  for (const auto& n : names)
    if (n.find("llama3-hf-f32") != std::string::npos) return n;
  return names.empty() ? "" : names.front();
}

TEST(cuda_executor, graph_replays_agree_with_eager_launches) {
  TROUPE_REQUIRE_GPU();
  loaded m = load(some_model());
  auto with = gpu_executor(*m.ck, precision::f32, true);
  auto without = gpu_executor(*m.ck, precision::f32, false);
  const auto a = greedy(*with, m.ref, 8), b = greedy(*without, m.ref, 8);
  EXPECT_EQ(a, b);
  EXPECT_GT(with->stats().graph_captures, 0);
  EXPECT_GT(with->stats().graph_replays, 0);
  EXPECT_EQ(without->stats().graph_replays, 0);
  // The last step's logits, both ways.
  forward_batch step;
  std::vector<std::vector<int32_t>> blocks;
  for (size_t s = 0; s < m.ref.prompts.size(); ++s) {
    blocks.push_back(blocks_for(s));
    const token_id t = a[s].back();
    step.add(static_cast<int32_t>(m.ref.prompts[s].tokens.size() + 7), std::span(&t, 1), blocks.back(), 1);
  }
  std::vector<float> la, lb;
  ASSERT_TRUE(with->forward(step, la).ok());
  ASSERT_TRUE(without->forward(step, lb).ok());
  testing::expect_close(la, lb, 1e-5, 1e-5, "graph vs eager logits");
}

TEST(cuda_executor, copy_blocks_gives_a_copy_that_continues_the_same) {
  TROUPE_REQUIRE_GPU();
  loaded m = load(some_model());
  auto ex = gpu_executor(*m.ck, precision::f32);
  const auto& pr = m.ref.prompts.back();  // 37 tokens: 10 blocks of 4
  const std::vector<int32_t> orig = blocks_for(0), copy = blocks_for(1);
  forward_batch b;
  b.add(0, pr.tokens, orig, 1);
  std::vector<float> logits, from_orig, from_copy;
  ASSERT_TRUE(ex->forward(b, logits).ok());
  const size_t used = (pr.tokens.size() + block_size - 1) / block_size;
  ex->copy_blocks(std::span(orig).first(used), std::span(copy).first(used));
  const token_id next = pr.greedy[0];
  forward_batch a, c;
  a.add(static_cast<int32_t>(pr.tokens.size()), std::span(&next, 1), orig, 1);
  c.add(static_cast<int32_t>(pr.tokens.size()), std::span(&next, 1), copy, 1);
  ASSERT_TRUE(ex->forward(a, from_orig).ok());
  ASSERT_TRUE(ex->forward(c, from_copy).ok());
  EXPECT_EQ(from_orig, from_copy);
}

TEST(cuda_executor, enqueue_notify_and_collect_give_what_forward_gives) {
  TROUPE_REQUIRE_GPU();
  loaded m = load(some_model());
  auto ex = gpu_executor(*m.ck, precision::f32);
  forward_batch b;
  b.add(0, m.ref.prompts[2].tokens, blocks_for(0), 3);
  std::vector<float> sync_logits, async_logits;
  ASSERT_TRUE(ex->forward(b, sync_logits).ok());
  std::promise<void> done;
  ASSERT_TRUE(ex->enqueue(b).ok());
  EXPECT_FALSE(ex->enqueue(b).ok()) << "one forward in flight at a time";
  ASSERT_TRUE(ex->notify_when_done([](void* p) { static_cast<std::promise<void>*>(p)->set_value(); }, &done).ok());
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  double secs = -1;
  ASSERT_TRUE(ex->collect(async_logits, &secs).ok());
  EXPECT_GT(secs, 0.0);
  EXPECT_EQ(async_logits, sync_logits);
  EXPECT_FALSE(ex->collect(async_logits, nullptr).ok()) << "nothing left to collect";
}

TEST(cuda_executor, device_sampling_equals_the_reference_on_the_same_logits) {
  TROUPE_REQUIRE_GPU();
  loaded m = load(some_model());
  auto ex = gpu_executor(*m.ck, precision::f32);
  forward_batch b;
  for (size_t s = 0; s < m.ref.prompts.size(); ++s) b.add(0, m.ref.prompts[s].tokens, blocks_for(s), 1);
  std::vector<float> logits;
  ASSERT_TRUE(ex->forward(b, logits).ok());
  std::vector<sampling_row> rows;
  for (size_t s = 0; s < m.ref.prompts.size(); ++s) {
    sampling_params p;
    p.temperature = s == 0 ? 0.0f : 0.8f;
    p.top_k = s == 2 ? 20 : 0;
    p.top_p = s == 3 ? 0.9f : 1.0f;
    p.seed = 7 + s;
    rows.push_back(*pack_sampling(p, 0, s, m.ref.n_vocab));
  }
  std::vector<int32_t> tokens;
  ASSERT_TRUE(ex->sample(rows, tokens).ok());
  ASSERT_EQ(tokens.size(), rows.size());
  for (size_t s = 0; s < rows.size(); ++s) {
    const std::span<const float> row(logits.data() + s * static_cast<size_t>(m.ref.n_vocab),
                                     static_cast<size_t>(m.ref.n_vocab));
    EXPECT_EQ(tokens[s], sample_reference(row, rows[s])) << "row " << s;
  }
  EXPECT_EQ(tokens[0], m.ref.prompts[0].greedy[0]);
}

TEST(cuda_executor, refuses_batches_that_do_not_fit_before_running_them) {
  TROUPE_REQUIRE_GPU();
  loaded m = load(some_model());
  auto ex = gpu_executor(*m.ck, precision::f32);
  std::vector<float> logits;
  forward_batch bad;
  const token_id out_of_range = static_cast<token_id>(m.ref.n_vocab);
  bad.add(0, std::span(&out_of_range, 1), blocks_for(0), 1);
  EXPECT_FALSE(ex->forward(bad, logits).ok());
  forward_batch big;
  const std::vector<token_id> many(600, 1);
  std::vector<int32_t> table(200);
  std::iota(table.begin(), table.end(), 0);
  big.add(0, many, table, 1);
  auto r = ex->forward(big, logits);
  EXPECT_FALSE(r.ok());
  // After refusals the executor still works.
  forward_batch ok;
  ok.add(0, m.ref.prompts[1].tokens, blocks_for(0), 1);
  EXPECT_TRUE(ex->forward(ok, logits).ok());
}

}  // namespace
}  // namespace troupe::cuda
