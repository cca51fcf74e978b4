// SentencePiece BPE by piece score, as GGUF "llama" vocabularies (Llama 2) store it: the
// adjacent pair whose concatenation is the best-scoring piece merges first.
#include <algorithm>

#include "runtime/text/tokenizer_impl.hpp"
#include "runtime/text/unicode.hpp"

namespace troupe {
namespace {

struct symbol {
  uint32_t begin, size;  // bytes of the piece; size 0: merged into its left neighbour
  int32_t prev, next;
};

struct candidate {
  float score;
  int32_t left, right;
  uint32_t size;  // of the merged text: a stale candidate no longer adds up
};

// Max-heap order: highest score first, then the leftmost (as SentencePiece and llama.cpp do).
struct pops_later {
  bool operator()(const candidate& a, const candidate& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

struct spm_scratch {
  std::vector<symbol> syms;
  std::vector<candidate> heap;
};

}  // namespace

void tokenizer::impl::encode_spm(std::string_view piece, std::vector<token_id>& out) const {
  if (piece.empty()) return;
  thread_local spm_scratch scratch;
  std::vector<symbol>& syms = scratch.syms;
  syms.clear();
  for (size_t i = 0; i < piece.size();) {
    const size_t len = std::min(unicode::utf8_seq_len(static_cast<uint8_t>(piece[i])), piece.size() - i);
    syms.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(len), static_cast<int32_t>(syms.size()) - 1, -1});
    i += len;
  }
  const auto n = static_cast<int32_t>(syms.size());
  for (int32_t i = 0; i + 1 < n; ++i) syms[i].next = i + 1;

  std::vector<candidate>& heap = scratch.heap;
  heap.clear();
  auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const uint32_t size = syms[l].size + syms[r].size;
    const token_id id = by_text.find(piece.substr(syms[l].begin, size));
    if (id < 0) return;
    heap.push_back({score[id], l, r, size});
    std::push_heap(heap.begin(), heap.end(), pops_later{});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), pops_later{});
    const candidate c = heap.back();
    heap.pop_back();
    symbol& l = syms[c.left];
    symbol& r = syms[c.right];
    if (l.size == 0 || r.size == 0 || l.next != c.right || l.size + r.size != c.size) continue;
    l.size += r.size;
    r.size = 0;
    l.next = r.next;
    if (l.next >= 0) syms[l.next].prev = c.left;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }

  for (int32_t i = 0; i >= 0 && i < n; i = syms[i].next) {
    const std::string_view s = piece.substr(syms[i].begin, syms[i].size);
    if (const token_id id = by_text.find(s); id >= 0) out.push_back(id);
    else push_bytes(s, out);  // a character with no piece of its own: byte fallback
  }
}

}  // namespace troupe
