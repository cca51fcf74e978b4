#include "bench/engine_bench.hpp"

#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.hpp"
#if defined(TROUPE_HAVE_CUDA)
#include "bench/cuda_engine_bench.hpp"
#endif
#include "bench/workloads.hpp"
#include "kernels/cpu/cpu_features.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/model_config.hpp"

namespace troupe::bench {
namespace {

using json = nlohmann::json;

model_config tinyllama_shape() {
  model_config c;
  c.arch = architecture::llama;
  c.arch_name = "LlamaForCausalLM";
  c.n_vocab = 32000;
  c.n_embd = 2048;
  c.n_layer = 22;
  c.n_head = 32;
  c.n_head_kv = 4;
  c.head_dim = 64;
  c.n_ff = 5632;
  c.max_position = 2048;
  c.rms_eps = 1e-5;
  c.eos_ids = {2};
  return c;
}

// For the serving workloads: a Llama of about 150 M parameters, so that a run of dozens of
// requests with long prompts takes a minute or two on a small CPU rather than an hour.
model_config small_shape() {
  model_config c = tinyllama_shape();
  c.n_layer = 8;
  c.n_embd = 1024;
  c.n_head = 16;
  c.n_head_kv = 4;
  c.head_dim = 64;
  c.n_ff = 2816;
  return c;
}

result<dtype> parse_dtype(const std::string& s) {
  if (s == "f32") return dtype::f32;
  if (s == "f16") return dtype::f16;
  if (s == "bf16") return dtype::bf16;
  if (s == "q8_0") return dtype::q8_0;
  return make_error("--dtype must be f32, f16, bf16 or q8_0, not " + s);
}

// Seconds for OpenBLAS alone to do the matrix products of one prefill of m tokens (f32
// weights, its own threads): what "the GEMM library's own throughput" means here.
double gemm_reference_seconds(const model_config& c, int m, int threads) {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {c.q_dim(), c.n_embd}, {c.kv_dim(), c.n_embd}, {c.kv_dim(), c.n_embd}, {c.n_embd, c.q_dim()},
      {c.n_ff, c.n_embd},    {c.n_ff, c.n_embd},     {c.n_embd, c.n_ff}};
  int64_t max_w = 0, max_x = 0, max_y = 0;
  for (auto [n, k] : shapes) {
    max_w = std::max(max_w, n * k);
    max_x = std::max(max_x, m * k);
    max_y = std::max(max_y, m * n);
  }
  std::vector<float> w(static_cast<size_t>(max_w), 0.01f), x(static_cast<size_t>(max_x), 0.5f),
      y(static_cast<size_t>(max_y));
  openblas_set_num_threads(threads);
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t = std::chrono::steady_clock::now();
    for (auto [n, k] : shapes)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, static_cast<int>(n), static_cast<int>(k), 1.0f,
                  x.data(), static_cast<int>(k), w.data(), static_cast<int>(k), 0.0f, y.data(), static_cast<int>(n));
    best = std::min(best, seconds_since(t));
  }
  openblas_set_num_threads(1);  // the executor parallelises BLAS calls itself
  return best * static_cast<double>(c.n_layer);
}

int64_t layer_params(const model_config& c) {
  return c.n_embd * c.q_dim() * 2 + c.n_embd * c.kv_dim() * 2 + 3 * c.n_embd * c.n_ff;
}

}  // namespace

result<json> run_engine_bench(const engine_bench_options& o) {
  if (o.device != "cpu") {
#if defined(TROUPE_HAVE_CUDA)
    return run_cuda_engine_bench(o);
#else
    return make_error("--device " + o.device + ": this build of troupe has no CUDA backend");
#endif
  }
  const int threads = o.threads > 0 ? o.threads : available_cores();
  json out;
  out["threads"] = threads;
  out["isa"] = cpu::isa_name(cpu::best_isa());

  bench_steps progress("bench engine", o.workload.empty() ? 4 + static_cast<int>(o.batches.size()) : 3);
  progress.next("measuring memory bandwidth (STREAM triad)");
  double bandwidth;
  {
    cpu::thread_pool pool(threads);
    bandwidth = triad_bandwidth(pool);
  }
  out["memory_bandwidth_gb_s"] = bandwidth / 1e9;

  std::shared_ptr<const checkpoint> ck;
  if (o.model.empty()) {
    TROUPE_TRY(dtype t, parse_dtype(o.dtype));
    const bool small = !o.workload.empty();
    const std::string shape = small ? "a 150 M-parameter Llama shape" : "TinyLlama-1.1B's shape";
    progress.next("generating random " + o.dtype + " weights in " + shape);
    TROUPE_TRY(checkpoint c, checkpoint::synthetic(small ? small_shape() : tinyllama_shape(), t, 1234));
    ck = std::make_shared<const checkpoint>(std::move(c));
    out["model"] = "random " + o.dtype + " weights in " + shape;
  } else {
    progress.next("loading " + o.model);
    open_options oo;
    oo.read_weights = true;
    TROUPE_TRY(checkpoint c, checkpoint::open(o.model, oo));
    ck = std::make_shared<const checkpoint>(std::move(c));
    out["model"] = o.model;
  }
  out["model_description"] = ck->describe();
  if (!o.workload.empty()) {
    progress.next("the " + o.workload + " workload");
    TROUPE_TRY(json w, run_workload(o.workload, ck, threads, o));
    out["workload"] = w;
    out["peak_rss_mib"] = static_cast<double>(peak_rss_bytes()) / (1 << 20);
    return out;
  }
  const model_config& c = ck->config();
  const int max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  const int per_seq_blocks = (std::max(o.prompt_tokens, o.context + o.decode_steps + 4) + 15) / 16;
  engine_spec spec;
  spec.threads = threads;
  spec.kv_block_size = 16;
  spec.kv_n_blocks = per_seq_blocks * std::max(1, max_batch);
  executor_factory factory;
  TROUPE_TRY(std::shared_ptr<executor> ex, factory.make_executor(ck, o.model.empty() ? "random" : o.model, spec));
  out["executor"] = ex->describe();

  // Prefill: one prompt of prompt_tokens tokens, logits for its last position.
  std::mt19937 rng(7);
  std::vector<token_id> prompt(static_cast<size_t>(o.prompt_tokens));
  for (auto& t : prompt) t = std::uniform_int_distribution<token_id>(0, static_cast<token_id>(c.n_vocab - 1))(rng);
  std::vector<int32_t> table(static_cast<size_t>(per_seq_blocks));
  std::iota(table.begin(), table.end(), 0);
  std::vector<float> logits;
  progress.next(fmt::format("prefill of {} tokens", o.prompt_tokens));
  double prefill_s = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    forward_batch b;
    b.add(0, prompt, table, 1);
    const auto t = std::chrono::steady_clock::now();
    TROUPE_CHECK(ex->forward(b, logits));
    prefill_s = std::min(prefill_s, seconds_since(t));
  }
  progress.next("the GEMM library alone at the same shapes");
  const double gemm_s = gemm_reference_seconds(c, o.prompt_tokens, threads);
  const double flops = 2.0 * static_cast<double>(layer_params(c) * c.n_layer) * o.prompt_tokens;
  out["prefill"] = {{"prompt_tokens", o.prompt_tokens},
                    {"seconds", prefill_s},
                    {"tokens_per_s", o.prompt_tokens / prefill_s},
                    {"matmul_gflop_s", flops / prefill_s / 1e9},
                    {"gemm_library_seconds", gemm_s},
                    {"gemm_library_gflop_s", flops / gemm_s / 1e9},
                    {"fraction_of_gemm_library", gemm_s / prefill_s}};

  // Decode: batches of sequences with `context` tokens cached (their values do not change
  // the time), one new token each per step.
  const model_weights& w = ck->weights();
  const bool tied = w.output.data == w.tok_embd.data;
  const double weight_bytes = static_cast<double>(ck->matrix_bytes()) - (tied ? 0.0 : static_cast<double>(w.tok_embd.n_bytes));
  json decode = json::array();
  double batch1 = 0;
  for (int batch : o.batches) {
    progress.next(fmt::format("decode at batch {}", batch));
    decode_driver driver(*ex, batch, per_seq_blocks, o.context, c.n_vocab);
    TROUPE_CHECK(driver.run_steps(2, 0));
    const auto t = std::chrono::steady_clock::now();
    TROUPE_CHECK(driver.run_steps(o.decode_steps, 2));
    const double secs = seconds_since(t);
    const double steps_per_s = o.decode_steps / secs;
    const double tps = steps_per_s * batch;
    if (batch == 1) batch1 = tps;
    json d = {{"batch", batch}, {"tokens_per_s", tps}, {"step_ms", 1000.0 / steps_per_s}};
    if (batch == 1) {
      d["weight_bytes_per_step"] = weight_bytes;
      d["bandwidth_used_gb_s"] = weight_bytes * steps_per_s / 1e9;
      d["fraction_of_memory_bandwidth"] = weight_bytes * steps_per_s / bandwidth;
    }
    if (batch1 > 0) d["speedup_over_batch_1"] = tps / batch1;
    decode.push_back(d);
  }
  out["decode"] = decode;
  out["peak_rss_mib"] = static_cast<double>(peak_rss_bytes()) / (1 << 20);
  return out;
}

}  // namespace troupe::bench
