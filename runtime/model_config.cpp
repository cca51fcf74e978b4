#include "runtime/model_config.hpp"

#include <cmath>
#include <numbers>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/gguf.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

result<int64_t> need_int(const json& c, const char* key, const std::string& file) {
  auto it = c.find(key);
  if (it == c.end() || it->is_null())
    return make_error(fmt::format("{}: missing required field {}", file, key));
  if (!it->is_number_integer() || it->get<int64_t>() <= 0)
    return make_error(fmt::format("{}: field {} must be a positive integer", file, key));
  return it->get<int64_t>();
}

result<int64_t> opt_int(const json& c, const char* key, int64_t fallback, const std::string& file) {
  auto it = c.find(key);
  if (it == c.end() || it->is_null()) return fallback;
  if (!it->is_number_integer() || it->get<int64_t>() < 0)
    return make_error(fmt::format("{}: field {} must be a non-negative integer", file, key));
  return it->get<int64_t>();
}

result<double> opt_float(const json& c, const char* key, double fallback, const std::string& file) {
  auto it = c.find(key);
  if (it == c.end() || it->is_null()) return fallback;
  if (!it->is_number()) return make_error(fmt::format("{}: field {} must be a number", file, key));
  return it->get<double>();
}

result<bool> opt_bool(const json& c, const char* key, bool fallback, const std::string& file) {
  auto it = c.find(key);
  if (it == c.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return make_error(fmt::format("{}: field {} must be true or false", file, key));
  return it->get<bool>();
}

std::vector<int32_t> ids_of(const json& c, const char* key) {
  std::vector<int32_t> out;
  auto it = c.find(key);
  if (it == c.end()) return out;
  if (it->is_number_integer()) out.push_back(it->get<int32_t>());
  if (it->is_array())
    for (auto& v : *it)
      if (v.is_number_integer()) out.push_back(v.get<int32_t>());
  return out;
}

status check_shape(model_config& m, const std::string& file) {
  if (m.n_head % m.n_head_kv != 0)
    return make_error(fmt::format(
        "{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})", file,
        m.n_head, m.n_head_kv));
  if (m.head_dim % 2 != 0)
    return make_error(fmt::format("{}: head_dim ({}) must be even for rotary embeddings", file,
                                  m.head_dim));
  if (m.max_position <= 0) m.max_position = 2048;
  return {};
}

}  // namespace

std::string_view architecture_name(architecture a) {
  switch (a) {
    case architecture::llama: return "LlamaForCausalLM";
    case architecture::mistral: return "MistralForCausalLM";
    case architecture::qwen2: return "Qwen2ForCausalLM";
    case architecture::qwen3: return "Qwen3ForCausalLM";
  }
  return "?";
}

std::vector<double> model_config::rope_inv_freq() const {
  const int64_t half = head_dim / 2;
  std::vector<double> f(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    f[static_cast<size_t>(i)] =
        1.0 / std::pow(rope_theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
  if (scaling.type == rope_scaling::kind::linear) {
    for (double& x : f) x /= scaling.factor;
  } else if (scaling.type == rope_scaling::kind::llama3) {
    // Llama 3.1: keep high frequencies, divide low ones by factor, blend in between.
    const double old_ctx = static_cast<double>(scaling.original_max_position);
    const double low_wavelen = old_ctx / scaling.low_freq_factor;
    const double high_wavelen = old_ctx / scaling.high_freq_factor;
    for (double& x : f) {
      const double wavelen = 2.0 * std::numbers::pi / x;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        x /= scaling.factor;
      } else {
        const double smooth = (old_ctx / wavelen - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        x = (1.0 - smooth) * x / scaling.factor + smooth * x;
      }
    }
  }
  return f;
}

result<model_config> model_config_from_hf(const json& c, const std::string& file) {
  if (!c.is_object()) return make_error(file + ": not a JSON object");
  model_config m;
  auto arch_it = c.find("architectures");
  if (arch_it == c.end() || !arch_it->is_array() || arch_it->empty() || !(*arch_it)[0].is_string())
    return make_error(file + ": missing required field architectures");
  m.arch_name = (*arch_it)[0].get<std::string>();
  if (m.arch_name == "LlamaForCausalLM") m.arch = architecture::llama;
  else if (m.arch_name == "MistralForCausalLM") m.arch = architecture::mistral;
  else if (m.arch_name == "Qwen2ForCausalLM") m.arch = architecture::qwen2;
  else if (m.arch_name == "Qwen3ForCausalLM") m.arch = architecture::qwen3;
  else
    return make_error(fmt::format(
        "{}: architecture {} is not supported (troupe serves LlamaForCausalLM, "
        "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)",
        file, m.arch_name));
  TROUPE_TRY(m.n_vocab, need_int(c, "vocab_size", file));
  TROUPE_TRY(m.n_embd, need_int(c, "hidden_size", file));
  TROUPE_TRY(m.n_layer, need_int(c, "num_hidden_layers", file));
  TROUPE_TRY(m.n_head, need_int(c, "num_attention_heads", file));
  TROUPE_TRY(m.n_ff, need_int(c, "intermediate_size", file));
  TROUPE_TRY(m.n_nextn_layers, opt_int(c, "num_nextn_predict_layers", 0, file));
  if (m.n_nextn_layers < 0) return make_error(file + ": field num_nextn_predict_layers must not be negative");
  TROUPE_TRY(m.n_head_kv, opt_int(c, "num_key_value_heads", m.n_head, file));
  if (m.n_head_kv == 0) m.n_head_kv = m.n_head;
  TROUPE_TRY(m.head_dim, opt_int(c, "head_dim", m.n_embd / m.n_head, file));
  if (m.head_dim == 0) m.head_dim = m.n_embd / m.n_head;
  TROUPE_TRY(m.max_position, opt_int(c, "max_position_embeddings", 2048, file));
  TROUPE_TRY(m.rms_eps, opt_float(c, "rms_norm_eps", 1e-6, file));
  TROUPE_TRY(m.rope_theta, opt_float(c, "rope_theta", 10000.0, file));
  TROUPE_TRY(m.tie_embeddings, opt_bool(c, "tie_word_embeddings", false, file));
  bool attention_bias = false;
  TROUPE_TRY(attention_bias, opt_bool(c, "attention_bias", false, file));
  m.qkv_bias = m.arch == architecture::qwen2 || attention_bias;
  m.qk_norm = m.arch == architecture::qwen3;
  // Mistral's window applies always; Qwen2's only when use_sliding_window says so.
  bool use_window = m.arch == architecture::mistral;
  if (m.arch == architecture::qwen2) {
    TROUPE_TRY(use_window, opt_bool(c, "use_sliding_window", false, file));
  }
  if (use_window) {
    TROUPE_TRY(m.sliding_window, opt_int(c, "sliding_window", 0, file));
  }
  if (auto rs = c.find("rope_scaling"); rs != c.end() && !rs->is_null()) {
    if (!rs->is_object()) return make_error(file + ": field rope_scaling must be an object");
    std::string type;
    if (auto t = rs->find("rope_type"); t != rs->end() && t->is_string()) type = t->get<std::string>();
    else if (auto t2 = rs->find("type"); t2 != rs->end() && t2->is_string()) type = t2->get<std::string>();
    TROUPE_TRY(m.scaling.factor, opt_float(*rs, "factor", 1.0, file + " rope_scaling"));
    if (type == "llama3") {
      m.scaling.type = rope_scaling::kind::llama3;
      TROUPE_TRY(m.scaling.low_freq_factor, opt_float(*rs, "low_freq_factor", 1.0, file + " rope_scaling"));
      TROUPE_TRY(m.scaling.high_freq_factor, opt_float(*rs, "high_freq_factor", 4.0, file + " rope_scaling"));
      TROUPE_TRY(m.scaling.original_max_position,
                 opt_int(*rs, "original_max_position_embeddings", 8192, file + " rope_scaling"));
      if (m.scaling.high_freq_factor <= m.scaling.low_freq_factor)
        return make_error(file + ": rope_scaling.high_freq_factor must exceed low_freq_factor");
    } else if (type == "linear") {
      m.scaling.type = rope_scaling::kind::linear;
    } else if (type != "default") {
      return make_error(fmt::format("{}: rope_scaling type {} is not supported (llama3, linear)",
                                    file, type.empty() ? "(missing)" : type));
    }
    if (m.scaling.factor <= 0) return make_error(file + ": rope_scaling.factor must be positive");
  }
  m.bos_ids = ids_of(c, "bos_token_id");
  m.eos_ids = ids_of(c, "eos_token_id");
  TROUPE_CHECK(check_shape(m, file));
  return m;
}

result<model_config> model_config_from_gguf(const gguf_file& g) {
  TROUPE_TRY(std::string arch, g.get_string("general.architecture"));
  model_config m;
  m.arch_name = arch;
  if (arch == "llama") {
    m.arch = architecture::llama;
    m.rope = rope_style::interleaved;  // llama.cpp's converter permuted q/k for it
  } else if (arch == "qwen2") {
    m.arch = architecture::qwen2;
    m.qkv_bias = true;
  } else if (arch == "qwen3") {
    m.arch = architecture::qwen3;
    m.qk_norm = true;
  } else {
    return make_error(fmt::format(
        "{}: architecture {} is not supported (troupe reads llama, qwen2 and qwen3 GGUF files)",
        g.path(), arch));
  }
  auto key = [&](const char* k) { return arch + "." + k; };
  auto pos_int = [&](const std::string& k) -> result<int64_t> {
    TROUPE_TRY(int64_t v, g.get_int(k));
    if (v <= 0) return make_error(fmt::format("{}: metadata key {} must be positive", g.path(), k));
    return v;
  };
  TROUPE_TRY(m.n_embd, pos_int(key("embedding_length")));
  TROUPE_TRY(m.n_layer, pos_int(key("block_count")));
  TROUPE_TRY(m.n_head, pos_int(key("attention.head_count")));
  TROUPE_TRY(m.n_ff, pos_int(key("feed_forward_length")));
  m.n_head_kv = m.n_head;
  if (g.find(key("attention.head_count_kv"))) {
    TROUPE_TRY(m.n_head_kv, pos_int(key("attention.head_count_kv")));
  }
  m.head_dim = m.n_embd / m.n_head;
  if (g.find(key("attention.key_length"))) {
    TROUPE_TRY(m.head_dim, pos_int(key("attention.key_length")));
  }
  m.max_position = 2048;
  if (g.find(key("context_length"))) {
    TROUPE_TRY(m.max_position, pos_int(key("context_length")));
  }
  TROUPE_TRY(m.rms_eps, g.get_float(key("attention.layer_norm_rms_epsilon")));
  if (g.find(key("attention.sliding_window"))) {
    TROUPE_TRY(m.sliding_window, pos_int(key("attention.sliding_window")));
  }
  if (g.find(key("rope.freq_base"))) {
    TROUPE_TRY(m.rope_theta, g.get_float(key("rope.freq_base")));
  }
  if (const gguf_value* st = g.find(key("rope.scaling.type")); st && st->as_string()) {
    if (*st->as_string() == "linear") {
      m.scaling.type = rope_scaling::kind::linear;
      TROUPE_TRY(m.scaling.factor, g.get_float(key("rope.scaling.factor")));
    } else if (*st->as_string() != "none") {
      return make_error(fmt::format("{}: rope scaling {} is not supported", g.path(), *st->as_string()));
    }
  }
  // Llama 3.1's scaling travels as a rope_freqs.weight tensor of per-pair divisors; the
  // checkpoint reads it. The vocabulary size comes from the token list or the embedding.
  if (const gguf_value* toks = g.find("tokenizer.ggml.tokens"); toks && toks->as_strings())
    m.n_vocab = static_cast<int64_t>(toks->as_strings()->size());
  if (const gguf_tensor_info* e = g.find_tensor("token_embd.weight"))
    m.n_vocab = e->view.shape.front();
  if (m.n_vocab <= 0)
    return make_error(g.path() + ": neither tokenizer.ggml.tokens nor token_embd.weight gives the vocabulary size");
  m.tie_embeddings = g.find_tensor("output.weight") == nullptr;
  if (auto b = g.find("tokenizer.ggml.bos_token_id")) {
    if (auto v = b->as_int()) m.bos_ids.push_back(static_cast<int32_t>(*v));
  }
  if (auto e = g.find("tokenizer.ggml.eos_token_id")) {
    if (auto v = e->as_int()) m.eos_ids.push_back(static_cast<int32_t>(*v));
  }
  TROUPE_CHECK(check_shape(m, g.path()));
  return m;
}

}  // namespace troupe
