#include "kernels/cuda/batch_plan.hpp"

#include <algorithm>
#include <set>

namespace troupe::cuda {
namespace {

int32_t next_pow2(int32_t v) {
  int32_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

int32_t ceil_div(int64_t a, int64_t b) { return static_cast<int32_t>((a + b - 1) / b); }

}  // namespace

plan_layout layout_for(int32_t n_tokens, int32_t n_logits, int32_t n_decode, int32_t n_prefill,
                       int32_t n_table) {
  plan_layout l;
  l.tokens = 0;
  l.positions = l.tokens + n_tokens;
  l.slots = l.positions + n_tokens;
  l.logit_rows = l.slots + n_tokens;
  l.decode_items = l.logit_rows + n_logits;
  l.prefill_items = l.decode_items + n_decode * 3;
  l.block_tables = l.prefill_items + n_prefill * 5;
  l.total = l.block_tables + n_table;
  return l;
}

split_plan splits_for(int32_t max_ctx, int32_t split_tokens, int32_t max_splits) {
  split_plan s;
  s.ctx_chunks = next_pow2(std::max(1, ceil_div(std::max(max_ctx, 1), split_tokens)));
  s.n_splits = std::min(s.ctx_chunks, max_splits);
  s.split_len = s.ctx_chunks / s.n_splits * split_tokens;
  return s;
}

int32_t graph_batch_for(int32_t n, std::span<const int32_t> sizes) {
  for (int32_t s : sizes)
    if (s >= n) return s;
  return 0;
}

batch_plan make_plan(const forward_batch& b, const plan_options& o) {
  batch_plan p;
  const int32_t bs = o.block_size;
  const int32_t group = o.n_head / o.n_head_kv;
  const int32_t n_seqs = static_cast<int32_t>(b.seqs.size());

  bool pure_decode = n_seqs > 0;
  for (const auto& s : b.seqs) pure_decode = pure_decode && s.n_new == 1 && s.n_logits == 1;
  const int32_t padded = pure_decode ? graph_batch_for(n_seqs, o.graph_batch_sizes) : 0;

  // Counts first, so the sections can be written in place.
  int32_t n_table = 0, n_decode = 0, n_prefill = 0, max_ctx = 0;
  for (const auto& s : b.seqs) {
    const int32_t ctx = s.n_past + s.n_new;
    n_table += ceil_div(ctx, bs);
    if (s.n_new == 1) {
      ++n_decode;
      max_ctx = std::max(max_ctx, ctx);
    } else {
      n_prefill += ceil_div(static_cast<int64_t>(s.n_new) * group, prefill_tile_rows);
    }
  }
  p.n_real_tokens = b.n_tokens();
  p.n_real_logits = b.n_logit_rows();
  p.n_tokens = padded ? padded : p.n_real_tokens;
  p.n_logits = padded ? padded : p.n_real_logits;
  p.n_decode = padded ? padded : n_decode;
  p.n_prefill = n_prefill;
  p.split = splits_for(max_ctx, o.split_tokens, o.max_splits);
  if (padded) p.graph = graph_key{padded, p.split.ctx_chunks};
  p.layout = layout_for(p.n_tokens, p.n_logits, p.n_decode, p.n_prefill, n_table);
  p.packed.assign(static_cast<size_t>(p.layout.total), 0);

  int32_t* tokens = p.packed.data() + p.layout.tokens;
  int32_t* positions = p.packed.data() + p.layout.positions;
  int32_t* slots = p.packed.data() + p.layout.slots;
  int32_t* logit_rows = p.packed.data() + p.layout.logit_rows;
  auto* decode = reinterpret_cast<decode_item*>(p.packed.data() + p.layout.decode_items);
  auto* prefill = reinterpret_cast<prefill_item*>(p.packed.data() + p.layout.prefill_items);
  int32_t* tables = p.packed.data() + p.layout.block_tables;

  int32_t row = 0, table_at = 0, logit_at = 0, decode_at = 0, prefill_at = 0;
  for (const auto& s : b.seqs) {
    const int32_t ctx = s.n_past + s.n_new;
    const int32_t n_blocks = ceil_div(ctx, bs);
    const int32_t* table = b.block_tables.data() + s.table_offset;
    std::copy_n(table, n_blocks, tables + table_at);
    for (int32_t i = 0; i < s.n_new; ++i) {
      const int32_t pos = s.n_past + i;
      tokens[row + i] = b.tokens[static_cast<size_t>(row + i)];
      positions[row + i] = pos;
      slots[row + i] = table[pos / bs] * bs + pos % bs;
    }
    for (int32_t i = s.n_new - s.n_logits; i < s.n_new; ++i) logit_rows[logit_at++] = row + i;
    if (s.n_new == 1) {
      decode[decode_at++] = {row, ctx, table_at};
    } else {
      const int32_t rows = s.n_new * group;
      for (int32_t r0 = 0; r0 < rows; r0 += prefill_tile_rows)
        prefill[prefill_at++] = {row, s.n_new, s.n_past, table_at, r0};
    }
    row += s.n_new;
    table_at += n_blocks;
  }
  // Graph padding: token 0 at position 0, no KV stored, no keys attended, logits discarded.
  for (int32_t i = row; i < p.n_tokens; ++i) slots[i] = -1;
  for (int32_t i = logit_at; i < p.n_logits; ++i) logit_rows[i] = i;
  for (int32_t i = decode_at; i < p.n_decode; ++i) decode[i] = {i, 0, 0};
  return p;
}

std::vector<std::vector<std::pair<int32_t, int32_t>>> copy_waves(std::span<const int32_t> src,
                                                                 std::span<const int32_t> dst) {
  std::vector<std::vector<std::pair<int32_t, int32_t>>> waves;
  std::set<int32_t> read, written;
  const size_t n = std::min(src.size(), dst.size());
  for (size_t i = 0; i < n; ++i) {
    const int32_t s = src[i], d = dst[i];
    if (s == d) continue;
    // A pair joins the current wave unless it reads a block the wave writes, or writes a block
    // the wave reads or writes: then the order of the two would matter.
    const bool conflict = waves.empty() || written.count(s) || written.count(d) || read.count(d);
    if (conflict) {
      waves.emplace_back();
      read.clear();
      written.clear();
    }
    waves.back().emplace_back(s, d);
    read.insert(s);
    written.insert(d);
  }
  return waves;
}

}  // namespace troupe::cuda
