// batch_plan: a forward_batch laid out for the CUDA kernels: per-token ids, positions and KV
// slots, the rows that want logits, the attention work lists and the block tables, packed into
// one int32 buffer so that one copy moves a step's metadata to the device. Plain C++ (no CUDA):
// it is built and tested on machines without a GPU.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "runtime/executor.hpp"

namespace troupe::cuda {

// Query rows per prefill attention tile. A row is a (token, query head) pair of one KV head's
// group, so that grouped-query heads share the keys a tile loads.
inline constexpr int32_t prefill_tile_rows = 32;

// One tile of prefill attention of one sequence (run for every KV head): packed rows
// [row0, row0 + prefill_tile_rows) of the sequence's n_q * group rows, where row r is its new
// token r / group and query head kvh * group + r % group.
struct prefill_item {
  int32_t q_row;         // the sequence's first new token in the batch
  int32_t n_q;           // its new tokens
  int32_t pos0;          // the position of its first new token (its n_past)
  int32_t table_offset;  // into the packed block tables
  int32_t row0;
};

// One decoding sequence (one new token): attention over its n_ctx positions, the new one
// included. Graph padding has n_ctx 0, and its output is zeros.
struct decode_item {
  int32_t q_row;
  int32_t n_ctx;
  int32_t table_offset;
};
static_assert(sizeof(prefill_item) == 5 * sizeof(int32_t));
static_assert(sizeof(decode_item) == 3 * sizeof(int32_t));

struct plan_options {
  int32_t block_size = 16;
  int32_t n_head = 1;
  int32_t n_head_kv = 1;
  int32_t split_tokens = 256;  // keys per decode split while contexts are short
  int32_t max_splits = 64;     // a power of two; longer contexts get longer splits
  std::vector<int32_t> graph_batch_sizes;  // ascending; empty: no CUDA graphs
};

// Which captured CUDA graph a pure decode step replays: the batch padded up to the next
// captured size, and the longest context rounded up to a power of two of split_tokens chunks.
// Everything else a graph's kernels read comes from the packed buffer at fixed offsets.
struct graph_key {
  int32_t batch = 0;
  int32_t ctx_chunks = 0;
  bool operator==(const graph_key&) const = default;
  bool operator<(const graph_key& o) const {
    return batch != o.batch ? batch < o.batch : ctx_chunks < o.ctx_chunks;
  }
};

// Offsets (in int32s) of the sections of the packed buffer. The block tables, whose length
// varies from step to step, come last: for a decode step every other offset depends only on
// the batch size, so a graph captured for that size finds each step's data where it looked.
struct plan_layout {
  int32_t tokens = 0;         // [n_tokens]
  int32_t positions = 0;      // [n_tokens]
  int32_t slots = 0;          // [n_tokens] block * block_size + offset; -1: store nothing
  int32_t logit_rows = 0;     // [n_logits] rows of the batch whose logits are computed
  int32_t decode_items = 0;   // [n_decode] decode_item
  int32_t prefill_items = 0;  // [n_prefill] prefill_item
  int32_t block_tables = 0;   // every sequence's blocks, as far as its context reaches
  int32_t total = 0;
};
plan_layout layout_for(int32_t n_tokens, int32_t n_logits, int32_t n_decode, int32_t n_prefill,
                       int32_t n_table);

// How decode attention splits the longest context of a step over thread blocks.
struct split_plan {
  int32_t ctx_chunks = 1;  // a power of two
  int32_t n_splits = 1;    // min(ctx_chunks, max_splits)
  int32_t split_len = 0;   // keys per split: ctx_chunks * split_tokens / n_splits
};
split_plan splits_for(int32_t max_ctx, int32_t split_tokens, int32_t max_splits);

// The captured batch size that n decoding sequences are padded to; 0 if none is large enough.
int32_t graph_batch_for(int32_t n, std::span<const int32_t> sizes);

struct batch_plan {
  int32_t n_tokens = 0;       // rows computed (padded up for a graph)
  int32_t n_real_tokens = 0;  // the batch's own
  int32_t n_logits = 0;       // logit rows computed (padded up for a graph)
  int32_t n_real_logits = 0;  // the rows forward() returns
  int32_t n_decode = 0;
  int32_t n_prefill = 0;
  split_plan split;
  std::optional<graph_key> graph;
  plan_layout layout;
  std::vector<int32_t> packed;  // [layout.total]

  std::span<const int32_t> section(int32_t offset, int32_t n) const {
    return std::span<const int32_t>(packed).subspan(static_cast<size_t>(offset), static_cast<size_t>(n));
  }
  std::span<const int32_t> tokens() const { return section(layout.tokens, n_tokens); }
  std::span<const int32_t> positions() const { return section(layout.positions, n_tokens); }
  std::span<const int32_t> slots() const { return section(layout.slots, n_tokens); }
  std::span<const int32_t> logit_rows() const { return section(layout.logit_rows, n_logits); }
  const decode_item* decode_items() const {
    return reinterpret_cast<const decode_item*>(packed.data() + layout.decode_items);
  }
  const prefill_item* prefill_items() const {
    return reinterpret_cast<const prefill_item*>(packed.data() + layout.prefill_items);
  }
};

// Lays out a batch that validate_batch accepted. A pure decode step (every sequence has one
// new token and wants its logits) whose size fits a graph size gets a graph key and padding:
// padded rows read token 0 at position 0, store no KV (slot -1) and attend to nothing.
// Sequences with one new token use decode attention, the others prefill attention.
batch_plan make_plan(const forward_batch& b, const plan_options& o);

// Copy-on-write pairs split into waves that can each run as one parallel copy: no wave
// writes a block that it also reads or writes elsewhere, so the result equals copying the
// pairs one after another, in order.
std::vector<std::vector<std::pair<int32_t, int32_t>>> copy_waves(std::span<const int32_t> src,
                                                                 std::span<const int32_t> dst);

}  // namespace troupe::cuda
