#include "bench/bench_model.hpp"

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/checkpoint.hpp"
#include "runtime/model_bundle.hpp"

namespace troupe::bench {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

model_config bench_shape() {
  model_config c;
  c.arch = architecture::llama;
  c.arch_name = "LlamaForCausalLM";
  c.n_vocab = 8192;
  c.n_embd = 512;
  c.n_layer = 6;
  c.n_head = 8;
  c.n_head_kv = 2;
  c.head_dim = 64;
  c.n_ff = 1536;
  c.max_position = 2048;
  c.rms_eps = 1e-5;
  c.tie_embeddings = true;
  c.eos_ids = {8191};
  return c;
}

struct tensor_out {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t bytes;
};

}  // namespace

result<std::string> write_bench_model(const std::string& dir) {
  const fs::path out(dir);
  if (fs::exists(out / "model.safetensors") && fs::exists(out / "config.json")) return dir;
  const model_config c = bench_shape();
  TROUPE_TRY(checkpoint ck, checkpoint::synthetic(c, dtype::bf16, 2024));
  const model_weights& w = ck.weights();
  std::vector<tensor_out> ts;
  auto matrix = [&](std::string name, const tensor_view& v) {
    ts.push_back({std::move(name), "BF16", v.shape, v.data, v.n_bytes});
  };
  auto vec = [&](std::string name, const std::vector<float>& v) {
    ts.push_back({std::move(name), "F32", {static_cast<int64_t>(v.size())}, v.data(), v.size() * sizeof(float)});
  };
  matrix("model.embed_tokens.weight", w.tok_embd);
  vec("model.norm.weight", w.output_norm);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const layer_weights& l = w.layers[i];
    const std::string p = fmt::format("model.layers.{}.", i);
    vec(p + "input_layernorm.weight", l.attn_norm);
    vec(p + "post_attention_layernorm.weight", l.ffn_norm);
    matrix(p + "self_attn.q_proj.weight", l.wq);
    matrix(p + "self_attn.k_proj.weight", l.wk);
    matrix(p + "self_attn.v_proj.weight", l.wv);
    matrix(p + "self_attn.o_proj.weight", l.wo);
    matrix(p + "mlp.gate_proj.weight", l.w_gate);
    matrix(p + "mlp.up_proj.weight", l.w_up);
    matrix(p + "mlp.down_proj.weight", l.w_down);
  }
  json header = json::object();
  size_t at = 0;
  for (const auto& t : ts) {
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {at, at + t.bytes}}};
    at += t.bytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return make_error(fmt::format("cannot create {}: {}", dir, ec.message()));
  {
    std::ofstream f(out / "model.safetensors.tmp", std::ios::binary | std::ios::trunc);
    const uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) f.put(static_cast<char>(n >> (8 * i)));
    f << h;
    for (const auto& t : ts) f.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(t.bytes));
    if (!f) return make_error("cannot write " + (out / "model.safetensors.tmp").string());
  }
  const json config = {{"architectures", {"LlamaForCausalLM"}},
                       {"model_type", "llama"},
                       {"hidden_size", c.n_embd},
                       {"intermediate_size", c.n_ff},
                       {"num_hidden_layers", c.n_layer},
                       {"num_attention_heads", c.n_head},
                       {"num_key_value_heads", c.n_head_kv},
                       {"head_dim", c.head_dim},
                       {"vocab_size", c.n_vocab},
                       {"max_position_embeddings", c.max_position},
                       {"rms_norm_eps", c.rms_eps},
                       {"rope_theta", 10000.0},
                       {"tie_word_embeddings", true},
                       {"hidden_act", "silu"},
                       {"bos_token_id", 8191},
                       {"eos_token_id", 8191},
                       {"torch_dtype", "bfloat16"}};
  std::ofstream(out / "config.json") << config.dump(2) << "\n";
  const fs::path tok = default_model_path();
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    fs::copy_file(tok / f, out / f, fs::copy_options::overwrite_existing, ec);
    if (ec) return make_error(fmt::format("cannot copy {}: {}", (tok / f).string(), ec.message()));
  }
  fs::rename(out / "model.safetensors.tmp", out / "model.safetensors", ec);
  if (ec) return make_error("cannot write " + (out / "model.safetensors").string());
  return dir;
}

}  // namespace troupe::bench
