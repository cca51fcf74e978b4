// cuda_weights: a model's weights on one device, made once (uploaded from a checkpoint, or
// random for benchmarks) and then only read, by every executor (stream) of that device.
// Matrices are in the executor's precision, fused where one product can serve several:
// q, k and v stacked into one [q_dim + 2 kv_dim, n_embd] matrix, gate and up into one
// [2 n_ff, n_embd]. Internal to kernels/cuda (it holds device memory).
#pragma once

#include <memory>
#include <vector>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_executor.hpp"
#include "kernels/cuda/cuda_util.hpp"
#include "runtime/model_config.hpp"

namespace troupe::cuda {

struct device_layer {
  const void* wqkv = nullptr;         // [q_dim + 2 kv_dim, n_embd]
  const void* wo = nullptr;           // [n_embd, q_dim]
  const void* wgu = nullptr;          // [2 n_ff, n_embd]
  const void* wdown = nullptr;        // [n_embd, n_ff]
  const float* attn_norm = nullptr;   // [n_embd]
  const float* ffn_norm = nullptr;    // [n_embd]
  const float* bqkv = nullptr;        // [q_dim + 2 kv_dim], Qwen2 only
  const float* q_norm = nullptr;      // [head_dim], Qwen3 only
  const float* k_norm = nullptr;      // [head_dim], Qwen3 only
};

struct device_weights {
  model_config config;
  precision prec = precision::bf16;
  int device = 0;
  std::string source;  // "model.safetensors" or "random bf16 weights"
  const void* embd = nullptr;  // [n_vocab, n_embd] of embd_type: the checkpoint's type (see embedding.cuh)
  table_type embd_type = table_type::bf16;
  const void* output = nullptr;       // [n_vocab, n_embd] in prec; the embedding when tied
  const float* output_norm = nullptr; // [n_embd]
  const double* inv_freq = nullptr;   // [head_dim / 2]: scaling and rope_freq_factors applied
  std::vector<device_layer> layers;
  size_t matrix_bytes = 0;  // what a decode step reads: every layer's matrices and the output
  size_t total_bytes = 0;
  std::vector<device_buffer> storage;  // owns everything above
};

}  // namespace troupe::cuda
