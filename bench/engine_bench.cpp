#include "bench/engine_bench.hpp"

#include <cblas.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.hpp"
#if defined(TROUPE_HAVE_CUDA)
#include "bench/cuda_engine_bench.hpp"
#endif
#include "bench/workloads.hpp"
#include "kernels/cpu/cpu_features.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/cpu_executor.hpp"
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
  if (s == "q4_0") return dtype::q4_0;
  if (s == "q4_k") return dtype::q4_k;
  if (s == "q5_k") return dtype::q5_k;
  if (s == "q6_k") return dtype::q6_k;
  return make_error("--dtype must be f32, f16, bf16, q8_0, q4_0, q4_k, q5_k or q6_k, not " + s);
}

void progress(const std::string& what) {
  std::fprintf(stderr, "bench engine: %s\n", what.c_str());
  std::fflush(stderr);
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

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

result<std::shared_ptr<const checkpoint>> random_model(const std::string& dtype_name, bool small) {
  TROUPE_TRY(dtype t, parse_dtype(dtype_name));
  const std::string shape = small ? "a 150 M-parameter Llama shape" : "TinyLlama-1.1B's shape";
  progress("generating random " + dtype_name + " weights in " + shape);
  TROUPE_TRY(checkpoint c, checkpoint::synthetic(small ? small_shape() : tinyllama_shape(), t, 1234));
  return std::make_shared<const checkpoint>(std::move(c));
}

// Bytes of weights one decode step reads (the embedding table only where it is the output).
double weight_bytes_per_step(const checkpoint& ck) {
  const model_weights& w = ck.weights();
  const bool tied = w.output.data == w.tok_embd.data;
  return static_cast<double>(ck.matrix_bytes()) - (tied ? 0.0 : static_cast<double>(w.tok_embd.n_bytes));
}

// The forward figures of one model on one thread count: prefill of o.prompt_tokens tokens and
// decode at each batch size, with the triad measured right before and right after the decode
// runs (the machine's bandwidth drifts between modes; the pair brackets them).
result<json> forward_figures(const std::shared_ptr<const checkpoint>& ck, int threads, cpu::precision prec,
                             const engine_bench_options& o, const std::vector<int>& batches, double peak) {
  const model_config& c = ck->config();
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const int per_seq_blocks = (std::max(o.prompt_tokens, o.context + o.decode_steps + 4) + 15) / 16;
  cpu_executor_options eo;
  eo.n_threads = threads;
  eo.kv_block_size = 16;
  eo.kv_n_blocks = per_seq_blocks * std::max(1, max_batch);
  eo.precision = prec;
  TROUPE_TRY(std::unique_ptr<executor> ex, make_cpu_executor(ck, eo));
  json out;
  out["executor"] = ex->describe();

  // Prefill: one prompt of prompt_tokens tokens, logits for its last position.
  std::mt19937 rng(7);
  std::vector<token_id> prompt(static_cast<size_t>(o.prompt_tokens));
  for (auto& t : prompt) t = std::uniform_int_distribution<token_id>(0, static_cast<token_id>(c.n_vocab - 1))(rng);
  std::vector<int32_t> table(static_cast<size_t>(per_seq_blocks));
  std::iota(table.begin(), table.end(), 0);
  std::vector<float> logits;
  progress(fmt::format("prefill of {} tokens, {} thread(s)", o.prompt_tokens, threads));
  double prefill_s = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    forward_batch b;
    b.add(0, prompt, table, 1);
    const auto t = std::chrono::steady_clock::now();
    TROUPE_CHECK(ex->forward(b, logits));
    prefill_s = std::min(prefill_s, seconds_since(t));
  }
  const double flops = 2.0 * static_cast<double>(layer_params(c) * c.n_layer) * o.prompt_tokens;
  out["prefill"] = {{"prompt_tokens", o.prompt_tokens},
                    {"seconds", prefill_s},
                    {"tokens_per_s", o.prompt_tokens / prefill_s},
                    {"matmul_gflop_s", flops / prefill_s / 1e9}};
  if (peak > 0) out["prefill"]["fraction_of_peak"] = flops / prefill_s / 1e9 / peak;

  // Decode: batches of sequences with `context` tokens cached (their values do not change
  // the time), one new token each per step.
  const double bytes = weight_bytes_per_step(*ck);
  double triad_before;
  {
    cpu::thread_pool pool(threads);
    progress("triad before the decode runs");
    triad_before = triad_bandwidth(pool);
  }
  json decode = json::array();
  double batch1 = 0;
  for (int batch : batches) {
    progress(fmt::format("decode at batch {}, {} thread(s)", batch, threads));
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
      d["weight_bytes_per_step"] = bytes;
      d["bandwidth_used_gb_s"] = bytes * steps_per_s / 1e9;
    }
    if (batch1 > 0) d["speedup_over_batch_1"] = tps / batch1;
    decode.push_back(d);
  }
  double triad_after;
  {
    cpu::thread_pool pool(threads);
    progress("triad after the decode runs");
    triad_after = triad_bandwidth(pool);
  }
  for (json& d : decode)
    if (d["batch"] == 1) {
      const double used = d["bandwidth_used_gb_s"].get<double>() * 1e9;
      d["fraction_of_triad"] = {{"before", used / triad_before},
                                {"after", used / triad_after},
                                {"mean", used / ((triad_before + triad_after) / 2)}};
    }
  out["decode"] = decode;
  out["decode_triad_gb_s"] = {{"before", triad_before / 1e9}, {"after", triad_after / 1e9}};
  return out;
}

double batch1_tokens_per_s(const json& fig) {
  for (const json& d : fig["decode"])
    if (d["batch"] == 1) return d["tokens_per_s"];
  return 0;
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
  cpu::precision prec = cpu::default_precision();
  if (o.precision == "f32") prec = cpu::precision::f32;
  else if (o.precision == "fast") prec = cpu::precision::fast;
  else if (!o.precision.empty()) return make_error("--precision must be fast or f32, not " + o.precision);
  json out;
  out["cpu"] = cpu_model_name();
  out["threads"] = threads;
  out["isa"] = cpu::isa_name(cpu::best_isa());
  out["precision"] = cpu::precision_name(prec);

  progress("measuring memory bandwidth (STREAM triad) and peak multiply-add throughput");
  double bandwidth, peak_bf16, peak_f32;
  {
    cpu::thread_pool pool(threads);
    bandwidth = triad_bandwidth(pool);
    peak_bf16 = cpu::peak_gflops(pool, true);
    peak_f32 = cpu::peak_gflops(pool, false);
  }
  out["memory_bandwidth_gb_s"] = bandwidth / 1e9;
  out["peak_gflop_s"] = {{"bf16_dot_products", peak_bf16}, {"f32_fma", peak_f32}};

  std::shared_ptr<const checkpoint> ck;
  if (o.model.empty()) {
    const bool small = !o.workload.empty();
    TROUPE_TRY(ck, random_model(o.dtype, small));
    out["model"] = "random " + o.dtype + " weights in " + (small ? "a 150 M-parameter Llama shape" : "TinyLlama-1.1B's shape");
  } else {
    progress("loading " + o.model);
    open_options oo;
    oo.read_weights = true;  // the figures measure the forward, not the first reads from disk
    TROUPE_TRY(checkpoint c, checkpoint::open(o.model, oo));
    ck = std::make_shared<const checkpoint>(std::move(c));
    out["model"] = o.model;
  }
  out["model_description"] = ck->describe();
  if (!o.workload.empty()) {
    TROUPE_TRY(json w, run_workload(o.workload, ck, threads, o));
    out["workload"] = w;
    out["peak_rss_mib"] = static_cast<double>(peak_rss_bytes()) / (1 << 20);
    return out;
  }
  // The roofline of prefill: bf16 dot products where bf16 weights take the fast path.
  const bool bf16_path = ck->weights().layers.at(0).w_up.type == dtype::bf16 && prec == cpu::precision::fast;
  const double peak = bf16_path && peak_bf16 > 0 ? peak_bf16 : peak_f32;
  TROUPE_TRY(json fig, forward_figures(ck, threads, prec, o, o.batches, peak));
  out["executor"] = fig["executor"];
  out["prefill"] = fig["prefill"];
  out["prefill"]["roofline"] = bf16_path ? "peak_gflop_s.bf16_dot_products" : "peak_gflop_s.f32_fma";
  progress("OpenBLAS sgemm alone at the prefill shapes");
  const model_config& c = ck->config();
  const double gemm_s = gemm_reference_seconds(c, o.prompt_tokens, threads);
  const double flops = 2.0 * static_cast<double>(layer_params(c) * c.n_layer) * o.prompt_tokens;
  out["prefill"]["openblas_sgemm_gflop_s"] = flops / gemm_s / 1e9;
  out["prefill"]["over_openblas_sgemm"] = gemm_s / fig["prefill"]["seconds"].get<double>();
  out["decode"] = fig["decode"];
  out["decode_triad_gb_s"] = fig["decode_triad_gb_s"];
  const double batch1 = batch1_tokens_per_s(fig);

  // Other weight types and one thread, in the same run: their ratios are the figures.
  const std::string main_dtype = o.model.empty() ? o.dtype : "model";
  if (!o.compare_dtypes.empty() && o.model.empty()) {
    json cmp = json::array();
    for (const std::string& dt : o.compare_dtypes) {
      TROUPE_TRY(auto other, random_model(dt, false));
      TROUPE_TRY(json f, forward_figures(other, threads, prec, o, {1}, peak_f32));
      const double b1 = batch1_tokens_per_s(f);
      json d = f["decode"][0];
      cmp.push_back({{"dtype", dt},
                     {"prefill_tokens_per_s", f["prefill"]["tokens_per_s"]},
                     {"decode_batch_1", d},
                     {"decode_triad_gb_s", f["decode_triad_gb_s"]},
                     {"weight_bytes_per_step_over_" + main_dtype, weight_bytes_per_step(*other) / weight_bytes_per_step(*ck)},
                     {"batch_1_tokens_per_s_over_" + main_dtype, batch1 > 0 ? b1 / batch1 : 0.0}});
    }
    out["compare_dtypes"] = cmp;
  }
  if (o.compare_threads && threads > 1) {
    TROUPE_TRY(json f, forward_figures(ck, 1, prec, o, {1}, peak / threads));
    out["one_thread"] = {{"prefill_tokens_per_s", f["prefill"]["tokens_per_s"]},
                         {"decode_batch_1", f["decode"][0]},
                         {"prefill_speedup_of_" + std::to_string(threads) + "_threads",
                          fig["prefill"]["tokens_per_s"].get<double>() / f["prefill"]["tokens_per_s"].get<double>()},
                         {"batch_1_speedup_of_" + std::to_string(threads) + "_threads",
                          batch1 / batch1_tokens_per_s(f)}};
  }
  out["peak_rss_mib"] = static_cast<double>(peak_rss_bytes()) / (1 << 20);
  return out;
}

}  // namespace troupe::bench
