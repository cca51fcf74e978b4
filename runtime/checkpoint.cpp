#include "runtime/checkpoint.hpp"

#include <filesystem>
#include <map>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/gguf.hpp"
#include "runtime/half.hpp"
#include "runtime/safetensors.hpp"

#include <cmath>
#include <cstring>

namespace troupe {
namespace fs = std::filesystem;
using json = nlohmann::json;

struct checkpoint::impl {
  checkpoint_format format = checkpoint_format::hugging_face;
  std::string path;
  model_config config;
  model_weights weights;
  std::vector<safetensors_file> shards;
  std::unique_ptr<gguf_file> gguf;
  std::string tokenizer_json, tokenizer_config, chat_template;
  std::vector<std::vector<uint8_t>> owned;  // synthetic weights
  size_t matrix_bytes = 0;
  int64_t n_params = 0;
  std::map<dtype, int64_t> params_by_type;
};

namespace {

// Finds tensors by name across the files of one checkpoint and checks them.
class tensor_source {
 public:
  struct found {
    const tensor_view* view = nullptr;
    std::string file;
  };
  virtual ~tensor_source() = default;
  virtual found find(const std::string& name) const = 0;
  virtual std::string where(const std::string& name) const = 0;  // file to blame when missing
};

class hf_source : public tensor_source {
 public:
  hf_source(const std::vector<safetensors_file>& shards, std::map<std::string, std::string> index,
            std::string index_file)
      : shards_(shards), index_(std::move(index)), index_file_(std::move(index_file)) {}
  found find(const std::string& name) const override {
    for (const auto& s : shards_)
      if (const tensor_view* v = s.find(name)) return {v, s.path()};
    return {};
  }
  std::string where(const std::string& name) const override {
    if (auto it = index_.find(name); it != index_.end()) return it->second;
    if (!index_file_.empty()) return index_file_;
    return shards_.empty() ? std::string("model.safetensors") : shards_.front().path();
  }

 private:
  const std::vector<safetensors_file>& shards_;
  std::map<std::string, std::string> index_;
  std::string index_file_;
};

class gguf_source : public tensor_source {
 public:
  explicit gguf_source(const gguf_file& g) : g_(g) {}
  found find(const std::string& name) const override {
    if (const gguf_tensor_info* t = g_.find_tensor(name)) return {&t->view, g_.path()};
    return {};
  }
  std::string where(const std::string&) const override { return g_.path(); }

 private:
  const gguf_file& g_;
};

// Tensor names in each format.
struct namer {
  bool gguf;
  std::string global(const char* hf, const char* gg) const { return gguf ? gg : hf; }
  std::string layer(int64_t i, const char* hf, const char* gg) const {
    return gguf ? fmt::format("blk.{}.{}", i, gg) : fmt::format("model.layers.{}.{}", i, hf);
  }
};

class binder {
 public:
  binder(const tensor_source& src, checkpoint::impl& m) : src_(src), m_(m) {}

  result<tensor_view> matrix(const std::string& name, std::vector<int64_t> shape) {
    TROUPE_TRY(tensor_source::found f, get(name, shape));
    const dtype t = f.view->type;
    if (t != dtype::f32 && t != dtype::f16 && t != dtype::bf16 && !is_ggml_quantized(t))
      return make_error(fmt::format("{}: tensor {} has dtype {}; weights must be f32, f16, bf16 or a GGML block type",
                                    f.file, name, dtype_name(t)));
    m_.matrix_bytes += f.view->n_bytes;
    count(*f.view);
    return *f.view;
  }

  result<std::vector<float>> vector(const std::string& name, int64_t n) {
    TROUPE_TRY(tensor_source::found f, get(name, {n}));
    count(*f.view);
    std::vector<float> out(static_cast<size_t>(n));
    switch (f.view->type) {
      case dtype::f32: {
        const auto* p = static_cast<const float*>(f.view->data);
        std::copy(p, p + n, out.begin());
        return out;
      }
      case dtype::f16: {
        const auto* p = static_cast<const uint16_t*>(f.view->data);
        for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = fp16_to_f32(p[i]);
        return out;
      }
      case dtype::bf16: {
        const auto* p = static_cast<const uint16_t*>(f.view->data);
        for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = bf16_to_f32(p[i]);
        return out;
      }
      default: break;
    }
    return make_error(fmt::format("{}: tensor {} has dtype {}; vectors must be f32, f16 or bf16",
                                  f.file, name, dtype_name(f.view->type)));
  }

  bool has(const std::string& name) const { return src_.find(name).view != nullptr; }

 private:
  result<tensor_source::found> get(const std::string& name, const std::vector<int64_t>& shape) {
    tensor_source::found f = src_.find(name);
    if (!f.view) return make_error(fmt::format("{}: tensor {} is missing", src_.where(name), name));
    // A [n] vector may be stored as [1, n]; accept leading ones.
    std::vector<int64_t> got = f.view->shape;
    while (got.size() > shape.size() && got.front() == 1) got.erase(got.begin());
    if (got != shape) {
      tensor_view want;
      want.shape = shape;
      return make_error(fmt::format("{}: tensor {} has shape {}, expected {}", f.file, name,
                                    f.view->shape_string(), want.shape_string()));
    }
    return f;
  }
  void count(const tensor_view& v) {
    m_.n_params += v.n_elements();
    m_.params_by_type[v.type] += v.n_elements();
  }

  const tensor_source& src_;
  checkpoint::impl& m_;
};

void report(const open_options* o, std::string_view phase, double done, double total, std::string_view unit) {
  if (o && o->observer) o->observer({phase, done, total, unit});
}

status bind_weights(const tensor_source& src, bool is_gguf, checkpoint::impl& m, const open_options* o = nullptr) {
  const model_config& c = m.config;
  const namer n{is_gguf};
  binder b(src, m);
  model_weights& w = m.weights;
  TROUPE_TRY(w.tok_embd, b.matrix(n.global("model.embed_tokens.weight", "token_embd.weight"),
                                  {c.n_vocab, c.n_embd}));
  TROUPE_TRY(w.output_norm, b.vector(n.global("model.norm.weight", "output_norm.weight"), c.n_embd));
  const std::string out_name = n.global("lm_head.weight", "output.weight");
  if (c.tie_embeddings && !b.has(out_name)) {
    w.output = w.tok_embd;
  } else {
    TROUPE_TRY(w.output, b.matrix(out_name, {c.n_vocab, c.n_embd}));
  }
  if (is_gguf && b.has("rope_freqs.weight")) {
    TROUPE_TRY(w.rope_freq_factors, b.vector("rope_freqs.weight", c.head_dim / 2));
  }
  auto bind_layer = [&](int64_t i, layer_weights& l) -> status {
    TROUPE_TRY(l.attn_norm, b.vector(n.layer(i, "input_layernorm.weight", "attn_norm.weight"), c.n_embd));
    TROUPE_TRY(l.wq, b.matrix(n.layer(i, "self_attn.q_proj.weight", "attn_q.weight"), {c.q_dim(), c.n_embd}));
    TROUPE_TRY(l.wk, b.matrix(n.layer(i, "self_attn.k_proj.weight", "attn_k.weight"), {c.kv_dim(), c.n_embd}));
    TROUPE_TRY(l.wv, b.matrix(n.layer(i, "self_attn.v_proj.weight", "attn_v.weight"), {c.kv_dim(), c.n_embd}));
    TROUPE_TRY(l.wo, b.matrix(n.layer(i, "self_attn.o_proj.weight", "attn_output.weight"), {c.n_embd, c.q_dim()}));
    if (c.qkv_bias) {
      TROUPE_TRY(l.bq, b.vector(n.layer(i, "self_attn.q_proj.bias", "attn_q.bias"), c.q_dim()));
      TROUPE_TRY(l.bk, b.vector(n.layer(i, "self_attn.k_proj.bias", "attn_k.bias"), c.kv_dim()));
      TROUPE_TRY(l.bv, b.vector(n.layer(i, "self_attn.v_proj.bias", "attn_v.bias"), c.kv_dim()));
    }
    if (c.qk_norm) {
      TROUPE_TRY(l.q_norm, b.vector(n.layer(i, "self_attn.q_norm.weight", "attn_q_norm.weight"), c.head_dim));
      TROUPE_TRY(l.k_norm, b.vector(n.layer(i, "self_attn.k_norm.weight", "attn_k_norm.weight"), c.head_dim));
    }
    TROUPE_TRY(l.ffn_norm, b.vector(n.layer(i, "post_attention_layernorm.weight", "ffn_norm.weight"), c.n_embd));
    TROUPE_TRY(l.w_gate, b.matrix(n.layer(i, "mlp.gate_proj.weight", "ffn_gate.weight"), {c.n_ff, c.n_embd}));
    TROUPE_TRY(l.w_up, b.matrix(n.layer(i, "mlp.up_proj.weight", "ffn_up.weight"), {c.n_ff, c.n_embd}));
    TROUPE_TRY(l.w_down, b.matrix(n.layer(i, "mlp.down_proj.weight", "ffn_down.weight"), {c.n_embd, c.n_ff}));
    return {};
  };
  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    report(o, "checking tensors", static_cast<double>(i), static_cast<double>(c.n_layer), "layers");
    TROUPE_CHECK(bind_layer(i, w.layers[static_cast<size_t>(i)]));
  }
  // MTP layers (DeepSeek-V3's layout, after the decoder stack): bound for the MTP drafter, not
  // counted as the target's parameters or the bytes its forward reads.
  if (!is_gguf && c.n_nextn_layers > 0) {
    const int64_t params = m.n_params;
    const size_t bytes = m.matrix_bytes;
    const auto by_type = m.params_by_type;
    w.mtp.resize(static_cast<size_t>(c.n_nextn_layers));
    for (int64_t j = 0; j < c.n_nextn_layers; ++j) {
      const int64_t i = c.n_layer + j;
      mtp_layer_weights& x = w.mtp[static_cast<size_t>(j)];
      TROUPE_TRY(x.enorm, b.vector(n.layer(i, "enorm.weight", ""), c.n_embd));
      TROUPE_TRY(x.hnorm, b.vector(n.layer(i, "hnorm.weight", ""), c.n_embd));
      TROUPE_TRY(x.eh_proj, b.matrix(n.layer(i, "eh_proj.weight", ""), {c.n_embd, 2 * c.n_embd}));
      TROUPE_TRY(x.shared_head_norm, b.vector(n.layer(i, "shared_head.norm.weight", ""), c.n_embd));
      TROUPE_CHECK(bind_layer(i, x.block));
    }
    m.n_params = params;
    m.matrix_bytes = bytes;
    m.params_by_type = by_type;
  }
  report(o, "checking tensors", static_cast<double>(c.n_layer), static_cast<double>(c.n_layer), "layers");
  return {};
}

// Pages every matrix in (one read per page), reporting bytes; a matrix shared by two names
// (tied embeddings) is read once.
void read_weights(const model_weights& w, const open_options* o) {
  std::vector<const tensor_view*> views = {&w.tok_embd};
  if (w.output.data != w.tok_embd.data) views.push_back(&w.output);
  for (const auto& l : w.layers)
    for (const tensor_view* v : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) views.push_back(v);
  double total = 0, done = 0;
  for (const tensor_view* v : views) total += static_cast<double>(v->n_bytes);
  constexpr size_t page = 4096, report_every = size_t{64} << 20;
  size_t since = 0;
  volatile uint8_t sink = 0;
  for (const tensor_view* v : views) {
    const auto* p = static_cast<const uint8_t*>(v->data);
    for (size_t i = 0; i < v->n_bytes; i += page) {
      sink = sink ^ p[i];
      if ((since += page) >= report_every) {
        report(o, "reading weights", done + static_cast<double>(i), total, "B");
        since = 0;
      }
    }
    done += static_cast<double>(v->n_bytes);
  }
  report(o, "reading weights", total, total, "B");
}

result<json> read_json(const std::string& path) {
  TROUPE_TRY(std::string text, read_text_file(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return make_error(path + ": not valid JSON");
  return j;
}

std::string pick_chat_template(const json& tc) {
  auto it = tc.find("chat_template");
  if (it == tc.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {  // [{name, template}]: the one named "default", else the first
    std::string first;
    for (auto& e : *it) {
      if (!e.is_object() || !e.contains("template") || !e["template"].is_string()) continue;
      if (first.empty()) first = e["template"].get<std::string>();
      if (e.value("name", "") == "default") return e["template"].get<std::string>();
    }
    return first;
  }
  return {};
}

status open_hf(const fs::path& dir, checkpoint::impl& m, const open_options* o) {
  const std::string config_path = (dir / "config.json").string();
  TROUPE_TRY(json config, read_json(config_path));
  TROUPE_TRY(m.config, model_config_from_hf(config, config_path));

  std::map<std::string, std::string> index;
  std::string index_file;
  const fs::path single = dir / "model.safetensors";
  const fs::path index_path = dir / "model.safetensors.index.json";
  std::vector<std::string> files;
  if (fs::exists(index_path)) {
    index_file = index_path.string();
    TROUPE_TRY(json idx, read_json(index_file));
    auto wm = idx.find("weight_map");
    if (wm == idx.end() || !wm->is_object())
      return make_error(index_file + ": missing required field weight_map");
    for (auto& [name, file] : wm->items()) {
      if (!file.is_string() || file.get<std::string>().find('/') != std::string::npos)
        return make_error(index_file + ": weight_map entry " + name + " must be a file name");
      const std::string f = (dir / file.get<std::string>()).string();
      index[name] = f;
      if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
    }
  } else if (fs::exists(single)) {
    files.push_back(single.string());
  } else {
    return make_error(dir.string() + ": no model.safetensors or model.safetensors.index.json");
  }
  double total = 0, mapped = 0;
  for (const auto& f : files) {
    std::error_code ec;
    total += static_cast<double>(fs::file_size(f, ec));
  }
  for (const auto& f : files) {
    report(o, "mapping", mapped, total, "B");
    TROUPE_TRY(safetensors_file s, safetensors_file::open(f));
    m.shards.push_back(std::move(s));
    std::error_code ec;
    mapped += static_cast<double>(fs::file_size(f, ec));
  }
  report(o, "mapping", total, total, "B");
  TROUPE_CHECK(bind_weights(hf_source(m.shards, std::move(index), index_file), false, m, o));

  if (fs::exists(dir / "tokenizer.json")) m.tokenizer_json = (dir / "tokenizer.json").string();
  if (fs::exists(dir / "tokenizer_config.json")) {
    m.tokenizer_config = (dir / "tokenizer_config.json").string();
    TROUPE_TRY(json tc, read_json(m.tokenizer_config));
    m.chat_template = pick_chat_template(tc);
  }
  if (fs::exists(dir / "chat_template.jinja")) {
    TROUPE_TRY(m.chat_template, read_text_file((dir / "chat_template.jinja").string()));
  }
  // generation_config.json may list more end-of-sequence ids (Llama 3 instruct does).
  if (fs::exists(dir / "generation_config.json")) {
    TROUPE_TRY(json gc, read_json((dir / "generation_config.json").string()));
    if (auto e = gc.find("eos_token_id"); e != gc.end()) {
      std::vector<int32_t> ids;
      if (e->is_number_integer()) ids.push_back(e->get<int32_t>());
      if (e->is_array())
        for (auto& v : *e)
          if (v.is_number_integer()) ids.push_back(v.get<int32_t>());
      for (int32_t id : ids)
        if (std::find(m.config.eos_ids.begin(), m.config.eos_ids.end(), id) == m.config.eos_ids.end())
          m.config.eos_ids.push_back(id);
    }
  }
  return {};
}

status open_gguf(const std::string& file, checkpoint::impl& m, const open_options* o) {
  m.format = checkpoint_format::gguf;
  std::error_code ec;
  const double size = static_cast<double>(fs::file_size(file, ec));
  report(o, "mapping", 0, size, "B");
  TROUPE_TRY(gguf_file g, gguf_file::open(file));
  report(o, "mapping", size, size, "B");
  m.gguf = std::make_unique<gguf_file>(std::move(g));
  TROUPE_TRY(m.config, model_config_from_gguf(*m.gguf));
  TROUPE_CHECK(bind_weights(gguf_source(*m.gguf), true, m, o));
  if (const gguf_value* t = m.gguf->find("tokenizer.chat_template"); t && t->as_string())
    m.chat_template = *t->as_string();
  return {};
}

// Fills n values of type t with uniform values in [-scale, scale) from a counter-based hash
// (threads fill disjoint ranges; the result does not depend on how many).
void fill_random(uint8_t* out, dtype t, int64_t n, uint64_t seed, float scale) {
  auto value = [&](int64_t i) {
    uint64_t z = seed + static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (static_cast<float>(z >> 40) * 0x1.0p-24f * 2.0f - 1.0f) * scale;
  };
  const unsigned n_threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> threads;
  const int64_t per = (n + n_threads - 1) / n_threads;
  for (unsigned th = 0; th < n_threads; ++th)
    threads.emplace_back([&, th] {
      int64_t b = th * per, e = std::min(n, b + per);
      if (t == dtype::q8_0) {  // whole blocks only
        b = b / 32 * 32;
        e = th + 1 == n_threads ? n : e / 32 * 32;
        for (int64_t blk = b / 32; blk < e / 32; ++blk) {
          uint8_t* o = out + blk * 34;
          const uint16_t d = f32_to_fp16(scale / 127.0f);
          std::memcpy(o, &d, 2);
          for (int j = 0; j < 32; ++j)
            o[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(value(blk * 32 + j) / scale * 127.0f)));
        }
        return;
      }
      if (is_ggml_quantized(t)) {  // other GGML blocks: random bits, scales that keep |w| <= scale
        const int64_t bv = dtype_block(t);
        const auto bb = static_cast<int64_t>(dtype_block_bytes(t));
        b = b / bv * bv;
        e = th + 1 == n_threads ? n : e / bv * bv;
        for (int64_t blk = b / bv; blk < e / bv; ++blk) {
          uint8_t* o = out + blk * bb;
          for (int64_t j = 0; j < bb; ++j)
            o[j] = static_cast<uint8_t>(static_cast<uint32_t>((value(blk * bb + j) / scale + 1.0f) * 127.5f));
          auto put_f16 = [&](int64_t at, float v) {
            const uint16_t h = f32_to_fp16(v);
            std::memcpy(o + at, &h, 2);
          };
          if (t == dtype::q4_0) {
            put_f16(0, scale / 8.0f);
          } else if (t == dtype::q6_k) {
            for (int j = 192; j < 208; ++j) o[j] &= 0x3f;  // scales 0..63
            put_f16(208, scale / (32.0f * 63.0f));
          } else {  // q4_K, q5_K: |d * sc * q - dmin * m| <= scale
            put_f16(0, scale / (2.0f * 63.0f * (t == dtype::q4_k ? 15.0f : 31.0f)));
            put_f16(2, scale / (2.0f * 63.0f));
          }
        }
        return;
      }
      for (int64_t i = b; i < e; ++i) {
        const float v = value(i);
        if (t == dtype::f32) {
          std::memcpy(out + i * 4, &v, 4);
        } else {
          const uint16_t h = t == dtype::bf16 ? f32_to_bf16(v) : f32_to_fp16(v);
          std::memcpy(out + i * 2, &h, 2);
        }
      }
    });
  for (auto& th : threads) th.join();
}

// A tensor_source over synthetic tensors held by the checkpoint.
class owned_source : public tensor_source {
 public:
  explicit owned_source(const std::map<std::string, tensor_view>& t) : t_(t) {}
  found find(const std::string& name) const override {
    auto it = t_.find(name);
    return it == t_.end() ? found{} : found{&it->second, "synthetic"};
  }
  std::string where(const std::string&) const override { return "synthetic"; }

 private:
  const std::map<std::string, tensor_view>& t_;
};

}  // namespace

result<checkpoint> checkpoint::synthetic(const model_config& c, dtype t, uint64_t seed) {
  if (t != dtype::f32 && t != dtype::f16 && t != dtype::bf16 && !is_ggml_quantized(t))
    return make_error("synthetic weights must be f32, f16, bf16 or a GGML block type");
  const int64_t blk = std::max<int64_t>(32, dtype_block(t));
  if (c.n_embd % blk || c.n_ff % blk || c.q_dim() % blk)
    return make_error(fmt::format("synthetic {} weights need dimensions that are multiples of {}", dtype_name(t), blk));
  auto m = std::make_unique<impl>();
  m->path = "synthetic";
  m->config = c;
  std::map<std::string, tensor_view> tensors;
  uint64_t k = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, dtype type, float scale) {
    tensor_view v;
    v.type = type;
    v.shape = std::move(shape);
    v.n_bytes = dtype_row_bytes(type, v.shape.back()) * static_cast<size_t>(v.n_elements() / v.shape.back());
    m->owned.emplace_back(v.n_bytes);
    fill_random(m->owned.back().data(), type, v.n_elements(), seed + 0x1000 * ++k, scale);
    v.data = m->owned.back().data();
    tensors[name] = v;
  };
  const float s_embd = 1.0f, s_lin = 1.7f / std::sqrt(static_cast<float>(c.n_embd));
  add("model.embed_tokens.weight", {c.n_vocab, c.n_embd}, t, s_embd);
  add("model.norm.weight", {c.n_embd}, dtype::f32, 0.0f);
  if (!c.tie_embeddings) add("lm_head.weight", {c.n_vocab, c.n_embd}, t, s_lin);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string p = fmt::format("model.layers.{}.", i);
    add(p + "input_layernorm.weight", {c.n_embd}, dtype::f32, 0.0f);
    add(p + "post_attention_layernorm.weight", {c.n_embd}, dtype::f32, 0.0f);
    add(p + "self_attn.q_proj.weight", {c.q_dim(), c.n_embd}, t, s_lin);
    add(p + "self_attn.k_proj.weight", {c.kv_dim(), c.n_embd}, t, s_lin);
    add(p + "self_attn.v_proj.weight", {c.kv_dim(), c.n_embd}, t, s_lin);
    add(p + "self_attn.o_proj.weight", {c.n_embd, c.q_dim()}, t, s_lin);
    add(p + "mlp.gate_proj.weight", {c.n_ff, c.n_embd}, t, s_lin);
    add(p + "mlp.up_proj.weight", {c.n_ff, c.n_embd}, t, s_lin);
    add(p + "mlp.down_proj.weight", {c.n_embd, c.n_ff}, t, 1.7f / std::sqrt(static_cast<float>(c.n_ff)));
    if (c.qkv_bias)
      for (const char* b : {"q", "k", "v"})
        add(p + "self_attn." + b + "_proj.bias", {b[0] == 'q' ? c.q_dim() : c.kv_dim()}, dtype::f32, 0.1f);
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", {c.head_dim}, dtype::f32, 0.0f);
      add(p + "self_attn.k_norm.weight", {c.head_dim}, dtype::f32, 0.0f);
    }
  }
  // Norm weights of exactly 1 (uniform noise of scale 0 is 0; shift it).
  for (auto& [name, v] : tensors)
    if (v.shape.size() == 1 && name.find("norm") != std::string::npos) {
      auto* f = static_cast<float*>(const_cast<void*>(v.data));
      std::fill(f, f + v.shape[0], 1.0f);
    }
  TROUPE_CHECK(bind_weights(owned_source(tensors), false, *m));
  return checkpoint(std::move(m));
}

result<checkpoint> checkpoint::open(const std::string& path, const open_options& options) {
  auto m = std::make_unique<impl>();
  m->path = path;
  std::error_code ec;
  const fs::path p(path);
  if (!fs::exists(p, ec)) return make_error(path + ": no such file or directory");
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "config.json")) {
      TROUPE_CHECK(open_hf(p, *m, &options));
    } else {
      std::vector<fs::path> ggufs;
      for (auto& e : fs::directory_iterator(p, ec))
        if (e.path().extension() == ".gguf") ggufs.push_back(e.path());
      if (ggufs.size() != 1)
        return make_error(path + ": not a model directory (no config.json, and " +
                          (ggufs.empty() ? "no .gguf file)" : "more than one .gguf file)"));
      TROUPE_CHECK(open_gguf(ggufs.front().string(), *m, &options));
    }
  } else {
    TROUPE_CHECK(open_gguf(path, *m, &options));
  }
  if (options.read_weights) read_weights(m->weights, &options);
  return checkpoint(std::move(m));
}

checkpoint::checkpoint(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
checkpoint::checkpoint(checkpoint&&) noexcept = default;
checkpoint& checkpoint::operator=(checkpoint&&) noexcept = default;
checkpoint::~checkpoint() = default;

checkpoint_format checkpoint::format() const { return impl_->format; }
const std::string& checkpoint::path() const { return impl_->path; }
const model_config& checkpoint::config() const { return impl_->config; }
const model_weights& checkpoint::weights() const { return impl_->weights; }
size_t checkpoint::matrix_bytes() const { return impl_->matrix_bytes; }
const std::string& checkpoint::tokenizer_json_path() const { return impl_->tokenizer_json; }
const std::string& checkpoint::tokenizer_config_path() const { return impl_->tokenizer_config; }
const gguf_file* checkpoint::gguf() const { return impl_->gguf.get(); }
const std::string& checkpoint::chat_template() const { return impl_->chat_template; }

std::string checkpoint::describe() const {
  const model_config& c = impl_->config;
  std::string types;
  for (auto& [t, n] : impl_->params_by_type) {
    if (!types.empty()) types += "+";
    types += dtype_name(t);
  }
  return fmt::format("{}, {} layers, hidden {}, {} heads ({} kv), {:.1f} M parameters, {}",
                     c.arch_name, c.n_layer, c.n_embd, c.n_head, c.n_head_kv,
                     static_cast<double>(impl_->n_params) / 1e6, types);
}

}  // namespace troupe
