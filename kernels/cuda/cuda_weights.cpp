// Uploading a checkpoint's weights to a device, and generating random ones there.
#include <algorithm>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "kernels/cpu/matmul.hpp"
#include "kernels/cuda/cuda_weights.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/fill_random.cuh"
#include "runtime/checkpoint.hpp"
#include "runtime/weight_matrix_of.hpp"
#include "runtime/half.hpp"

namespace troupe::cuda {
namespace {

size_t elem_bytes(precision p) { return p == precision::bf16 ? 2 : 4; }

class uploader {
 public:
  uploader(device_weights& w) : w_(w) {}

  result<void*> alloc(size_t bytes, const std::string& what) {
    TROUPE_TRY(device_buffer b, device_buffer::alloc(bytes, what));
    void* p = b.get();
    w_.total_bytes += bytes;
    w_.storage.push_back(std::move(b));
    return p;
  }

  // Rows of t, converted to prec, to dst (row-major, n_in values a row). bf16 to bf16 and f32
  // to f32 copy straight from the map; other pairs go through f32 in chunks of rows.
  status rows(const tensor_view& t, precision prec, void* dst, const std::string& what) {
    const cpu::weight_matrix m = troupe::weight_matrix_of(t);
    const size_t eb = elem_bytes(prec);
    if ((t.type == dtype::bf16 && prec == precision::bf16) || (t.type == dtype::f32 && prec == precision::f32))
      return check(cudaMemcpy(dst, t.data, static_cast<size_t>(m.n_out * m.n_in) * eb, cudaMemcpyHostToDevice), what);
    const int64_t chunk = std::max<int64_t>(1, (int64_t{16} << 20) / (m.n_in * 4));
    std::vector<float> f32(static_cast<size_t>(chunk * m.n_in));
    std::vector<uint16_t> b16(prec == precision::bf16 ? f32.size() : 0);
    for (int64_t r0 = 0; r0 < m.n_out; r0 += chunk) {
      const int64_t r1 = std::min(m.n_out, r0 + chunk), n = (r1 - r0) * m.n_in;
      cpu::dequantize_rows(m, r0, r1, f32.data());
      const void* src = f32.data();
      if (prec == precision::bf16) {
        for (int64_t i = 0; i < n; ++i) b16[static_cast<size_t>(i)] = f32_to_bf16(f32[static_cast<size_t>(i)]);
        src = b16.data();
      }
      TROUPE_CHECK(check(cudaMemcpy(static_cast<uint8_t*>(dst) + static_cast<size_t>(r0 * m.n_in) * eb, src,
                                    static_cast<size_t>(n) * eb, cudaMemcpyHostToDevice),
                         what));
    }
    return {};
  }

  // Matrices stacked by rows into one (q, k, v; gate, up).
  result<const void*> stacked(std::initializer_list<const tensor_view*> parts, precision prec,
                              const std::string& what) {
    size_t rows_total = 0;
    const int64_t n_in = (*parts.begin())->shape.at(1);
    for (const tensor_view* t : parts) rows_total += static_cast<size_t>(t->shape.at(0));
    TROUPE_TRY(void* p, alloc(rows_total * static_cast<size_t>(n_in) * elem_bytes(prec), what));
    size_t at = 0;
    for (const tensor_view* t : parts) {
      TROUPE_CHECK(rows(*t, prec, static_cast<uint8_t*>(p) + at * static_cast<size_t>(n_in) * elem_bytes(prec), what));
      at += static_cast<size_t>(t->shape.at(0));
    }
    w_.matrix_bytes += rows_total * static_cast<size_t>(n_in) * elem_bytes(prec);
    return static_cast<const void*>(p);
  }

  template <class T>
  result<const T*> vec(const std::vector<T>& v, const std::string& what) {
    if (v.empty()) return static_cast<const T*>(nullptr);
    TROUPE_TRY(void* p, alloc(v.size() * sizeof(T), what));
    TROUPE_CHECK(check(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), what));
    return static_cast<const T*>(p);
  }

 private:
  device_weights& w_;
};

std::vector<double> inv_freq_of(const model_config& c, const std::vector<float>& factors) {
  std::vector<double> f = c.rope_inv_freq();
  if (!factors.empty())
    for (size_t i = 0; i < f.size(); ++i) f[i] /= factors[i];
  return f;
}

}  // namespace

std::string_view precision_name(precision p) { return p == precision::bf16 ? "bf16" : "f32"; }

const model_config& config_of(const device_weights& w) { return w.config; }
size_t decode_bytes(const device_weights& w) { return w.matrix_bytes; }

result<std::shared_ptr<const device_weights>> upload_weights(const checkpoint& ck, int device, precision prec) {
  TROUPE_TRY(device_info info, probe_device(device));
  (void)info;
  TROUPE_CHECK(use_device(device));
  auto w = std::make_shared<device_weights>();
  w->config = ck.config();
  w->prec = prec;
  w->device = device;
  w->source = ck.path();
  const model_config& c = w->config;
  const model_weights& mw = ck.weights();
  uploader up(*w);

  for (size_t l = 0; l < mw.layers.size(); ++l) {
    const layer_weights& lw = mw.layers[l];
    const std::string at = fmt::format("layer {}", l);
    device_layer d;
    TROUPE_TRY(d.wqkv, up.stacked({&lw.wq, &lw.wk, &lw.wv}, prec, at + " q/k/v"));
    TROUPE_TRY(d.wo, up.stacked({&lw.wo}, prec, at + " o"));
    TROUPE_TRY(d.wgu, up.stacked({&lw.w_gate, &lw.w_up}, prec, at + " gate/up"));
    TROUPE_TRY(d.wdown, up.stacked({&lw.w_down}, prec, at + " down"));
    TROUPE_TRY(d.attn_norm, up.vec(lw.attn_norm, at + " attention norm"));
    TROUPE_TRY(d.ffn_norm, up.vec(lw.ffn_norm, at + " MLP norm"));
    if (c.qkv_bias) {
      std::vector<float> b = lw.bq;
      b.insert(b.end(), lw.bk.begin(), lw.bk.end());
      b.insert(b.end(), lw.bv.begin(), lw.bv.end());
      TROUPE_TRY(d.bqkv, up.vec(b, at + " q/k/v bias"));
    }
    if (c.qk_norm) {
      TROUPE_TRY(d.q_norm, up.vec(lw.q_norm, at + " q norm"));
      TROUPE_TRY(d.k_norm, up.vec(lw.k_norm, at + " k norm"));
    }
    w->layers.push_back(d);
  }
  TROUPE_TRY(w->output, up.stacked({&mw.output}, prec, "the output matrix"));
  TROUPE_TRY(w->output_norm, up.vec(mw.output_norm, "the output norm"));
  TROUPE_TRY(w->inv_freq, up.vec(inv_freq_of(c, mw.rope_freq_factors), "the RoPE frequencies"));

  // The embedding table keeps its stored type when it is only gathered from (f32 is halved to
  // bf16 in bf16 precision); a tied table is the output matrix.
  const tensor_view& e = mw.tok_embd;
  if (e.data == mw.output.data) {
    w->embd = w->output;
    w->embd_type = prec == precision::bf16 ? table_type::bf16 : table_type::f32;
  } else if ((e.type == dtype::f32 && prec == precision::bf16) ||
             (e.type != dtype::f32 && e.type != dtype::f16 && e.type != dtype::bf16 && e.type != dtype::q8_0)) {
    // (GGML's other block types are dequantized: the device gathers f32, f16, bf16, q8_0 rows.)
    TROUPE_TRY(w->embd, up.stacked({&e}, prec, "the embedding table"));
    w->matrix_bytes -= static_cast<size_t>(e.n_elements()) * elem_bytes(prec);  // gathered rows only, not read whole
    w->embd_type = prec == precision::bf16 ? table_type::bf16 : table_type::f32;
  } else {
    TROUPE_TRY(void* p, up.alloc(e.n_bytes, "the embedding table"));
    TROUPE_CHECK(check(cudaMemcpy(p, e.data, e.n_bytes, cudaMemcpyHostToDevice), "the embedding table"));
    w->embd = p;
    switch (e.type) {
      case dtype::f16: w->embd_type = table_type::f16; break;
      case dtype::bf16: w->embd_type = table_type::bf16; break;
      case dtype::q8_0: w->embd_type = table_type::q8_0; break;
      default: w->embd_type = table_type::f32; break;
    }
  }
  return std::shared_ptr<const device_weights>(std::move(w));
}

result<std::shared_ptr<const device_weights>> random_weights(const model_config& c, int device, uint64_t seed) {
  TROUPE_TRY(device_info info, probe_device(device));
  (void)info;
  TROUPE_CHECK(use_device(device));
  auto w = std::make_shared<device_weights>();
  w->config = c;
  w->prec = precision::bf16;
  w->device = device;
  w->source = "random bf16 weights";
  uploader up(*w);
  uint64_t next_seed = seed;
  // Uniform in +-1/sqrt(n_in), so that activations keep their scale from layer to layer.
  auto matrix = [&](int64_t n_out, int64_t n_in, const std::string& what, bool decode_read) -> result<const void*> {
    const size_t n = static_cast<size_t>(n_out * n_in);
    TROUPE_TRY(void* p, up.alloc(n * 2, what));
    TROUPE_CHECK(check(launch_fill_uniform(static_cast<bf16*>(p), n, 1.0f / std::sqrt(static_cast<float>(n_in)),
                                           next_seed++, nullptr),
                       what));
    if (decode_read) w->matrix_bytes += n * 2;
    return static_cast<const void*>(p);
  };
  auto ones = [&](int64_t n, const std::string& what) -> result<const float*> {
    TROUPE_TRY(void* p, up.alloc(static_cast<size_t>(n) * 4, what));
    TROUPE_CHECK(check(launch_fill_constant(static_cast<float*>(p), static_cast<size_t>(n), 1.0f, nullptr), what));
    return static_cast<const float*>(p);
  };
  const int64_t H = c.n_embd, QKV = c.q_dim() + 2 * c.kv_dim();
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string at = fmt::format("layer {}", l);
    device_layer d;
    TROUPE_TRY(d.wqkv, matrix(QKV, H, at + " q/k/v", true));
    TROUPE_TRY(d.wo, matrix(H, c.q_dim(), at + " o", true));
    TROUPE_TRY(d.wgu, matrix(2 * c.n_ff, H, at + " gate/up", true));
    TROUPE_TRY(d.wdown, matrix(H, c.n_ff, at + " down", true));
    TROUPE_TRY(d.attn_norm, ones(H, at + " attention norm"));
    TROUPE_TRY(d.ffn_norm, ones(H, at + " MLP norm"));
    if (c.qkv_bias) {
      TROUPE_TRY(void* p, up.alloc(static_cast<size_t>(QKV) * 4, at + " bias"));
      TROUPE_CHECK(check(launch_fill_uniform(static_cast<float*>(p), static_cast<size_t>(QKV), 0.1f, next_seed++, nullptr),
                         at + " bias"));
      d.bqkv = static_cast<const float*>(p);
    }
    if (c.qk_norm) {
      TROUPE_TRY(d.q_norm, ones(c.head_dim, at + " q norm"));
      TROUPE_TRY(d.k_norm, ones(c.head_dim, at + " k norm"));
    }
    w->layers.push_back(d);
  }
  TROUPE_TRY(w->output, matrix(c.n_vocab, H, "the output matrix", true));
  TROUPE_TRY(w->output_norm, ones(H, "the output norm"));
  if (c.tie_embeddings) {
    w->embd = w->output;
  } else {
    TROUPE_TRY(w->embd, matrix(c.n_vocab, H, "the embedding table", false));
  }
  w->embd_type = table_type::bf16;
  TROUPE_TRY(w->inv_freq, up.vec(inv_freq_of(c, {}), "the RoPE frequencies"));
  TROUPE_CHECK(check(cudaDeviceSynchronize(), "generating random weights"));
  return std::shared_ptr<const device_weights>(std::move(w));
}

}  // namespace troupe::cuda
