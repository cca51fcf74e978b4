#include "runtime/spec/head_chain.hpp"

#include "runtime/engine/draft_tree.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <new>
#include <unordered_map>

#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/engine/draft_tree.hpp"
#include "runtime/engine/sequence.hpp"

namespace troupe {

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
  std::vector<token_id> draft;  // drafted so far for draft_for (made when asked, not before)
  std::vector<std::vector<token_id>> siblings;  // tree drafts: the next-best tokens beside each
  int32_t draft_for = -1;       // the sequence length the next draft follows
  std::vector<float> last;      // the layer's output at the last kept position: step 0's input
  int32_t fused_pos0 = -1;           // one-model: the position of the first row the forward ran
  std::vector<token_id> fused_next;  // and the token each such row read (row j: fused_pos0 + j)
  // Two-model: kept by the target but not yet run through the head (positions start + n on):
  // each one's token (that of the position after it) and the target's hidden row (W wide).
  std::vector<token_id> pend_tok;
  std::vector<float> pend_hid;
};

int32_t n_pending(const seq_state& st) { return static_cast<int32_t>(st.pend_tok.size()); }
void drop_pending(seq_state& st) {
  st.pend_tok.clear();
  st.pend_hid.clear();
}

}  // namespace

void touch_weights(const cpu::weight_matrix& w) {
  if (!w.data || w.packed) return;
  const size_t bytes = static_cast<size_t>(w.n_out) * w.row_bytes();
  const auto* p = static_cast<const volatile unsigned char*>(w.data);
  unsigned char sum = 0;
  for (size_t i = 0; i < bytes; i += 4096) sum = static_cast<unsigned char>(sum + p[i]);
  if (bytes > 0) sum = static_cast<unsigned char>(sum + p[bytes - 1]);
  (void)sum;
}

namespace {

void grow_to(std::vector<float>& v, int64_t n) {
  if (v.size() < static_cast<size_t>(n)) v.resize(static_cast<size_t>(n));
}

}  // namespace

struct head_chain::impl {
  head_layer L;
  head_inputs& in;
  head_chain_options opt;
  cpu::precision prec = cpu::default_precision();
  cpu::thread_pool pool;
  int32_t bs;
  lazy_floats kbuf, vbuf;
  std::vector<int32_t> free_blocks;
  std::unordered_map<uint64_t, seq_state> seqs;
  int64_t rows_run = 0;
  int64_t catch_up_rows = 0;
  size_t pend_W = 0;         // the width of the target's hidden rows kept pending
  head_inputs::columns pend_cols;  // the columns of them kept (pend_cols.count floats a row)
  double last_cu_s = 0;      // the catch-up of the last propose_batch: seconds and rows
  int64_t last_cu_rows = 0;
  std::atomic<int64_t> fused_rows{0};
  // One-model: the rows planned for the forward in flight (block tables copied: a sequence
  // aborted while the forward runs releases its own, and nothing takes them before it ends).
  struct fused_plan_seq {
    std::vector<int32_t> blocks;
    int32_t pos0 = 0, slot0 = 0, n_rows = 0, hidden_row0 = 0;
    std::vector<token_id> next;
  };
  std::vector<fused_plan_seq> plan;
  // Scratch.
  std::vector<float> a, x, h, q, k, v, att, g, u, cs, sn, hl, logits;
  std::vector<int32_t> slots;

  impl(head_layer l, head_inputs& i, const head_chain_options& o, int32_t n_blocks)
      : L(std::move(l)), in(i), opt(o), pool(o.n_threads > 0 ? o.n_threads : available_cores()), bs(o.block_size),
        kbuf(static_cast<size_t>(n_blocks) * block_floats()), vbuf(static_cast<size_t>(n_blocks) * block_floats()) {
    for (int32_t b = n_blocks - 1; b >= 0; --b) free_blocks.push_back(b);
    prefault(n_blocks);
  }

  // What the first draft would otherwise page in while a request waits (a few ms on a loaded
  // machine, once per engine): the layer's and the head's weights (mapped from the checkpoint,
  // never read by the target's forward), the KV blocks taken first and the scratch of a
  // catch-up window's rows.
  void prefault(int32_t n_blocks) {
    for (const cpu::weight_matrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down, &L.head})
      touch_weights(*w);
    const size_t warm = static_cast<size_t>(std::min(n_blocks, 64)) * block_floats();
    std::fill_n(kbuf.data, warm, 0.0f);
    std::fill_n(vbuf.data, warm, 0.0f);
    grow(std::max<int64_t>(64, opt.catch_up_window + opt.draft_len));
  }

  size_t block_floats() const { return static_cast<size_t>(L.n_head_kv * L.head_dim * bs); }
  cpu::kv_layer_view kv() { return {kbuf.data, vbuf.data, bs, L.n_head_kv, L.head_dim}; }

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
    st.last.clear();
    drop_pending(st);
  }

  // Pending-row buffers of forgotten sequences (cleared, capacity kept), handed to new ones:
  // their pages are already in, so a server's steady state writes rows without page faults.
  std::vector<std::vector<float>> spare_hid;
  void recycle(seq_state& st) {
    constexpr size_t kMaxSpare = 256;
    if (st.pend_hid.capacity() == 0 || spare_hid.size() >= kMaxSpare) return;
    st.pend_hid.clear();
    spare_hid.push_back(std::move(st.pend_hid));
  }
  // Room for `rows` pending rows of st's (C floats each): a spare buffer's if one is free.
  void reserve_pending(seq_state& st, size_t rows, size_t C) {
    if (st.pend_hid.capacity() < rows * C && !spare_hid.empty() && st.pend_hid.empty()) {
      st.pend_hid = std::move(spare_hid.back());
      spare_hid.pop_back();
    }
    st.pend_tok.reserve(rows);
    st.pend_hid.reserve(rows * C);
  }

  // catch_up_window: keeps the latest `window` pending rows of st, its entries restarting at
  // the first of them (the older entries' blocks freed, the older pending rows dropped).
  void trim_pending(seq_state& st, int32_t window) {
    const int32_t p = n_pending(st);
    if (window <= 0 || p <= window) return;
    const int32_t drop = p - window;
    const int32_t start = st.start + st.n + drop;
    st.pend_tok.erase(st.pend_tok.begin(), st.pend_tok.begin() + drop);
    st.pend_hid.erase(st.pend_hid.begin(), st.pend_hid.begin() + static_cast<ptrdiff_t>(drop) *
                                                                     static_cast<ptrdiff_t>(pend_cols.count));
    free_blocks.insert(free_blocks.end(), st.blocks.begin(), st.blocks.end());
    st.blocks.clear();
    st.start = start;
    st.n = 0;
    st.last.clear();
  }

  // One row group of the batch: rows [row, row + n) are positions pos0 .. at slots slot0 ..
  struct group {
    seq_state* st;
    int64_t row, n;
    int32_t pos0, slot0;
    int32_t skip = 0;                 // observe: kept rows the forward ran already (one-model)
    const int32_t* blocks = nullptr;  // st's, or a fused plan's copy
    const int32_t* table() const { return blocks ? blocks : st->blocks.data(); }
  };

  // Entries before n_past only (the rest are a rejected chain's or a preempted run's); a gap
  // (positions never seen) starts the sequence's entries anew at n_past.
  // Pending rows (two-model) count as entries here; rolling back into the computed entries
  // drops every pending row and the last output.
  void start_at(seq_state& st, int32_t n_past) {
    if (n_past < st.start || n_past > st.start + st.n + n_pending(st)) {
      release(st);
      st.start = n_past;
    }
    const int32_t keep = n_past - st.start;
    if (keep < st.n) {
      st.n = keep;
      drop_pending(st);
      st.last.clear();
    } else {
      st.pend_tok.resize(static_cast<size_t>(keep - st.n));
      st.pend_hid.resize(st.pend_tok.size() * pend_cols.count);
    }
  }

  void grow(int64_t T) {
    const int64_t H = L.n_embd, QD = L.n_head * L.head_dim, KVD = L.n_head_kv * L.head_dim;
    grow_to(a, T * L.d_in);
    grow_to(x, T * H);
    grow_to(h, T * H);
    grow_to(q, T * QD);
    grow_to(k, T * KVD);
    grow_to(v, T * KVD);
    grow_to(att, T * QD);
    grow_to(g, T * L.n_ff);
    grow_to(u, T * L.n_ff);
    grow_to(cs, T * L.head_dim / 2);
    grow_to(sn, T * L.head_dim / 2);
    if (slots.size() < static_cast<size_t>(T)) slots.resize(static_cast<size_t>(T));
  }

  // Rotary angles of the groups' rows, and their KV slots.
  void angles(const std::vector<group>& groups) {
    const int64_t half = L.head_dim / 2;
    for (const group& gr : groups)
      for (int64_t i = 0; i < gr.n; ++i) {
        const int64_t t = gr.row + i;
        slots[static_cast<size_t>(t)] = gr.slot0 + static_cast<int32_t>(i);
        const double pos = static_cast<double>(gr.pos0 + i);
        for (int64_t j = 0; j < half; ++j) {
          const double ang = pos * L.inv_freq[static_cast<size_t>(j)];
          cs[static_cast<size_t>(t * half + j)] = static_cast<float>(std::cos(ang));
          sn[static_cast<size_t>(t * half + j)] = static_cast<float>(std::sin(ang));
        }
      }
  }

  // The keys and values of T rows whose attention input a is in place, stored at their slots.
  void store_kv(int64_t T, const std::vector<group>& groups, cpu::thread_pool& p) {
    const int64_t HD = L.head_dim, KVD = L.n_head_kv * HD;
    const float eps = static_cast<float>(L.rms_eps);
    cpu::matmul(a.data(), L.d_in, T, L.wk, k.data(), KVD, p, prec);
    cpu::matmul(a.data(), L.d_in, T, L.wv, v.data(), KVD, p, prec);
    if (L.bk)
      for (int64_t t = 0; t < T; ++t) {
        cpu::add(k.data() + t * KVD, L.bk, KVD);
        cpu::add(v.data() + t * KVD, L.bv, KVD);
      }
    if (L.k_norm)
      for (int64_t t = 0; t < T; ++t)
        cpu::rms_norm(k.data() + t * KVD, HD, L.n_head_kv, HD, L.k_norm, eps, k.data() + t * KVD, HD);
    cpu::rope(k.data(), KVD, T, L.n_head_kv, HD, cs.data(), sn.data(), L.interleaved_rope);
    const cpu::kv_layer_view view = kv();
    for (const group& gr : groups)
      cpu::kv_store(view, gr.table(), slots.data() + gr.row, gr.n, k.data() + gr.row * KVD, KVD,
                    v.data() + gr.row * KVD, KVD);
  }

  // The head layer over T rows whose inputs (x: the residual, a: the attention input) are in
  // place; stores each row's key and value at its slot and leaves the output (pre-norm) in x.
  void run_layer(int64_t T, const std::vector<group>& groups) {
    const int64_t H = L.n_embd, HD = L.head_dim, QD = L.n_head * HD, FF = L.n_ff;
    const float eps = static_cast<float>(L.rms_eps);
    rows_run += T;
    std::vector<cpu::attention_seq> att_seqs;
    for (const group& gr : groups) att_seqs.push_back({gr.row, gr.n, gr.slot0, gr.table()});
    angles(groups);
    cpu::matmul(a.data(), L.d_in, T, L.wq, q.data(), QD, pool, prec);
    if (L.bq)
      for (int64_t t = 0; t < T; ++t) cpu::add(q.data() + t * QD, L.bq, QD);
    if (L.q_norm)
      for (int64_t t = 0; t < T; ++t)
        cpu::rms_norm(q.data() + t * QD, HD, L.n_head, HD, L.q_norm, eps, q.data() + t * QD, HD);
    cpu::rope(q.data(), QD, T, L.n_head, HD, cs.data(), sn.data(), L.interleaved_rope);
    store_kv(T, groups, pool);
    const cpu::kv_layer_view view = kv();
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(HD)));
    cpu::paged_attention(q.data(), QD, att_seqs, view, L.n_head, 0, scale, att.data(), QD, pool);
    cpu::matmul(att.data(), QD, T, L.wo, h.data(), H, pool, prec);
    cpu::add(x.data(), h.data(), T * H);
    cpu::rms_norm(x.data(), H, T, H, L.ffn_norm, eps, h.data(), H);
    cpu::matmul(h.data(), H, T, L.w_gate, g.data(), FF, pool, prec);
    cpu::matmul(h.data(), H, T, L.w_up, u.data(), FF, pool, prec);
    cpu::silu_mul(g.data(), u.data(), T * FF);
    cpu::matmul(g.data(), FF, T, L.w_down, h.data(), H, pool, prec);
    cpu::add(x.data(), h.data(), T * H);
  }

  void plan_fused(std::span<const fused_seq_in> in) {
    plan.clear();
    for (const fused_seq_in& f : in) {
      if (!f.s || f.n_new <= 0) continue;
      seq_state& st = seqs[f.s->seq];
      st.fused_pos0 = -1;
      st.fused_next.clear();
      start_at(st, f.n_past);
      std::vector<token_id> next;
      for (int32_t j = 0; j < f.n_new; ++j) {
        if (j + 1 < f.n_new) {
          if (f.parents && f.parents[j + 1] != j) break;  // the spine ends here
          next.push_back(f.tokens[j + 1]);
        } else {
          // Beyond the batch: known when the sequence's tokens go on (a prompt chunk); a
          // decode's or a verification's next token is sampled from this very forward.
          const int32_t p = f.n_past + f.n_new;
          if (f.parents || p >= f.s->size()) break;
          next.push_back(f.s->tokens[static_cast<size_t>(p)]);
        }
      }
      const auto m = static_cast<int32_t>(next.size());
      if (m == 0 || !reserve(st, st.n + m)) continue;  // out of head blocks: observe() decides
      st.fused_pos0 = f.n_past;
      st.fused_next = next;
      plan.push_back({st.blocks, f.n_past, st.n, m, f.hidden_row0, std::move(next)});
    }
  }

  void run_fused(const float* hidden, int64_t ld, int64_t g_col, cpu::thread_pool& p) {
    int64_t T = 0;
    for (const fused_plan_seq& f : plan) T += f.n_rows;
    if (T == 0) return;
    grow(T);
    std::vector<group> groups;
    std::vector<token_id> toks(static_cast<size_t>(T));
    std::vector<const float*> hid(static_cast<size_t>(T));
    int64_t row = 0;
    for (const fused_plan_seq& f : plan) {
      group gr{nullptr, row, f.n_rows, f.pos0, f.slot0};
      gr.blocks = f.blocks.data();
      groups.push_back(gr);
      for (int32_t j = 0; j < f.n_rows; ++j, ++row) {
        toks[static_cast<size_t>(row)] = f.next[static_cast<size_t>(j)];
        hid[static_cast<size_t>(row)] = hidden + (f.hidden_row0 + j) * ld + g_col;
      }
    }
    in.build(T, toks.data(), hid.data(), false, x.data(), a.data(), p);
    angles(groups);
    store_kv(T, groups, p);
    fused_rows += T;
  }

  // Greedy tokens of the output rows `rows` of x (the draft head over the final norm).
  // With width > 1, tops[i] gets row i's width - 1 next-best tokens (tree siblings).
  std::vector<token_id> argmax_rows(const std::vector<int64_t>& rows, int32_t width = 1,
                                    std::vector<std::vector<token_id>>* tops = nullptr) {
    const int64_t H = L.n_embd, V = L.head.n_out, n = static_cast<int64_t>(rows.size());
    grow_to(hl, n * H);
    grow_to(logits, n * V);
    for (int64_t i = 0; i < n; ++i)
      cpu::rms_norm(x.data() + rows[static_cast<size_t>(i)] * H, H, 1, H, L.final_norm, static_cast<float>(L.rms_eps),
                    hl.data() + i * H, H);
    cpu::matmul(hl.data(), H, n, L.head, logits.data(), V, pool, prec);
    std::vector<token_id> out(static_cast<size_t>(n));
    if (tops) tops->assign(static_cast<size_t>(n), {});
    for (int64_t i = 0; i < n; ++i) {
      std::vector<std::vector<token_id>> one;  // draft_pick appends this row's siblings
      out[static_cast<size_t>(i)] = draft_pick(logits.data() + i * V, V, width, tops ? &one : nullptr);
      if (!one.empty()) (*tops)[static_cast<size_t>(i)] = std::move(one.front());
    }
    return out;
  }

  void observe(std::span<const kept_rows> rows, size_t Ws) {
    const auto W = static_cast<int64_t>(Ws);
    if (W < L.n_embd) return;
    if (!opt.one_model) return keep_rows(rows, Ws);
    // 1. Catch up: an entry for every kept position, all sequences in one batch.
    std::vector<group> groups;
    std::vector<const kept_rows*> drafting;  // sequences that decode next, by group
    std::vector<int64_t> last_rows;
    int64_t T = 0;
    for (const kept_rows& r : rows) {
      seq_state& st = seqs[r.s->seq];
      start_at(st, r.n_past);
      st.draft.clear();
      const int32_t n_new = r.n_computed - r.n_past;
      const bool decodes = r.n_computed == r.s->size() - 1;
      // One-model: the rows the forward ran whose next token the step kept are done.
      int32_t done = 0;
      if (opt.one_model && st.fused_pos0 == r.n_past)
        while (done < n_new && done < static_cast<int32_t>(st.fused_next.size()) &&
               st.fused_next[static_cast<size_t>(done)] == r.s->tokens[static_cast<size_t>(r.n_past + done + 1)])
          ++done;
      if (decodes && done == n_new) --done;  // the drafts start from the last row's output
      st.fused_pos0 = -1;
      st.fused_next.clear();
      if (n_new <= 0) continue;
      const int32_t chain = decodes ? opt.draft_len - 1 : 0;
      if (!reserve(st, st.n + n_new + chain)) {  // out of head blocks: this sequence stops drafting
        release(st);
        st.start = r.n_computed;
        continue;
      }
      st.n += done;
      if (done == n_new) continue;
      group gr{&st, T, n_new - done, r.n_past + done, st.n};
      gr.skip = done;
      groups.push_back(gr);
      T += n_new - done;
    }
    if (T == 0) return;
    grow(T);
    std::vector<token_id> toks(static_cast<size_t>(T));
    std::vector<const float*> hid(static_cast<size_t>(T));
    {
      size_t gi = 0;
      for (const kept_rows& r : rows) {
        if (gi == groups.size()) break;
        seq_state& st = seqs[r.s->seq];
        if (groups[gi].st != &st) continue;
        const group& gr = groups[gi++];
        for (int64_t i = 0; i < gr.n; ++i) {
          toks[static_cast<size_t>(gr.row + i)] = r.s->tokens[static_cast<size_t>(r.n_past + gr.skip + i + 1)];
          hid[static_cast<size_t>(gr.row + i)] = r.hidden.data() + (gr.skip + i) * W + (opt.one_model ? L.n_embd : 0);
        }
        st.n += static_cast<int32_t>(gr.n);
        if (r.n_computed == r.s->size() - 1) {
          drafting.push_back(&r);
          last_rows.push_back(gr.row + gr.n - 1);
        }
      }
    }
    in.build(T, toks.data(), hid.data(), !opt.one_model, x.data(), a.data(), pool);
    run_layer(T, groups);
    catch_up_rows += T;
    // Drafting waits until asked (propose_batch): a step whose draft length is 0 (the adaptive
    // chooser) pays for the catch-up only, not for the head over the vocabulary.
    const int64_t H = L.n_embd;
    for (size_t i = 0; i < drafting.size(); ++i) {
      seq_state& st = seqs[drafting[i]->s->seq];
      st.last.assign(x.data() + last_rows[i] * H, x.data() + (last_rows[i] + 1) * H);
      st.draft_for = drafting[i]->s->size();
    }
  }

  // Two-model: records what the target kept; the head's layer runs over it later, when the
  // sequence is next asked for a draft (catch_up): a sequence the adaptive draft length keeps
  // at 0 costs a copy of its rows, not the layer.
  void keep_rows(std::span<const kept_rows> rows, size_t Ws) {
    if (pend_W != Ws) {  // the row width changed (never in one engine): what is pending is void
      for (auto& [id, st] : seqs) drop_pending(st);
      pend_W = Ws;
      pend_cols = in.target_columns(Ws);
    }
    const size_t C = pend_cols.count;
    std::vector<seq_state*> flush;
    for (const kept_rows& r : rows) {
      seq_state& st = seqs[r.s->seq];
      st.draft.clear();
      st.draft_for = -1;
      start_at(st, r.n_past);
      const int32_t n_new = r.n_computed - r.n_past;
      if (n_new <= 0) continue;
      // Room for every row this sequence may still keep pending, reserved once: growing by
      // doubling would touch (and page-fault in) twice the memory and copy it at every growth,
      // at every engine step, which cost a head drafter's batch a few percent (Eagle-3's rows
      // are 4 n_embd wide). Pages are touched only as rows are written.
      const size_t need = st.pend_tok.size() + static_cast<size_t>(n_new);
      if (st.pend_tok.capacity() < need) {
        const int32_t left = std::max(0, r.s->params.max_tokens - r.s->completion());
        const size_t rows_cap = std::max(need, static_cast<size_t>(opt.max_pending > 0
                                                                       ? std::min(opt.max_pending, n_new + left)
                                                                       : n_new + left));
        reserve_pending(st, rows_cap, C);
      }
      for (int32_t i = 0; i < n_new; ++i) {
        st.pend_tok.push_back(r.s->tokens[static_cast<size_t>(r.n_past + i + 1)]);
        const float* row = r.hidden.data() + static_cast<size_t>(i) * Ws + pend_cols.first;
        st.pend_hid.insert(st.pend_hid.end(), row, row + C);
      }
      st.last.clear();
      // Paused long (or a long prompt): the layer runs now over what is pending, so that the
      // rows kept stay bounded (the head's entries are the same as if it had run at every step).
      if (opt.max_pending > 0 && n_pending(st) >= opt.max_pending) {
        if (opt.catch_up_window > 0) trim_pending(st, opt.catch_up_window);
        else flush.push_back(&st);
      }
      if (r.n_computed == r.s->size() - 1) st.draft_for = r.s->size();
    }
    if (!flush.empty()) {
      const double s0 = last_cu_s;
      const int64_t r0 = last_cu_rows;
      catch_up(flush, std::vector<int32_t>(flush.size(), 0));
      last_cu_s = s0;  // not a draft's catch-up: the adaptive length is not charged for it
      last_cu_rows = r0;
    }
  }

  // The head's layer over every pending row of sts (all in one batch), chain[i] slots reserved
  // beyond them for sts[i]'s drafts; sets each one's last output. A sequence the head's KV has
  // no room for stops drafting (its entries start anew later), and its entry becomes null.
  void catch_up(std::vector<seq_state*>& sts, const std::vector<int32_t>& chain) {
    std::vector<group> groups;
    std::vector<int64_t> last_rows;
    std::vector<seq_state*> done;
    int64_t T = 0;
    for (size_t i = 0; i < sts.size(); ++i) {
      seq_state& st = *sts[i];
      trim_pending(st, opt.catch_up_window);
      const int32_t p = n_pending(st);
      if (!reserve(st, st.n + p + chain[i])) {  // out of head blocks
        const int32_t end = st.start + st.n + p;
        release(st);
        st.start = end;
        st.draft_for = -1;
        sts[i] = nullptr;
        continue;
      }
      if (p == 0) continue;
      groups.push_back({&st, T, p, st.start + st.n, st.n});
      last_rows.push_back(T + p - 1);
      done.push_back(&st);
      T += p;
    }
    if (T == 0) return;
    const auto t0 = std::chrono::steady_clock::now();
    grow(T);
    std::vector<token_id> toks(static_cast<size_t>(T));
    std::vector<const float*> hid(static_cast<size_t>(T));
    for (const group& gr : groups)
      for (int64_t i = 0; i < gr.n; ++i) {
        toks[static_cast<size_t>(gr.row + i)] = gr.st->pend_tok[static_cast<size_t>(i)];
        hid[static_cast<size_t>(gr.row + i)] = gr.st->pend_hid.data() + static_cast<size_t>(i) * pend_cols.count;
      }
    in.build(T, toks.data(), hid.data(), true, x.data(), a.data(), pool);
    run_layer(T, groups);
    catch_up_rows += T;
    const int64_t H = L.n_embd;
    for (size_t i = 0; i < done.size(); ++i) {
      seq_state& st = *done[i];
      st.n += n_pending(st);
      drop_pending(st);
      st.last.assign(x.data() + last_rows[i] * H, x.data() + (last_rows[i] + 1) * H);
    }
    last_cu_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    last_cu_rows += T;
  }

  // Up to max_tokens[i] greedy drafts for seqs[i]: the head over each one's last output, then
  // the chain (each step embeds the previous draft and reads the layer's own output), batched
  // over the sequences still drafting at that step.
  std::vector<draft> propose_batch(std::span<const sequence* const> ss, std::span<const int32_t> max_tokens,
                                   int32_t width) {
    std::vector<draft> out(ss.size());
    std::vector<seq_state*> ds;
    std::vector<size_t> which;
    std::vector<int32_t> want;
    last_cu_s = 0;
    last_cu_rows = 0;
    for (size_t i = 0; i < ss.size(); ++i) {
      auto it = seqs.find(ss[i]->seq);
      if (it == seqs.end() || it->second.draft_for != ss[i]->size()) continue;
      seq_state& st = it->second;
      if (st.last.empty() && n_pending(st) == 0) continue;
      const int32_t k = std::min(max_tokens[i], opt.draft_len);
      if (k <= 0) continue;
      if (static_cast<int32_t>(st.draft.size()) < k) {  // made now (or made longer)
        st.draft.clear();
        st.siblings.clear();
        ds.push_back(&st);
        which.push_back(i);
        want.push_back(k);
      }
    }
    {  // The rows kept since each one last drafted (two-model), in one batch.
      std::vector<int32_t> chain(want.size());
      for (size_t i = 0; i < want.size(); ++i) chain[i] = want[i] - 1;
      catch_up(ds, chain);
      size_t o = 0;
      for (size_t i = 0; i < ds.size(); ++i)
        if (ds[i] && !ds[i]->last.empty()) {
          ds[o] = ds[i];
          which[o] = which[i];
          want[o] = want[i];
          ++o;
        }
      ds.resize(o);
      which.resize(o);
      want.resize(o);
    }
    const auto n = static_cast<int64_t>(ds.size());
    const int64_t H = L.n_embd;
    if (n > 0) {
      grow(n);
      std::vector<float> prev(static_cast<size_t>(n * H));
      for (int64_t i = 0; i < n; ++i)
        std::copy(ds[static_cast<size_t>(i)]->last.begin(), ds[static_cast<size_t>(i)]->last.end(), prev.data() + i * H);
      std::copy_n(prev.data(), n * H, x.data());
      std::vector<int64_t> rows0(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) rows0[static_cast<size_t>(i)] = i;
      std::vector<std::vector<token_id>> tops;
      std::vector<token_id> d = argmax_rows(rows0, width, &tops);
      for (int64_t i = 0; i < n; ++i) {
        ds[static_cast<size_t>(i)]->draft.assign(1, d[static_cast<size_t>(i)]);
        if (width > 1) ds[static_cast<size_t>(i)]->siblings.assign(1, std::move(tops[static_cast<size_t>(i)]));
      }
      const int32_t longest = *std::max_element(want.begin(), want.end());
      std::vector<token_id> toks;
      std::vector<const float*> hid;
      for (int32_t j = 1; j < longest; ++j) {
        std::vector<int64_t> act;  // indices into ds still drafting
        for (int64_t i = 0; i < n; ++i)
          if (want[static_cast<size_t>(i)] > j) act.push_back(i);
        const auto m = static_cast<int64_t>(act.size());
        std::vector<group> cg;
        std::vector<int64_t> out_rows;
        toks.resize(static_cast<size_t>(m));
        hid.resize(static_cast<size_t>(m));
        std::vector<float> in_rows(static_cast<size_t>(m * H));
        for (int64_t r = 0; r < m; ++r) {
          const int64_t i = act[static_cast<size_t>(r)];
          seq_state& st = *ds[static_cast<size_t>(i)];
          toks[static_cast<size_t>(r)] = st.draft.back();
          std::copy_n(prev.data() + i * H, H, in_rows.data() + r * H);
          hid[static_cast<size_t>(r)] = in_rows.data() + r * H;
          cg.push_back({&st, r, 1, st.start + st.n + j - 1, st.n + j - 1});
          out_rows.push_back(r);
        }
        in.build(m, toks.data(), hid.data(), false, x.data(), a.data(), pool);
        run_layer(m, cg);
        for (int64_t r = 0; r < m; ++r)
          std::copy_n(x.data() + r * H, H, prev.data() + act[static_cast<size_t>(r)] * H);
        d = argmax_rows(out_rows, width, &tops);
        for (int64_t r = 0; r < m; ++r) {
          seq_state& st = *ds[static_cast<size_t>(act[static_cast<size_t>(r)])];
          st.draft.push_back(d[static_cast<size_t>(r)]);
          if (width > 1) st.siblings.push_back(std::move(tops[static_cast<size_t>(r)]));
        }
      }
    }
    for (size_t i = 0; i < ss.size(); ++i) {
      auto it = seqs.find(ss[i]->seq);
      if (it == seqs.end() || it->second.draft_for != ss[i]->size()) continue;
      const auto& t = it->second.draft;
      // A chain with its siblings as leaves (width > 1), else the chain.
      out[i] = draft_of_chain(t, width > 1 ? std::span<const std::vector<token_id>>(it->second.siblings)
                                           : std::span<const std::vector<token_id>>(),
                              static_cast<size_t>(std::max(0, max_tokens[i])));
    }
    return out;
  }
};

head_chain::head_chain(head_layer layer, head_inputs& in, const head_chain_options& o) {
  const int32_t n_blocks = o.n_blocks > 0 ? o.n_blocks : (1024 * 1024) / std::max(1, o.block_size);
  impl_ = std::make_unique<impl>(std::move(layer), in, o, n_blocks);
}

head_chain::~head_chain() = default;

draft head_chain::propose(const sequence& s, int32_t max_tokens, int32_t width) {
  const sequence* one[] = {&s};
  const int32_t k[] = {max_tokens};
  return std::move(impl_->propose_batch(one, k, width)[0]);
}

std::vector<draft> head_chain::propose_batch(std::span<const sequence* const> seqs, std::span<const int32_t> max_tokens,
                                             int32_t width) {
  return impl_->propose_batch(seqs, max_tokens, width);
}

void head_chain::forget(const sequence& s) {
  auto it = impl_->seqs.find(s.seq);
  if (it == impl_->seqs.end()) return;
  impl_->release(it->second);
  impl_->recycle(it->second);
  impl_->seqs.erase(it);
}

void head_chain::observe(std::span<const kept_rows> rows, size_t W) { impl_->observe(rows, W); }

int32_t head_chain::kv_blocks_used() const {
  int32_t n = 0;
  for (const auto& [id, st] : impl_->seqs) n += static_cast<int32_t>(st.blocks.size());
  return n;
}

size_t head_chain::n_tracked() const { return impl_->seqs.size(); }
int64_t head_chain::rows_run() const { return impl_->rows_run + impl_->fused_rows; }
int64_t head_chain::fused_rows_run() const { return impl_->fused_rows; }
int64_t head_chain::catch_up_rows_run() const { return impl_->catch_up_rows; }
int32_t head_chain::pending_rows(const sequence& s) const {
  auto it = impl_->seqs.find(s.seq);
  return it == impl_->seqs.end() ? 0 : n_pending(it->second);
}
double head_chain::last_catch_up_seconds() const { return impl_->last_cu_s; }
int64_t head_chain::last_catch_up_rows() const { return impl_->last_cu_rows; }
void head_chain::plan_fused(std::span<const fused_seq_in> seqs) { impl_->plan_fused(seqs); }
void head_chain::run_fused(const float* hidden, int64_t ld, int64_t g_col, cpu::thread_pool& pool) {
  impl_->run_fused(hidden, ld, g_col, pool);
}
cpu::thread_pool& head_chain::pool() { return impl_->pool; }

}  // namespace troupe
