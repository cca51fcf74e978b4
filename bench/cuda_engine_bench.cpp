#include "bench/cuda_engine_bench.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.hpp"
#include "kernels/cuda/bench_probe.hpp"
#include "kernels/cuda/cuda_executor.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/device_name.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/model_config.hpp"

namespace troupe::bench {
namespace {

using json = nlohmann::json;

model_config llama3_8b_shape() {
  model_config c;
  c.arch = architecture::llama;
  c.arch_name = "LlamaForCausalLM";
  c.n_vocab = 128256;
  c.n_embd = 4096;
  c.n_layer = 32;
  c.n_head = 32;
  c.n_head_kv = 8;
  c.head_dim = 128;
  c.n_ff = 14336;
  c.max_position = 8192;
  c.rms_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.scaling.type = rope_scaling::kind::llama3;
  c.scaling.factor = 8.0;
  c.scaling.low_freq_factor = 1.0;
  c.scaling.high_freq_factor = 4.0;
  c.scaling.original_max_position = 8192;
  c.eos_ids = {128001, 128009};
  return c;
}

void progress(const std::string& what) {
  std::fprintf(stderr, "bench engine (cuda): %s\n", what.c_str());
  std::fflush(stderr);
}

}  // namespace

result<json> run_cuda_engine_bench(const engine_bench_options& o) {
  if (!o.workload.empty()) return make_error("--workload runs on the CPU only for now");
  TROUPE_TRY(const int index, cuda::device_index(o.device));
  TROUPE_TRY(const cuda::device_info info, cuda::probe_device(index));
  json out;
  out["device"] = cuda::describe(info);

  progress("measuring memory bandwidth (device-to-device copy of 2 GiB)");
  TROUPE_TRY(const double bandwidth, cuda::copy_bandwidth(index, size_t{2} << 30));
  out["copy_bandwidth_gb_s"] = bandwidth / 1e9;
  out["copy_bandwidth_counts"] = "bytes read plus bytes written";

  std::shared_ptr<const cuda::device_weights> w;
  if (o.model.empty()) {
    progress("generating random bf16 weights in Llama-3-8B's shape on the device");
    TROUPE_TRY(w, cuda::random_weights(llama3_8b_shape(), index, 1234));
    out["model"] = "random bf16 weights in Llama-3-8B's shape";
  } else {
    progress("uploading " + o.model);
    TROUPE_TRY(checkpoint ck, checkpoint::open(o.model));
    TROUPE_TRY(w, cuda::upload_weights(ck, index, cuda::precision::bf16));
    out["model"] = o.model;
  }
  const model_config& c = cuda::config_of(*w);
  const int max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  const int per_seq_blocks = (std::max(o.prompt_tokens, o.context + o.decode_steps + 4) + 15) / 16;
  cuda::executor_options eo;
  eo.kv_block_size = 16;
  eo.kv_n_blocks = per_seq_blocks * std::max(1, max_batch);
  eo.max_batch_tokens = std::max(o.prompt_tokens, max_batch);
  eo.max_seqs = std::max(1, max_batch);
  eo.max_logit_rows = std::max(1, max_batch);
  TROUPE_TRY(std::unique_ptr<cuda::cuda_executor> ex, cuda::make_cuda_executor(w, eo));
  out["executor"] = ex->describe();

  // Prefill: one prompt, logits for its last position; the best of three.
  std::mt19937 rng(7);
  std::vector<token_id> prompt(static_cast<size_t>(o.prompt_tokens));
  for (auto& t : prompt) t = std::uniform_int_distribution<token_id>(0, static_cast<token_id>(c.n_vocab - 1))(rng);
  std::vector<int32_t> table(static_cast<size_t>(per_seq_blocks));
  std::iota(table.begin(), table.end(), 0);
  std::vector<float> logits;
  progress(fmt::format("prefill of {} tokens", o.prompt_tokens));
  double prefill_s = 1e30;
  for (int rep = 0; rep < 4; ++rep) {  // the first settles cuBLASLt's plans
    forward_batch b;
    b.add(0, prompt, table, 1);
    const auto t = std::chrono::steady_clock::now();
    TROUPE_CHECK(ex->forward(b, logits));
    if (rep > 0) prefill_s = std::min(prefill_s, seconds_since(t));
  }
  progress("cuBLAS alone at the same shapes");
  const int64_t m = o.prompt_tokens, H = c.n_embd, QKV = c.q_dim() + 2 * c.kv_dim();
  const std::vector<cuda::gemm_shape> shapes = {
      {m, QKV, H}, {m, H, c.q_dim()}, {m, 2 * c.n_ff, H}, {m, H, c.n_ff}};
  TROUPE_TRY(const double layer_gemm_s, cuda::cublas_gemm_seconds(index, shapes));
  const double gemm_s = layer_gemm_s * static_cast<double>(c.n_layer);
  double flops = 0;
  for (const auto& s : shapes) flops += 2.0 * static_cast<double>(s.m * s.n * s.k);
  flops *= static_cast<double>(c.n_layer);
  out["prefill"] = {{"prompt_tokens", o.prompt_tokens},
                    {"seconds", prefill_s},
                    {"tokens_per_s", o.prompt_tokens / prefill_s},
                    {"matmul_tflop_s", flops / prefill_s / 1e12},
                    {"cublas_seconds", gemm_s},
                    {"cublas_tflop_s", flops / gemm_s / 1e12},
                    {"fraction_of_cublas", gemm_s / prefill_s},
                    {"target_fraction", 0.6},
                    {"meets_target", gemm_s / prefill_s >= 0.6}};

  // Decode: batches of sequences with `context` tokens cached, one new token each per step.
  const double weight_bytes = static_cast<double>(cuda::decode_bytes(*w));
  json decode = json::array();
  double batch1 = 0;
  for (int batch : o.batches) {
    progress(fmt::format("decode at batch {}", batch));
    decode_driver driver(*ex, batch, per_seq_blocks, o.context, c.n_vocab);
    const auto before = ex->stats();
    TROUPE_CHECK(driver.run_steps(2, 0));  // the first runs eagerly, the second captures the graph
    const auto t = std::chrono::steady_clock::now();
    TROUPE_CHECK(driver.run_steps(o.decode_steps, 2));
    const double secs = seconds_since(t);
    const auto after = ex->stats();
    const double steps_per_s = o.decode_steps / secs;
    const double tps = steps_per_s * batch;
    if (batch == 1) batch1 = tps;
    json d = {{"batch", batch},
              {"tokens_per_s", tps},
              {"step_ms", 1000.0 / steps_per_s},
              {"graph_replays", after.graph_replays - before.graph_replays}};
    if (batch == 1) {
      d["weight_bytes_per_step"] = weight_bytes;
      d["bandwidth_used_gb_s"] = weight_bytes * steps_per_s / 1e9;
      // A step reads the weights once; the copy both reads and writes its bytes.
      d["fraction_of_copy_bandwidth"] = weight_bytes * steps_per_s / bandwidth;
      d["target_fraction"] = 0.85;
      d["meets_target"] = weight_bytes * steps_per_s / bandwidth >= 0.85;
    }
    if (batch1 > 0) d["speedup_over_batch_1"] = tps / batch1;
    decode.push_back(d);
  }
  out["decode"] = decode;
  out["peak_rss_mib"] = static_cast<double>(peak_rss_bytes()) / (1 << 20);
  return out;
}

}  // namespace troupe::bench
