#include "runtime/cpu_executor.hpp"

#include <sched.h>
#include <sys/mman.h>

#include <chrono>
#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "kernels/cpu/cpu_features.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/packed_weights.hpp"
#include "runtime/weight_matrix_of.hpp"

namespace troupe {
namespace {

// Host memory reserved with an anonymous mapping: pages cost nothing until first written,
// so a KV cache sized to a fraction of free memory only takes what its blocks use.
class host_buffer {
 public:
  host_buffer() = default;
  explicit host_buffer(size_t n_floats) : bytes_(n_floats * sizeof(float)) {
    if (bytes_ == 0) return;
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = static_cast<float*>(p);
  }
  host_buffer(host_buffer&& o) noexcept : data_(std::exchange(o.data_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  host_buffer& operator=(host_buffer&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  host_buffer(const host_buffer&) = delete;
  host_buffer& operator=(const host_buffer&) = delete;
  ~host_buffer() {
    if (data_) munmap(data_, bytes_);
  }
  float* data() const { return data_; }

 private:
  float* data_ = nullptr;
  size_t bytes_ = 0;
};

struct layer_mats {
  cpu::weight_matrix wq, wk, wv, wo, w_gate, w_up, w_down;
};

class cpu_executor final : public executor {
 public:
  cpu_executor(std::shared_ptr<const checkpoint> m, int n_threads, int32_t block_size,
               int32_t n_blocks, cpu::precision prec)
      : model_(std::move(m)), c_(model_->config()), pool_(n_threads), block_size_(block_size),
        n_blocks_(n_blocks), prec_(prec) {
    const model_weights& w = model_->weights();
    // The embedding lookup reads rows of the mapped original; every matrix that goes through
    // matmul is packed here, once (packed_weights: shared with the model's MTP head).
    const auto t0 = std::chrono::steady_clock::now();
    packed_ = packed_weights_of(model_);
    auto mat = [&](const tensor_view& t) { return packed_->matrix(t, prec_, &pool_); };
    embd_ = weight_matrix_of(w.tok_embd);
    output_ = mat(w.output);
    for (const layer_weights& l : w.layers)
      layers_.push_back({mat(l.wq), mat(l.wk), mat(l.wv), mat(l.wo), mat(l.w_gate), mat(l.w_up), mat(l.w_down)});
    pack_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    inv_freq_ = c_.rope_inv_freq();
    if (!w.rope_freq_factors.empty())
      for (size_t i = 0; i < inv_freq_.size(); ++i) inv_freq_[i] /= w.rope_freq_factors[i];
    const size_t per_layer = static_cast<size_t>(n_blocks_) * block_floats();
    k_cache_.resize(static_cast<size_t>(c_.n_layer));
    v_cache_.resize(static_cast<size_t>(c_.n_layer));
    for (int64_t l = 0; l < c_.n_layer; ++l) {
      k_cache_[static_cast<size_t>(l)] = host_buffer(per_layer);
      v_cache_[static_cast<size_t>(l)] = host_buffer(per_layer);
    }
  }

  const model_config& config() const override { return c_; }
  int32_t kv_block_size() const override { return block_size_; }
  int32_t kv_n_blocks() const override { return n_blocks_; }
  size_t kv_bytes_per_block() const override {
    return bytes_per_block(c_, block_size_);
  }
  static size_t bytes_per_block(const model_config& c, int32_t block_size) {
    return 2 * sizeof(float) * static_cast<size_t>(c.n_layer * c.n_head_kv * c.head_dim) *
           static_cast<size_t>(block_size);
  }

  std::string describe() const override {
    std::string packed;
    if (const size_t pb = packed_->bytes(); pb > 0)
      packed = fmt::format(", bf16 matrices packed at load ({} MiB, {:.0f} ms)", pb >> 20, pack_ms_);
    return fmt::format("cpu, {} threads, {}, {} precision, {} KV blocks of {} tokens ({} MiB){}", pool_.size(),
                       cpu::isa_name(cpu::best_isa()), cpu::precision_name(prec_), n_blocks_, block_size_,
                       kv_bytes_per_block() * static_cast<size_t>(n_blocks_) >> 20, packed);
  }

  void copy_blocks(std::span<const int32_t> src, std::span<const int32_t> dst) override {
    const size_t bf = block_floats();
    for (size_t i = 0; i < src.size() && i < dst.size(); ++i)
      for (int64_t l = 0; l < c_.n_layer; ++l) {
        float* kc = k_cache_[static_cast<size_t>(l)].data();
        float* vc = v_cache_[static_cast<size_t>(l)].data();
        std::copy_n(kc + src[i] * bf, bf, kc + dst[i] * bf);
        std::copy_n(vc + src[i] * bf, bf, vc + dst[i] * bf);
      }
  }

  // A block's bytes: for each layer, its keys [n_head_kv][head_dim][block_size] (transposed),
  // then its values [n_head_kv][block_size][head_dim], in f32.
  status read_blocks(std::span<const int32_t> blocks, std::vector<uint8_t>& out) override {
    TROUPE_CHECK(validate_blocks(blocks, n_blocks_, kv_bytes_per_block(), nullptr));
    const size_t bf = block_floats();
    size_t at = out.size();
    out.resize(at + blocks.size() * kv_bytes_per_block());
    for (int32_t b : blocks)
      for (int64_t l = 0; l < c_.n_layer; ++l)
        for (const host_buffer* cache : {&k_cache_[static_cast<size_t>(l)], &v_cache_[static_cast<size_t>(l)]}) {
          std::memcpy(out.data() + at, cache->data() + static_cast<size_t>(b) * bf, bf * sizeof(float));
          at += bf * sizeof(float);
        }
    return {};
  }
  status write_blocks(std::span<const int32_t> blocks, std::span<const uint8_t> data) override {
    const size_t bytes = data.size();
    TROUPE_CHECK(validate_blocks(blocks, n_blocks_, kv_bytes_per_block(), &bytes));
    const size_t bf = block_floats();
    size_t at = 0;
    for (int32_t b : blocks)
      for (int64_t l = 0; l < c_.n_layer; ++l)
        for (host_buffer* cache : {&k_cache_[static_cast<size_t>(l)], &v_cache_[static_cast<size_t>(l)]}) {
          std::memcpy(cache->data() + static_cast<size_t>(b) * bf, data.data() + at, bf * sizeof(float));
          at += bf * sizeof(float);
        }
    return {};
  }
  std::string kv_layout() const override {
    return fmt::format("cpu f32 L{} kv{} d{} b{} k-transposed", c_.n_layer, c_.n_head_kv, c_.head_dim, block_size_);
  }

  bool verifies_trees() const override { return true; }
  bool runs_fused_head() const override { return true; }

  // kv_moves: each (src, dst) slot pair's keys and values, every layer and KV head, in order.
  void move_kv(std::span<const int32_t> moves) {
    const size_t bf = block_floats();
    const int64_t bs = block_size_, hd = c_.head_dim;
    for (size_t i = 0; i + 1 < moves.size(); i += 2) {
      const int64_t sb = moves[i] / bs, so = moves[i] % bs, db = moves[i + 1] / bs, dof = moves[i + 1] % bs;
      for (int64_t l = 0; l < c_.n_layer; ++l) {
        float* kc = k_cache_[static_cast<size_t>(l)].data();
        float* vc = v_cache_[static_cast<size_t>(l)].data();
        for (int64_t h = 0; h < c_.n_head_kv; ++h) {
          const float* ks = kc + static_cast<size_t>(sb) * bf + h * hd * bs;  // [hd][bs]
          float* kd = kc + static_cast<size_t>(db) * bf + h * hd * bs;
          for (int64_t d = 0; d < hd; ++d) kd[d * bs + dof] = ks[d * bs + so];
          const float* vs = vc + static_cast<size_t>(sb) * bf + (h * bs + so) * hd;  // [bs][hd]
          std::copy_n(vs, hd, vc + static_cast<size_t>(db) * bf + (h * bs + dof) * hd);
        }
      }
    }
  }

  status forward(const forward_batch& b, std::vector<float>& logits) override {
    return forward_hidden(b, logits, hidden_);
  }
  status forward_hidden(const forward_batch& b, std::vector<float>& logits, std::vector<float>& hidden) override;
  bool returns_hidden_states() const override { return true; }

 private:
  size_t block_floats() const {
    return static_cast<size_t>(c_.n_head_kv * c_.head_dim * block_size_);
  }
  // Runs fn(row_begin, row_end) over n rows on the pool.
  template <class F>
  void rows(int64_t n, F&& fn) {
    pool_.parallel_for(n, 1, fn);
  }
  void resize(int64_t n_tokens);

  std::shared_ptr<const checkpoint> model_;
  const model_config& c_;
  cpu::thread_pool pool_;
  int32_t block_size_, n_blocks_;
  cpu::precision prec_;
  std::shared_ptr<packed_weights> packed_;
  double pack_ms_ = 0;  // what packing took at load (0 when another executor of the model had packed)
  cpu::weight_matrix embd_, output_;
  std::vector<layer_mats> layers_;
  std::vector<double> inv_freq_;
  std::vector<host_buffer> k_cache_, v_cache_;  // per layer
  // Scratch for one forward, grown to the largest batch seen.
  std::vector<float> x_, h_, q_, k_, v_, att_, g_, u_, cos_, sin_, hl_, hidden_;
  std::vector<float> aux_;  // a fused head's aux rows [n_hidden_rows, aux_layers * n_embd]
  std::vector<int32_t> pos_, slot_;  // RoPE positions and KV slots (they differ in a tree)
  std::vector<uint64_t> mask_;       // tree verifications' ancestor bitmasks
};

void cpu_executor::resize(int64_t n) {
  auto grow = [](std::vector<float>& v, int64_t size) {
    if (v.size() < static_cast<size_t>(size)) v.resize(static_cast<size_t>(size));
  };
  grow(x_, n * c_.n_embd);
  grow(h_, n * c_.n_embd);
  grow(q_, n * c_.q_dim());
  grow(k_, n * c_.kv_dim());
  grow(v_, n * c_.kv_dim());
  grow(att_, n * c_.q_dim());
  grow(g_, n * c_.n_ff);
  grow(u_, n * c_.n_ff);
  grow(cos_, n * c_.head_dim / 2);
  grow(sin_, n * c_.head_dim / 2);
  if (pos_.size() < static_cast<size_t>(n)) pos_.resize(static_cast<size_t>(n));
  if (slot_.size() < static_cast<size_t>(n)) slot_.resize(static_cast<size_t>(n));
}

status cpu_executor::forward_hidden(const forward_batch& b, std::vector<float>& logits, std::vector<float>& hidden) {
  TROUPE_CHECK(validate_batch(b, c_.n_vocab, block_size_, n_blocks_, c_.max_position));
  const int64_t T = b.n_tokens();
  const int64_t H = c_.n_embd, QD = c_.q_dim(), KVD = c_.kv_dim(), FF = c_.n_ff, HD = c_.head_dim;
  const float eps = static_cast<float>(c_.rms_eps);
  resize(T);
  logits.resize(static_cast<size_t>(b.n_logit_rows()) * static_cast<size_t>(c_.n_vocab));
  for (int32_t l : b.aux_layers)
    if (l < 0 || l >= c_.n_layer)
      return make_error(fmt::format("forward batch: aux hidden layer {} is not one of the model's {} layers", l,
                                    c_.n_layer));
  const int64_t HW = hidden_row_width(b, H);
  hidden.resize(static_cast<size_t>(b.n_hidden_rows() * HW));
  if (T == 0) return {};
  // A fused head (eagle3_one_model) reads the aux residuals from aux_, not from the hidden rows.
  const int64_t A = static_cast<int64_t>(b.aux_layers.size()) * H;
  float* aux_out = hidden.data();
  int64_t aux_ld = HW, aux_col0 = H;
  if (b.head) {
    if (aux_.size() < static_cast<size_t>(b.n_hidden_rows() * A)) aux_.resize(static_cast<size_t>(b.n_hidden_rows() * A));
    aux_out = aux_.data();
    aux_ld = A;
    aux_col0 = 0;
  }

  // Positions, rotary angles (in double, then rounded) and the attention work list.
  std::vector<cpu::attention_seq> seqs;
  seqs.reserve(b.seqs.size());
  {
    // A tree verification's token i: KV slot n_past + i, RoPE position n_past + its depth, and
    // an ancestor bitmask row (attention_seq::mask).
    size_t mask_size = 0;
    for (const auto& s : b.seqs)
      if (s.tree_offset >= 0) mask_size += static_cast<size_t>(s.n_new) * static_cast<size_t>((s.n_new + 63) / 64);
    mask_.assign(mask_size, 0);
    size_t mask_at = 0;
    int64_t row = 0;
    for (const auto& s : b.seqs) {
      seqs.push_back({row, s.n_new, s.n_past, b.block_tables.data() + s.table_offset});
      for (int32_t i = 0; i < s.n_new; ++i) slot_[static_cast<size_t>(row + i)] = pos_[static_cast<size_t>(row + i)] = s.n_past + i;
      if (s.tree_offset >= 0) {
        const int32_t* parent = b.tree_parents.data() + s.tree_offset;
        const int64_t words = (s.n_new + 63) / 64;
        uint64_t* m = mask_.data() + mask_at;
        for (int32_t i = 0; i < s.n_new; ++i) {
          uint64_t* mi = m + i * words;
          if (parent[i] >= 0) {
            std::copy_n(m + parent[i] * words, words, mi);
            pos_[static_cast<size_t>(row + i)] = pos_[static_cast<size_t>(row + parent[i])] + 1;
          }
          mi[i >> 6] |= uint64_t{1} << (i & 63);
        }
        seqs.back().mask = m;
        seqs.back().mask_words = words;
        mask_at += static_cast<size_t>(s.n_new * words);
      }
      row += s.n_new;
    }
    const int64_t half = HD / 2;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < half; ++i) {
        const double a = static_cast<double>(pos_[static_cast<size_t>(t)]) * inv_freq_[static_cast<size_t>(i)];
        cos_[static_cast<size_t>(t * half + i)] = static_cast<float>(std::cos(a));
        sin_[static_cast<size_t>(t * half + i)] = static_cast<float>(std::sin(a));
      }
  }

  move_kv(b.kv_moves);

  float *x = x_.data(), *h = h_.data(), *q = q_.data(), *k = k_.data(), *v = v_.data();
  float *att = att_.data(), *g = g_.data(), *u = u_.data();
  // Embeddings: [T, H]
  rows(T, [&](int64_t r0, int64_t r1) {
    for (int64_t t = r0; t < r1; ++t)
      cpu::dequantize_rows(embd_, b.tokens[static_cast<size_t>(t)], b.tokens[static_cast<size_t>(t)] + 1, x + t * H);
  });

  const model_weights& W = model_->weights();
  const bool interleaved = c_.rope == rope_style::interleaved;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(HD)));
  // The residual stream entering layer li, into the hidden rows' aux columns.
  auto capture_aux = [&](int64_t li) {
    for (size_t a = 0; a < b.aux_layers.size(); ++a) {
      if (b.aux_layers[a] != li) continue;
      int64_t o_h = 0;
      for (size_t si = 0; si < seqs.size(); ++si) {
        const auto& bs = b.seqs[si];
        const int64_t first = seqs[si].q_row + seqs[si].n_q - bs.n_hidden;
        for (int32_t r = 0; r < bs.n_hidden; ++r)
          std::copy_n(x + (first + r) * H, H, aux_out + (o_h + r) * aux_ld + aux_col0 + static_cast<int64_t>(a) * H);
        o_h += bs.n_hidden;
      }
    }
  };
  for (int64_t li = 0; li < c_.n_layer; ++li) {
    if (!b.aux_layers.empty()) capture_aux(li);
    const layer_weights& lw = W.layers[static_cast<size_t>(li)];
    const layer_mats& lm = layers_[static_cast<size_t>(li)];
    rows(T, [&](int64_t r0, int64_t r1) {
      cpu::rms_norm(x + r0 * H, H, r1 - r0, H, lw.attn_norm.data(), eps, h + r0 * H, H);
    });
    cpu::matmul(h, H, T, lm.wq, q, QD, pool_, prec_);  // [T, QD]
    cpu::matmul(h, H, T, lm.wk, k, KVD, pool_, prec_);  // [T, KVD]
    cpu::matmul(h, H, T, lm.wv, v, KVD, pool_, prec_);  // [T, KVD]
    rows(T, [&](int64_t r0, int64_t r1) {
      for (int64_t t = r0; t < r1; ++t) {
        if (c_.qkv_bias) {
          cpu::add(q + t * QD, lw.bq.data(), QD);
          cpu::add(k + t * KVD, lw.bk.data(), KVD);
          cpu::add(v + t * KVD, lw.bv.data(), KVD);
        }
        if (c_.qk_norm) {
          cpu::rms_norm(q + t * QD, HD, c_.n_head, HD, lw.q_norm.data(), eps, q + t * QD, HD);
          cpu::rms_norm(k + t * KVD, HD, c_.n_head_kv, HD, lw.k_norm.data(), eps, k + t * KVD, HD);
        }
      }
      const int64_t half = HD / 2;
      cpu::rope(q + r0 * QD, QD, r1 - r0, c_.n_head, HD, cos_.data() + r0 * half, sin_.data() + r0 * half, interleaved);
      cpu::rope(k + r0 * KVD, KVD, r1 - r0, c_.n_head_kv, HD, cos_.data() + r0 * half, sin_.data() + r0 * half, interleaved);
    });
    cpu::kv_layer_view kv{k_cache_[static_cast<size_t>(li)].data(), v_cache_[static_cast<size_t>(li)].data(),
                          block_size_, c_.n_head_kv, HD};
    for (const auto& s : seqs)
      cpu::kv_store(kv, s.block_table, slot_.data() + s.q_row, s.n_q, k + s.q_row * KVD, KVD,
                    v + s.q_row * KVD, KVD);
    cpu::paged_attention(q, QD, seqs, kv, c_.n_head, c_.sliding_window, scale, att, QD, pool_);
    cpu::matmul(att, QD, T, lm.wo, h, H, pool_, prec_);  // [T, H]
    rows(T, [&](int64_t r0, int64_t r1) {
      cpu::add(x + r0 * H, h + r0 * H, (r1 - r0) * H);
      cpu::rms_norm(x + r0 * H, H, r1 - r0, H, lw.ffn_norm.data(), eps, h + r0 * H, H);
    });
    cpu::matmul(h, H, T, lm.w_gate, g, FF, pool_, prec_);  // [T, FF]
    cpu::matmul(h, H, T, lm.w_up, u, FF, pool_, prec_);    // [T, FF]
    rows(T, [&](int64_t r0, int64_t r1) { cpu::silu_mul(g + r0 * FF, u + r0 * FF, (r1 - r0) * FF); });
    cpu::matmul(g, FF, T, lm.w_down, h, H, pool_, prec_);  // [T, H]
    rows(T, [&](int64_t r0, int64_t r1) { cpu::add(x + r0 * H, h + r0 * H, (r1 - r0) * H); });
  }

  // Hidden rows: the final norm of the rows asked for, [n_hidden_rows, HW] (aux columns after).
  int64_t o_h = 0;
  for (const auto& s : seqs) {
    const auto& bs = b.seqs[static_cast<size_t>(&s - seqs.data())];
    if (bs.n_hidden == 0) continue;
    const int64_t first = s.q_row + s.n_q - bs.n_hidden;
    rows(bs.n_hidden, [&](int64_t r0, int64_t r1) {
      cpu::rms_norm(x + (first + r0) * H, H, r1 - r0, H, W.output_norm.data(), eps, hidden.data() + (o_h + r0) * HW, HW);
    });
    o_h += bs.n_hidden;
  }
  // eagle3_one_model: the head's rows, right after the target's layers, on this pool.
  if (b.head) b.head->run(b, aux_.data(), A, hidden.data(), HW, pool_);

  // Final norm and output projection only for the rows that need logits.
  const int64_t n_out = b.n_logit_rows();
  if (n_out == 0) return {};
  if (hl_.size() < static_cast<size_t>(n_out * H)) hl_.resize(static_cast<size_t>(n_out * H));
  int64_t o = 0;
  for (const auto& s : seqs) {
    const auto& bs = b.seqs[static_cast<size_t>(&s - seqs.data())];
    for (int32_t i = s.n_q - bs.n_logits; i < s.n_q; ++i, ++o)
      cpu::rms_norm(x + (s.q_row + i) * H, H, 1, H, W.output_norm.data(), eps, hl_.data() + o * H, H);
  }
  cpu::matmul(hl_.data(), H, n_out, output_, logits.data(), c_.n_vocab, pool_, prec_);
  return {};
}

}  // namespace

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return 1;
}

result<std::unique_ptr<executor>> make_cpu_executor(std::shared_ptr<const checkpoint> model,
                                                    const cpu_executor_options& opt) {
  if (!model) return make_error("cpu executor: no model");
  if (opt.kv_block_size <= 0 || opt.kv_block_size > 1024)
    return make_error(fmt::format("kv_block_size must be between 1 and 1024, not {}", opt.kv_block_size));
  const size_t per_block = cpu_executor::bytes_per_block(model->config(), opt.kv_block_size);
  int64_t n_blocks = opt.kv_n_blocks;
  if (n_blocks <= 0) n_blocks = static_cast<int64_t>(opt.kv_cache_bytes / per_block);
  if (n_blocks < 1)
    return make_error(fmt::format("the KV cache of {} bytes holds no block of {} bytes",
                                  opt.kv_cache_bytes, per_block));
  if (n_blocks > INT32_MAX / 2) n_blocks = INT32_MAX / 2;
  const int threads = opt.n_threads > 0 ? opt.n_threads : available_cores();
  try {
    return std::unique_ptr<executor>(
        new cpu_executor(std::move(model), threads, opt.kv_block_size, static_cast<int32_t>(n_blocks), opt.precision));
  } catch (const std::bad_alloc&) {
    return make_error(fmt::format("cannot reserve {} KV blocks of {} bytes", n_blocks, per_block));
  }
}

}  // namespace troupe
