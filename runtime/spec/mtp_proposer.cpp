#include "runtime/spec/mtp_proposer.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/engine/sequence.hpp"
#include "runtime/weight_matrix_of.hpp"

namespace troupe {

status check_mtp_layers(const model_config& c, int64_t n, const std::string& model_name) {
  const std::string field = "llm_config.speculative_config.num_nextn_predict_layers";
  if (c.n_nextn_layers <= 0)
    return make_error(fmt::format("{}: the model {} has no MTP layers (no num_nextn_predict_layers in its "
                                  "config), so decoding_type MTP cannot run on it",
                                  field, model_name));
  if (n > c.n_nextn_layers)
    return make_error(fmt::format("{}: {} asked, but the model {} has {} MTP layer{}", field, n, model_name,
                                  c.n_nextn_layers, c.n_nextn_layers == 1 ? "" : "s"));
  if (n != 1)
    return make_error(fmt::format("{}: troupe runs one MTP layer (chained for max_draft_len drafts), not {}", field, n));
  return {};
}

namespace {

// Host memory reserved lazily (pages cost nothing until written).
struct lazy_floats {
  float* data = nullptr;
  size_t bytes = 0;
  explicit lazy_floats(size_t n) : bytes(n * sizeof(float)) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data = static_cast<float*>(p);
  }
  lazy_floats(const lazy_floats&) = delete;
  lazy_floats& operator=(const lazy_floats&) = delete;
  ~lazy_floats() { munmap(data, bytes); }
};

struct seq_state {
  std::vector<int32_t> blocks;  // slot i (position start + i) lives in blocks[i / block_size]
  int32_t start = 0;            // first position with an entry
  int32_t n = 0;                // entries kept: positions start .. start + n - 1
  std::vector<token_id> draft;
  int32_t draft_for = -1;       // the sequence length the draft follows
};

}  // namespace

struct mtp_proposer::impl {
  std::shared_ptr<const checkpoint> model;
  const model_config& c;
  const mtp_layer_weights& w;
  mtp_options opt;
  cpu::precision prec = cpu::default_precision();
  cpu::thread_pool pool;
  cpu::weight_matrix embd, head, eh, wq, wk, wv, wo, wg, wu, wd;
  std::vector<double> inv_freq;
  int32_t bs;
  lazy_floats kbuf, vbuf;
  std::vector<int32_t> free_blocks;
  std::unordered_map<uint64_t, seq_state> seqs;
  // Scratch.
  std::vector<float> eh_in, x, h, q, k, v, att, g, u, cs, sn, hl, logits;
  std::vector<int32_t> slots;

  impl(std::shared_ptr<const checkpoint> m, const mtp_options& o, int32_t n_blocks)
      : model(std::move(m)), c(model->config()), w(model->weights().mtp.front()), opt(o),
        pool(o.n_threads > 0 ? o.n_threads : available_cores()), bs(o.block_size),
        kbuf(static_cast<size_t>(n_blocks) * block_floats()), vbuf(static_cast<size_t>(n_blocks) * block_floats()) {
    const model_weights& W = model->weights();
    embd = weight_matrix_of(W.tok_embd);
    head = weight_matrix_of(W.output);
    eh = weight_matrix_of(w.eh_proj);
    wq = weight_matrix_of(w.block.wq);
    wk = weight_matrix_of(w.block.wk);
    wv = weight_matrix_of(w.block.wv);
    wo = weight_matrix_of(w.block.wo);
    wg = weight_matrix_of(w.block.w_gate);
    wu = weight_matrix_of(w.block.w_up);
    wd = weight_matrix_of(w.block.w_down);
    inv_freq = c.rope_inv_freq();
    if (!W.rope_freq_factors.empty())
      for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] /= W.rope_freq_factors[i];
    for (int32_t b = n_blocks - 1; b >= 0; --b) free_blocks.push_back(b);
  }

  size_t block_floats() const { return static_cast<size_t>(c.n_head_kv * c.head_dim * bs); }
  cpu::kv_layer_view kv() { return {kbuf.data, vbuf.data, bs, c.n_head_kv, c.head_dim}; }

  // Blocks for slots 0 .. n_slots - 1 of st; false when the pool has run out.
  bool reserve(seq_state& st, int32_t n_slots) {
    const auto need = static_cast<size_t>((n_slots + bs - 1) / bs);
    while (st.blocks.size() < need) {
      if (free_blocks.empty()) return false;
      st.blocks.push_back(free_blocks.back());
      free_blocks.pop_back();
    }
    return true;
  }
  void release(seq_state& st) {
    free_blocks.insert(free_blocks.end(), st.blocks.begin(), st.blocks.end());
    st.blocks.clear();
    st.start = st.n = 0;
  }

  // One row group of the batch: rows [row, row + n) are positions pos0 .. at slots slot0 ..
  struct group {
    seq_state* st;
    int64_t row, n;
    int32_t pos0, slot0;
  };

  void grow(int64_t T) {
    auto g_ = [](std::vector<float>& v, int64_t n) {
      if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
    };
    const int64_t H = c.n_embd;
    g_(eh_in, T * 2 * H);
    g_(x, T * H);
    g_(h, T * H);
    g_(q, T * c.q_dim());
    g_(k, T * c.kv_dim());
    g_(v, T * c.kv_dim());
    g_(att, T * c.q_dim());
    g_(g, T * c.n_ff);
    g_(u, T * c.n_ff);
    g_(cs, T * c.head_dim / 2);
    g_(sn, T * c.head_dim / 2);
    if (slots.size() < static_cast<size_t>(T)) slots.resize(static_cast<size_t>(T));
  }

  // The MTP layer over T rows whose step inputs (eh_in: [T, 2H], the normed embedding then the
  // normed hidden) are in place; stores each row's key and value at its slot and leaves the
  // layer's output (pre-norm) in x.
  void run_layer(int64_t T, const std::vector<group>& groups) {
    const int64_t H = c.n_embd, QD = c.q_dim(), KVD = c.kv_dim(), FF = c.n_ff, HD = c.head_dim, half = HD / 2;
    const float eps = static_cast<float>(c.rms_eps);
    const layer_weights& L = w.block;
    cpu::matmul(eh_in.data(), 2 * H, T, eh, x.data(), H, pool, prec);  // [T, H]: the residual stream
    std::vector<cpu::attention_seq> att_seqs;
    for (const group& gr : groups) {
      att_seqs.push_back({gr.row, gr.n, gr.slot0, gr.st->blocks.data()});
      for (int64_t i = 0; i < gr.n; ++i) {
        const int64_t t = gr.row + i;
        slots[static_cast<size_t>(t)] = gr.slot0 + static_cast<int32_t>(i);
        const double pos = static_cast<double>(gr.pos0 + i);
        for (int64_t j = 0; j < half; ++j) {
          const double a = pos * inv_freq[static_cast<size_t>(j)];
          cs[static_cast<size_t>(t * half + j)] = static_cast<float>(std::cos(a));
          sn[static_cast<size_t>(t * half + j)] = static_cast<float>(std::sin(a));
        }
      }
    }
    cpu::rms_norm(x.data(), H, T, H, L.attn_norm.data(), eps, h.data(), H);
    cpu::matmul(h.data(), H, T, wq, q.data(), QD, pool, prec);
    cpu::matmul(h.data(), H, T, wk, k.data(), KVD, pool, prec);
    cpu::matmul(h.data(), H, T, wv, v.data(), KVD, pool, prec);
    if (c.qkv_bias)
      for (int64_t t = 0; t < T; ++t) {
        cpu::add(q.data() + t * QD, L.bq.data(), QD);
        cpu::add(k.data() + t * KVD, L.bk.data(), KVD);
        cpu::add(v.data() + t * KVD, L.bv.data(), KVD);
      }
    if (c.qk_norm)
      for (int64_t t = 0; t < T; ++t) {
        cpu::rms_norm(q.data() + t * QD, HD, c.n_head, HD, L.q_norm.data(), eps, q.data() + t * QD, HD);
        cpu::rms_norm(k.data() + t * KVD, HD, c.n_head_kv, HD, L.k_norm.data(), eps, k.data() + t * KVD, HD);
      }
    const bool inter = c.rope == rope_style::interleaved;
    cpu::rope(q.data(), QD, T, c.n_head, HD, cs.data(), sn.data(), inter);
    cpu::rope(k.data(), KVD, T, c.n_head_kv, HD, cs.data(), sn.data(), inter);
    const cpu::kv_layer_view view = kv();
    for (const group& gr : groups)
      cpu::kv_store(view, gr.st->blocks.data(), slots.data() + gr.row, gr.n, k.data() + gr.row * KVD, KVD,
                    v.data() + gr.row * KVD, KVD);
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(HD)));
    cpu::paged_attention(q.data(), QD, att_seqs, view, c.n_head, 0, scale, att.data(), QD, pool);
    cpu::matmul(att.data(), QD, T, wo, h.data(), H, pool, prec);
    cpu::add(x.data(), h.data(), T * H);
    cpu::rms_norm(x.data(), H, T, H, L.ffn_norm.data(), eps, h.data(), H);
    cpu::matmul(h.data(), H, T, wg, g.data(), FF, pool, prec);
    cpu::matmul(h.data(), H, T, wu, u.data(), FF, pool, prec);
    cpu::silu_mul(g.data(), u.data(), T * FF);
    cpu::matmul(g.data(), FF, T, wd, h.data(), H, pool, prec);
    cpu::add(x.data(), h.data(), T * H);
  }

  // eh_in row t = [enorm(embed(tok)), hnorm(hidden)].
  void step_input(int64_t t, token_id tok, const float* hidden) {
    const int64_t H = c.n_embd;
    const float eps = static_cast<float>(c.rms_eps);
    float* row = eh_in.data() + t * 2 * H;
    cpu::dequantize_rows(embd, tok, tok + 1, row);
    cpu::rms_norm(row, H, 1, H, w.enorm.data(), eps, row, H);
    cpu::rms_norm(hidden, H, 1, H, w.hnorm.data(), eps, row + H, H);
  }

  // Greedy tokens of the output rows `rows` of x (head of the shared final norm).
  std::vector<token_id> argmax_rows(const std::vector<int64_t>& rows) {
    const int64_t H = c.n_embd, V = c.n_vocab, n = static_cast<int64_t>(rows.size());
    if (hl.size() < static_cast<size_t>(n * H)) hl.resize(static_cast<size_t>(n * H));
    if (logits.size() < static_cast<size_t>(n * V)) logits.resize(static_cast<size_t>(n * V));
    for (int64_t i = 0; i < n; ++i)
      cpu::rms_norm(x.data() + rows[static_cast<size_t>(i)] * H, H, 1, H, w.shared_head_norm.data(),
                    static_cast<float>(c.rms_eps), hl.data() + i * H, H);
    cpu::matmul(hl.data(), H, n, head, logits.data(), V, pool, prec);
    std::vector<token_id> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const float* l = logits.data() + i * V;
      out[static_cast<size_t>(i)] = static_cast<token_id>(std::max_element(l, l + V) - l);
    }
    return out;
  }

  void observe(std::span<const kept_rows> rows, size_t Hs) {
    const auto H = static_cast<int64_t>(Hs);
    if (H != c.n_embd) return;
    // 1. Catch up: an entry for every kept position, all sequences in one batch.
    std::vector<group> groups;
    std::vector<const kept_rows*> drafting;  // sequences that decode next, by group
    std::vector<int64_t> last_rows;
    int64_t T = 0;
    for (const kept_rows& r : rows) {
      seq_state& st = seqs[r.s->seq];
      // Keep only entries before n_past (the rest are a rejected chain's or a preempted run's);
      // a gap (positions never seen) starts the sequence's entries anew at n_past.
      if (r.n_past < st.start || r.n_past > st.start + st.n) {
        release(st);
        st.start = r.n_past;
      }
      st.n = r.n_past - st.start;
      st.draft.clear();
      const int32_t n_new = r.n_computed - r.n_past;
      if (n_new <= 0) continue;
      const bool decodes = r.n_computed == r.s->size() - 1;
      const int32_t chain = decodes ? opt.draft_len - 1 : 0;
      if (!reserve(st, st.n + n_new + chain)) {  // out of MTP blocks: this sequence stops drafting
        release(st);
        st.start = r.n_computed;
        continue;
      }
      groups.push_back({&st, T, n_new, r.n_past, st.n});
      T += n_new;
    }
    grow(T);
    {
      size_t gi = 0;
      for (const kept_rows& r : rows) {
        if (gi == groups.size()) break;
        seq_state& st = seqs[r.s->seq];
        if (groups[gi].st != &st) continue;
        const group& gr = groups[gi++];
        for (int64_t i = 0; i < gr.n; ++i)
          step_input(gr.row + i, r.s->tokens[static_cast<size_t>(r.n_past + i + 1)], r.hidden.data() + i * H);
        st.n += static_cast<int32_t>(gr.n);
        if (r.n_computed == r.s->size() - 1) {
          drafting.push_back(&r);
          last_rows.push_back(gr.row + gr.n - 1);
        }
      }
    }
    if (T == 0) return;
    run_layer(T, groups);
    if (drafting.empty()) return;
    std::vector<token_id> d = argmax_rows(last_rows);
    const auto n = static_cast<int64_t>(drafting.size());
    std::vector<seq_state*> ds(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      seq_state& st = seqs[drafting[static_cast<size_t>(i)]->s->seq];
      ds[static_cast<size_t>(i)] = &st;
      st.draft.assign(1, d[static_cast<size_t>(i)]);
      st.draft_for = drafting[static_cast<size_t>(i)]->s->size();
    }
    // 2. Chain: each step embeds the previous draft and reads the layer's own output.
    std::vector<float> prev(static_cast<size_t>(n * H));
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(x.data() + last_rows[static_cast<size_t>(i)] * H, H, prev.data() + i * H);
    grow(n);
    for (int32_t j = 1; j < opt.draft_len; ++j) {
      std::vector<group> cg;
      std::vector<int64_t> out_rows;
      for (int64_t i = 0; i < n; ++i) {
        seq_state& st = *ds[static_cast<size_t>(i)];
        step_input(i, st.draft.back(), prev.data() + i * H);
        cg.push_back({&st, i, 1, st.start + st.n + j - 1, st.n + j - 1});
        out_rows.push_back(i);
      }
      run_layer(n, cg);
      std::copy_n(x.data(), n * H, prev.data());
      d = argmax_rows(out_rows);
      for (int64_t i = 0; i < n; ++i) ds[static_cast<size_t>(i)]->draft.push_back(d[static_cast<size_t>(i)]);
    }
  }
};

mtp_proposer::mtp_proposer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
mtp_proposer::~mtp_proposer() = default;

result<std::unique_ptr<mtp_proposer>> mtp_proposer::create(std::shared_ptr<const checkpoint> target,
                                                           const mtp_options& o) {
  if (!target) return make_error("MTP: no target model");
  const model_config& c = target->config();
  TROUPE_CHECK(check_mtp_layers(c, o.num_nextn_predict_layers, target->path()));
  if (target->weights().mtp.empty())
    return make_error(fmt::format("llm_config.speculative_config.num_nextn_predict_layers: {} carries no MTP layer "
                                  "weights (a GGUF file keeps none)",
                                  target->path()));
  if (o.draft_len < 1) return make_error("MTP: max_draft_len must be at least 1");
  if (o.block_size < 1) return make_error("MTP: the KV block size must be at least 1");
  const int32_t n_blocks = o.n_blocks > 0 ? o.n_blocks : (1024 * 1024) / o.block_size;
  try {
    return std::unique_ptr<mtp_proposer>(new mtp_proposer(std::make_unique<impl>(std::move(target), o, n_blocks)));
  } catch (const std::bad_alloc&) {
    return make_error(fmt::format("MTP: cannot reserve {} KV blocks", n_blocks));
  }
}

draft mtp_proposer::propose(const sequence& s, int32_t max_tokens) {
  draft d;
  auto it = impl_->seqs.find(s.seq);
  if (it == impl_->seqs.end() || it->second.draft_for != s.size()) return d;
  const auto& t = it->second.draft;
  d.tokens.assign(t.begin(), t.begin() + std::min<ptrdiff_t>(max_tokens, static_cast<ptrdiff_t>(t.size())));
  return d;
}

void mtp_proposer::forget(const sequence& s) {
  auto it = impl_->seqs.find(s.seq);
  if (it == impl_->seqs.end()) return;
  impl_->release(it->second);
  impl_->seqs.erase(it);
}

void mtp_proposer::observe(std::span<const kept_rows> rows, size_t H) { impl_->observe(rows, H); }

int32_t mtp_proposer::kv_blocks_used() const {
  int32_t n = 0;
  for (const auto& [id, st] : impl_->seqs) n += static_cast<int32_t>(st.blocks.size());
  return n;
}

size_t mtp_proposer::n_tracked() const { return impl_->seqs.size(); }

}  // namespace troupe
