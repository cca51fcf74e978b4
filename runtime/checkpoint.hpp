// checkpoint: a model on disk (a Hugging Face directory with config.json and safetensors,
// possibly sharded, or a GGUF file) with every weight checked and mapped in place.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/model_config.hpp"
#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

class gguf_file;

// Matrices are views into the mapped files (no copy); the small vectors (norms, biases)
// are converted to f32 once at load.
struct layer_weights {
  std::vector<float> attn_norm;       // [n_embd]
  tensor_view wq, wk, wv, wo;         // [q_dim, n_embd] [kv_dim, n_embd] x2 [n_embd, q_dim]
  std::vector<float> bq, bk, bv;      // [q_dim] [kv_dim] x2, only with qkv_bias
  std::vector<float> q_norm, k_norm;  // [head_dim], only with qk_norm
  std::vector<float> ffn_norm;        // [n_embd]
  tensor_view w_gate, w_up, w_down;   // [n_ff, n_embd] x2 [n_embd, n_ff]
};

// One multi-token-prediction layer in DeepSeek-V3's form (model.layers.<n_layer + i>.*):
// in = eh_proj(cat[enorm(embed(next token)), hnorm(hidden)]); out = block(in) (a Llama decoder
// layer, whose pre-norm output feeds the next chained step); logits = head(shared_head_norm(out)).
// The embedding and head are the target's.
struct mtp_layer_weights {
  std::vector<float> enorm, hnorm;     // [n_embd]
  tensor_view eh_proj;                 // [n_embd, 2 * n_embd]
  layer_weights block;
  std::vector<float> shared_head_norm;  // [n_embd]
};

struct model_weights {
  tensor_view tok_embd;                  // [n_vocab, n_embd]
  std::vector<float> output_norm;        // [n_embd]
  tensor_view output;                    // [n_vocab, n_embd]; the embedding when tied
  std::vector<layer_weights> layers;
  std::vector<float> rope_freq_factors;  // [head_dim / 2] divisors (GGUF Llama 3.1), or empty
  // config.n_nextn_layers MTP layers (Hugging Face checkpoints only; a GGUF file carries none).
  // Not counted in the parameters or matrix bytes the target's forward reads.
  std::vector<mtp_layer_weights> mtp;
};

enum class checkpoint_format { hugging_face, gguf };

// How far opening a checkpoint has come, for a progress display. Phases in order: "mapping"
// (bytes of the files mapped), "checking tensors" (layers bound and checked), and with
// read_weights "reading weights" (bytes paged in).
struct load_progress {
  std::string_view phase;
  double done = 0;
  double total = 0;
  std::string_view unit;  // "B" or "layers"
};

struct open_options {
  std::function<void(const load_progress&)> observer;  // called on the opening thread
  // Read every matrix once, so that the first request does not wait on the disk (what
  // `troupe serve` and `generate` do; `troupe models` only maps).
  bool read_weights = false;
};

class checkpoint {
 public:
  // path: a Hugging Face model directory, a .gguf file, or a directory holding one .gguf.
  // Every problem (unknown architecture, missing config field, missing or misshapen tensor,
  // unsupported dtype, truncated file) is an error naming the file and the field or tensor.
  [[nodiscard]] static result<checkpoint> open(const std::string& path, const open_options& options = {});
  // Random weights of type t (f32, f16, bf16 or a GGML block type) in the shape of config, generated in
  // memory with the given seed: for benchmarks of shapes no file here has.
  [[nodiscard]] static result<checkpoint> synthetic(const model_config& config, dtype t, uint64_t seed);

  checkpoint(checkpoint&&) noexcept;
  checkpoint& operator=(checkpoint&&) noexcept;
  ~checkpoint();

  checkpoint_format format() const;
  const std::string& path() const;
  const model_config& config() const;
  const model_weights& weights() const;
  // Bytes of every matrix a decode step reads (what bounds decode on memory bandwidth).
  size_t matrix_bytes() const;
  // A short description: "LlamaForCausalLM, 6 layers, hidden 256, 7.1 M parameters, bf16".
  std::string describe() const;

  // Where the tokenizer lives: tokenizer.json (+ tokenizer_config.json, may be "") for a
  // Hugging Face directory, or the GGUF file's metadata.
  const std::string& tokenizer_json_path() const;
  const std::string& tokenizer_config_path() const;
  const gguf_file* gguf() const;
  // The model's own chat template source, "" when it ships none.
  const std::string& chat_template() const;

  struct impl;

 private:
  explicit checkpoint(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
