#include "runtime/engine/kv_cache_manager.hpp"

#include <algorithm>
#include <cassert>

namespace troupe {

kv_cache_manager::kv_cache_manager(int32_t n_blocks, int32_t block_size, bool prefix_cache,
                                   int64_t max_recycling_seqs, uint64_t hash_salt)
    : pool_(n_blocks, block_size, prefix_cache, max_recycling_seqs), salt_(hash_salt) {}

void kv_cache_manager::ensure_hashes(entry& e, std::span<const token_id> tokens, size_t n_blocks) const {
  const auto bs = static_cast<size_t>(block_size());
  assert(n_blocks * bs <= tokens.size());
  while (e.hashes.size() < n_blocks) {
    const size_t i = e.hashes.size();
    e.hashes.push_back(hash_block(i ? std::optional<block_hash>(e.hashes[i - 1]) : std::nullopt,
                                  tokens.subspan(i * bs, bs), salt_));
  }
}

int32_t kv_cache_manager::count_cached_prefix(uint64_t seq, std::span<const token_id> tokens) {
  if (tokens.empty()) return 0;
  entry& e = at(seq);
  const size_t max_blocks = (tokens.size() - 1) / static_cast<size_t>(block_size());
  ensure_hashes(e, tokens, max_blocks);
  const size_t hit = pool_.count_cached_prefix(std::span<const block_hash>(e.hashes.data(), max_blocks));
  return static_cast<int32_t>(hit) * block_size();
}

int32_t kv_cache_manager::pin_prefix(uint64_t seq, std::span<const token_id> tokens, int32_t n_blocks) {
  entry& e = at(seq);
  assert(e.blocks.empty());
  ensure_hashes(e, tokens, static_cast<size_t>(n_blocks));
  e.blocks = pool_.match(std::span<const block_hash>(e.hashes.data(), static_cast<size_t>(n_blocks)));
  e.n_cached_blocks = static_cast<int32_t>(e.blocks.size());
  e.n_last_allocated = 0;
  return e.n_cached_blocks * block_size();
}

bool kv_cache_manager::allocate_slots(uint64_t seq, int32_t n_computed, int32_t n_new, int32_t n_lookahead) {
  entry& e = at(seq);
  const int32_t need = blocks_for(n_computed + n_new + n_lookahead, block_size()) - static_cast<int32_t>(e.blocks.size());
  e.n_last_allocated = 0;
  if (need <= 0) return true;
  auto got = pool_.allocate(need);
  if (!got) return false;
  e.blocks.insert(e.blocks.end(), got->begin(), got->end());
  e.n_last_allocated = got->size();
  return true;
}

std::span<const int32_t> kv_cache_manager::last_allocated(uint64_t seq) const {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return {};
  const entry& e = it->second;
  return std::span<const int32_t>(e.blocks).last(std::min(e.n_last_allocated, e.blocks.size()));
}

void kv_cache_manager::commit(uint64_t seq, std::span<const token_id> tokens, int32_t n_computed) {
  entry& e = at(seq);
  const int32_t full = std::min<int32_t>(n_computed / block_size(), static_cast<int32_t>(e.blocks.size()));
  if (full <= e.n_cached_blocks) return;
  ensure_hashes(e, tokens, static_cast<size_t>(full));
  const auto from = static_cast<size_t>(e.n_cached_blocks), count = static_cast<size_t>(full - e.n_cached_blocks);
  pool_.cache_full_blocks(std::span(e.blocks).subspan(from, count), std::span(e.hashes).subspan(from, count),
                          from ? std::optional<block_hash>(e.hashes[from - 1]) : std::nullopt);
  e.n_cached_blocks = full;
}

void kv_cache_manager::truncate(uint64_t seq, int32_t n_tokens) {
  entry& e = at(seq);
  const auto keep = static_cast<size_t>(std::max(blocks_for(n_tokens, block_size()), e.n_cached_blocks));
  if (e.blocks.size() <= keep) return;
  pool_.release(std::span<const int32_t>(e.blocks).subspan(keep));
  e.blocks.resize(keep);
  e.n_last_allocated = 0;
}

void kv_cache_manager::release(uint64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  entry& e = it->second;
  pool_.release(e.blocks);
  e.blocks.clear();
  e.n_cached_blocks = 0;
  e.n_last_allocated = 0;
}

void kv_cache_manager::free(uint64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  entry& e = it->second;
  std::vector<block_hash> chain(e.hashes.begin(), e.hashes.begin() + e.n_cached_blocks);
  pool_.release(e.blocks);
  seqs_.erase(it);
  pool_.retire_sequence(std::move(chain));
}

std::span<const int32_t> kv_cache_manager::blocks(uint64_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? std::span<const int32_t>() : std::span<const int32_t>(it->second.blocks);
}

kv_export kv_cache_manager::export_blocks(uint64_t seq, std::span<const token_id> tokens, int32_t n_tokens) {
  entry& e = at(seq);
  kv_export out;
  out.n_tokens = n_tokens;
  const auto n = static_cast<size_t>(std::min<int32_t>(blocks_for(n_tokens, block_size()), static_cast<int32_t>(e.blocks.size())));
  out.blocks.assign(e.blocks.begin(), e.blocks.begin() + static_cast<ptrdiff_t>(n));
  const auto full = std::min(static_cast<size_t>(n_tokens / block_size()), n);
  ensure_hashes(e, tokens, full);
  out.hashes.assign(e.hashes.begin(), e.hashes.begin() + static_cast<ptrdiff_t>(full));
  return out;
}

std::optional<kv_import> kv_cache_manager::import_blocks(uint64_t seq, std::span<const token_id> tokens,
                                                         int32_t n_tokens) {
  entry& e = at(seq);
  assert(e.blocks.empty());
  const auto full = static_cast<size_t>(n_tokens / block_size());
  ensure_hashes(e, tokens, full);
  const size_t hit = pool_.count_cached_prefix(std::span<const block_hash>(e.hashes.data(), full));
  e.blocks = pool_.match(std::span<const block_hash>(e.hashes.data(), hit));
  e.n_cached_blocks = static_cast<int32_t>(e.blocks.size());
  kv_import out;
  out.first_block = e.n_cached_blocks;
  if (!allocate_slots(seq, 0, n_tokens)) {
    pool_.release(e.blocks);
    seqs_.erase(seq);
    return std::nullopt;
  }
  out.blocks.assign(e.blocks.begin() + out.first_block, e.blocks.end());
  return out;
}

}  // namespace troupe
