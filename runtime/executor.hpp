// executor: runs one batched forward pass of a model on one device. The CPU executor is one;
// a CUDA executor is another. Above it, the engine sees only KV block ids; how a block is
// laid out in memory is the executor's business.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

struct model_config;
using token_id = int32_t;
struct forward_batch;
namespace cpu {
class thread_pool;
}

// eagle3_one_model: a drafter's head layer that runs inside the target's forward, right after
// the target's last layer, on the executor's threads (runtime/spec/eagle3_proposer.hpp). The
// executor hands it, for every hidden row of the batch (sequences in order), the residual
// stream entering each of the batch's aux_layers (aux: [n_hidden_rows, ld_aux], the layers'
// n_embd columns side by side), captured where the forward computed them; the head fills each
// hidden row's second n_embd columns (hidden: [n_hidden_rows, ld_hidden], the final state
// already in the first) with what its drafter keeps of the row, and runs the rows it planned for
// this batch when the batch was scheduled. Only a CPU executor runs one (runs_fused_head()).
class fused_head {
 public:
  virtual ~fused_head() = default;
  virtual void run(const forward_batch& b, const float* aux, int64_t ld_aux, float* hidden, int64_t ld_hidden,
                   cpu::thread_pool& pool) = 0;
};

// Many sequences in one forward: some prefilling many tokens, others decoding one. Each
// sequence's new tokens sit at positions n_past .. n_past + n_new - 1; its block table maps
// position p to KV block block_table[p / block_size] and must cover every position up to
// n_past + n_new - 1. The batch owns its data so it can be handed to another thread.
struct forward_batch {
  struct seq {
    int32_t n_past = 0;
    int32_t n_new = 0;
    int32_t n_logits = 0;      // logits for its last n_logits new tokens (0 while prefilling a chunk)
    int32_t n_hidden = 0;      // final hidden states (after the final norm) for its last n_hidden
                               // new tokens: what embeddings are pooled from
    int32_t table_offset = 0;  // into block_tables
    int32_t table_size = 0;
    // A tree verification (speculative tree drafts): offset into tree_parents of its n_new
    // parent indices, -1 for a causal chain (everything else). New token i sits in KV slot
    // n_past + i but at position n_past + depth(i) (RoPE), and attends to the past and to its
    // own ancestors among the new tokens only; parent -1 is the root (new token 0).
    int32_t tree_offset = -1;
  };
  std::vector<token_id> tokens;        // [n_tokens]: each sequence's new tokens, in order
  std::vector<seq> seqs;
  std::vector<int32_t> block_tables;   // every sequence's block ids, concatenated
  std::vector<int32_t> tree_parents;   // tree sequences' parent indices (seq::tree_offset)
  // KV rows to copy before the step computes anything: pairs (src, dst) of cache slots, slot =
  // block * block_size + offset, every layer's keys and values: an accepted tree path moved to
  // where a chain would have written it (runtime/engine/engine.cpp). Applied in order.
  std::vector<int32_t> kv_moves;
  // Layers whose input residual stream (vLLM's eagle_aux_hidden_state_layer_ids: id j is the
  // output of layer j - 1, before layer j) each hidden row also carries, after the final
  // hidden state: a hidden row is then [n_embd * (1 + aux_layers.size())]. Empty: [n_embd].
  std::vector<int32_t> aux_layers;
  // eagle3_one_model: the head run inside this forward (fused_head above); null: none. With a
  // head, a hidden row is [final state, the head's column] (2 n_embd) and aux_layers are what
  // the head reads. Not on the wire: the head lives in the process that scheduled the batch
  // (its device actor is local); an executor that cannot run it refuses the batch.
  std::shared_ptr<fused_head> head;

  void add(int32_t n_past, std::span<const token_id> new_tokens, std::span<const int32_t> blocks,
           int32_t n_logits, int32_t n_hidden = 0);
  // Makes the last added sequence a tree verification with these parents (one per new token).
  void set_tree(std::span<const int32_t> parents);
  int32_t n_tokens() const { return static_cast<int32_t>(tokens.size()); }
  int32_t n_logit_rows() const;
  int32_t n_hidden_rows() const;
  void clear();
};

// The width of a hidden row of batch b (see forward_batch::aux_layers).
inline int64_t hidden_row_width(const forward_batch& b, int64_t n_embd) {
  return n_embd * (1 + (b.head ? 1 : static_cast<int64_t>(b.aux_layers.size())));
}

class executor {
 public:
  virtual ~executor() = default;

  virtual const model_config& config() const = 0;
  virtual int32_t kv_block_size() const = 0;
  virtual int32_t kv_n_blocks() const = 0;
  virtual size_t kv_bytes_per_block() const = 0;

  // Stores the new tokens' keys and values in their blocks and writes the logits of the rows
  // asked for into logits: [n_logit_rows, n_vocab], sequences in order. A batch that does not
  // fit the model or the cache (a token id out of range, a block table too short, a block id
  // out of range) is an error, and nothing is computed.
  [[nodiscard]] virtual status forward(const forward_batch& batch, std::vector<float>& logits) = 0;
  // forward, and also the hidden rows asked for (seq::n_hidden) into hidden: [n_hidden_rows,
  // hidden_row_width], sequences in order (the aux layers' residuals after the final state). An executor that cannot return them (this default) refuses a
  // batch that asks for any, saying so.
  [[nodiscard]] virtual status forward_hidden(const forward_batch& batch, std::vector<float>& logits,
                                              std::vector<float>& hidden);
  // Whether forward_hidden returns hidden rows (else embedding requests must not reach it).
  virtual bool returns_hidden_states() const { return false; }
  // Whether forward takes tree verifications and kv_moves (forward_batch::tree_offset): an
  // executor that cannot (this default) refuses a batch that holds any.
  virtual bool verifies_trees() const { return false; }
  // Whether forward runs a batch's fused_head (eagle3_one_model): an executor that cannot (this
  // default) refuses a batch that holds one.
  virtual bool runs_fused_head() const { return false; }

  // Copies the contents of KV blocks, src[i] -> dst[i] (for copy-on-write of shared blocks).
  virtual void copy_blocks(std::span<const int32_t> src, std::span<const int32_t> dst) = 0;

  // KV transfer between executors (disaggregated prefill and decode). read_blocks appends the
  // bytes of each block, in the order given, to out: kv_bytes_per_block() each, every layer's
  // keys and values of that block in the executor's own layout. write_blocks stores such bytes
  // into blocks. Only an executor whose kv_layout() is equal can read what another wrote. A
  // block id out of range, or data of the wrong size, is an error, and nothing is written.
  // Call them between forwards, never during one.
  [[nodiscard]] virtual status read_blocks(std::span<const int32_t> blocks, std::vector<uint8_t>& out) = 0;
  [[nodiscard]] virtual status write_blocks(std::span<const int32_t> blocks, std::span<const uint8_t> data) = 0;
  // "f32 L4 kv2 d16 b16 k-transposed": what must match for blocks to move between executors.
  virtual std::string kv_layout() const = 0;

  // "cpu, 2 threads, avx512+bf16, 1024 KV blocks of 16 tokens (64 MiB)".
  virtual std::string describe() const = 0;
};

// Checks a list of block ids (and, for a write, the data's size) before a KV transfer.
[[nodiscard]] status validate_blocks(std::span<const int32_t> blocks, int32_t n_blocks, size_t bytes_per_block,
                                     const size_t* data_bytes);

// Checks a batch against a model and cache geometry; executors call it before running.
[[nodiscard]] status validate_batch(const forward_batch& batch, int64_t n_vocab,
                                    int32_t block_size, int32_t n_blocks, int64_t max_position);

}  // namespace troupe
