// model_config: the architecture hyper-parameters of a decoder-only transformer, read from a
// Hugging Face config.json or from GGUF metadata.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe {

class gguf_file;

enum class architecture { llama, mistral, qwen2, qwen3 };

// How rotary embeddings pair dimensions. Hugging Face checkpoints rotate the two halves of a
// head (rotate_half, "neox"); llama.cpp's converter permutes Llama's q/k rows so that GGUF
// Llama files rotate adjacent pairs ("interleaved"). Attention scores are the same either way.
enum class rope_style { neox, interleaved };

struct rope_scaling {
  enum class kind { none, linear, llama3 } type = kind::none;
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position = 8192;  // llama3
};

struct model_config {
  architecture arch = architecture::llama;
  std::string arch_name;  // as the file spells it: "LlamaForCausalLM", "qwen2", ...
  int64_t n_vocab = 0;
  int64_t n_embd = 0;     // hidden size
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  int64_t n_ff = 0;       // intermediate size
  int64_t max_position = 0;
  int64_t sliding_window = 0;  // 0: full attention
  double rms_eps = 1e-6;
  double rope_theta = 10000.0;
  rope_scaling scaling;
  rope_style rope = rope_style::neox;
  bool tie_embeddings = false;
  bool qkv_bias = false;  // Qwen2
  bool qk_norm = false;   // Qwen3
  std::vector<int32_t> bos_ids;
  std::vector<int32_t> eos_ids;
  // Multi-token-prediction layers stored after the decoder stack (DeepSeek-V3's
  // num_nextn_predict_layers: model.layers.<n_layer + i>.*); the forward never runs them, the
  // MTP drafter (runtime/spec/mtp_proposer.hpp) does. 0: none.
  int64_t n_nextn_layers = 0;

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
  // Per-pair rotary inverse frequencies, scaling applied: [head_dim / 2].
  std::vector<double> rope_inv_freq() const;
};

std::string_view architecture_name(architecture a);

// file_name is used in error messages ("config.json: missing field hidden_size").
[[nodiscard]] result<model_config> model_config_from_hf(const nlohmann::json& config,
                                                        const std::string& file_name);
[[nodiscard]] result<model_config> model_config_from_gguf(const gguf_file& file);

}  // namespace troupe
