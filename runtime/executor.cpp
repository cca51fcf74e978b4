#include "runtime/executor.hpp"

#include <fmt/format.h>

namespace troupe {

void forward_batch::add(int32_t n_past, std::span<const token_id> new_tokens,
                        std::span<const int32_t> blocks, int32_t n_logits, int32_t n_hidden) {
  seq s;
  s.n_past = n_past;
  s.n_new = static_cast<int32_t>(new_tokens.size());
  s.n_logits = n_logits;
  s.n_hidden = n_hidden;
  s.table_offset = static_cast<int32_t>(block_tables.size());
  s.table_size = static_cast<int32_t>(blocks.size());
  tokens.insert(tokens.end(), new_tokens.begin(), new_tokens.end());
  block_tables.insert(block_tables.end(), blocks.begin(), blocks.end());
  seqs.push_back(s);
}

void forward_batch::set_tree(std::span<const int32_t> parents) {
  seqs.back().tree_offset = static_cast<int32_t>(tree_parents.size());
  tree_parents.insert(tree_parents.end(), parents.begin(), parents.end());
}

int32_t forward_batch::n_logit_rows() const {
  int32_t n = 0;
  for (const seq& s : seqs) n += s.n_logits;
  return n;
}

int32_t forward_batch::n_hidden_rows() const {
  int32_t n = 0;
  for (const seq& s : seqs) n += s.n_hidden;
  return n;
}

status executor::forward_hidden(const forward_batch& batch, std::vector<float>& logits, std::vector<float>& hidden) {
  hidden.clear();
  if (batch.head)
    return make_error(fmt::format("this executor ({}) cannot run an Eagle-3 head inside its step "
                                  "(llm_config.speculative_config.eagle3_one_model true): the CPU executor does",
                                  describe()));
  if (batch.n_hidden_rows() > 0)
    return make_error(fmt::format("this executor ({}) does not return hidden states, so it cannot compute "
                                  "embeddings; serve the model on the CPU for them",
                                  describe()));
  return forward(batch, logits);
}

void forward_batch::clear() {
  tree_parents.clear();
  kv_moves.clear();
  tokens.clear();
  seqs.clear();
  block_tables.clear();
  aux_layers.clear();
  head.reset();
}

status validate_blocks(std::span<const int32_t> blocks, int32_t n_blocks, size_t bytes_per_block,
                       const size_t* data_bytes) {
  for (int32_t b : blocks)
    if (b < 0 || b >= n_blocks) return make_error(fmt::format("KV transfer: block {} is not one of the {}", b, n_blocks));
  if (data_bytes && *data_bytes != blocks.size() * bytes_per_block)
    return make_error(fmt::format("KV transfer: {} bytes for {} blocks of {} bytes", *data_bytes, blocks.size(),
                                  bytes_per_block));
  return {};
}

status validate_batch(const forward_batch& b, int64_t n_vocab, int32_t block_size,
                      int32_t n_blocks, int64_t max_position) {
  int64_t total = 0;
  for (size_t i = 0; i < b.seqs.size(); ++i) {
    const auto& s = b.seqs[i];
    if (s.n_past < 0 || s.n_new <= 0 || s.n_logits < 0 || s.n_logits > s.n_new || s.n_hidden < 0 ||
        s.n_hidden > s.n_new)
      return make_error(fmt::format("forward batch: sequence {} has n_past {}, n_new {}, n_logits {}, n_hidden {}",
                                    i, s.n_past, s.n_new, s.n_logits, s.n_hidden));
    const int64_t end = static_cast<int64_t>(s.n_past) + s.n_new;
    if (end > max_position)
      return make_error(fmt::format("forward batch: sequence {} reaches position {}, beyond the model's {}",
                                    i, end - 1, max_position));
    if (static_cast<int64_t>(s.table_size) * block_size < end)
      return make_error(fmt::format("forward batch: sequence {} has {} blocks for {} positions", i,
                                    s.table_size, end));
    if (s.table_offset < 0 || static_cast<size_t>(s.table_offset) + static_cast<size_t>(s.table_size) > b.block_tables.size())
      return make_error(fmt::format("forward batch: sequence {} has a block table outside the batch", i));
    for (int32_t j = 0; j < s.table_size; ++j) {
      const int32_t blk = b.block_tables[static_cast<size_t>(s.table_offset + j)];
      if (blk < 0 || blk >= n_blocks)
        return make_error(fmt::format("forward batch: sequence {} uses KV block {} of {}", i, blk, n_blocks));
    }
    if (s.tree_offset >= 0) {
      if (static_cast<size_t>(s.tree_offset) + static_cast<size_t>(s.n_new) > b.tree_parents.size())
        return make_error(fmt::format("forward batch: sequence {} has tree parents outside the batch", i));
      for (int32_t j = 0; j < s.n_new; ++j) {
        const int32_t p = b.tree_parents[static_cast<size_t>(s.tree_offset + j)];
        if (p < -1 || p >= j || (j > 0 && p < 0))
          return make_error(fmt::format("forward batch: sequence {} token {} has tree parent {} (a parent comes "
                                        "before its child; only token 0 is the root)",
                                        i, j, p));
      }
    }
    total += s.n_new;
  }
  if (b.kv_moves.size() % 2 != 0) return make_error("forward batch: kv_moves holds an odd number of slots");
  for (int32_t slot : b.kv_moves)
    if (slot < 0 || static_cast<int64_t>(slot) >= static_cast<int64_t>(n_blocks) * block_size)
      return make_error(fmt::format("forward batch: kv_moves names slot {} of {}", slot,
                                    static_cast<int64_t>(n_blocks) * block_size));
  if (total != static_cast<int64_t>(b.tokens.size()))
    return make_error("forward batch: the sequences' token counts do not add up to the batch's");
  for (token_id t : b.tokens)
    if (t < 0 || t >= n_vocab)
      return make_error(fmt::format("forward batch: token id {} is outside the vocabulary of {}", t, n_vocab));
  return {};
}

}  // namespace troupe
