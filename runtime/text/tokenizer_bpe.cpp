// Byte-pair encoding by merge rank (GPT-2, Llama 3, Qwen, and tokenizer.json BPE models).
#include <algorithm>

#include "runtime/text/tokenizer_impl.hpp"
#include "runtime/text/unicode.hpp"

namespace troupe {
namespace {

struct symbol {
  token_id id;  // -1: a character with no entry (dropped); -2: merged into its left neighbour
  int32_t prev, next;
};

// A candidate merge of the symbol at pos with the one after it. Candidates go stale as
// their neighbours merge; a popped one is used only if both symbols are still the same.
struct candidate {
  int32_t rank;
  int32_t pos;
  token_id left, right, merged;
};

// Max-heap order that pops the lowest rank first, then the leftmost (as Hugging Face does).
struct pops_later {
  bool operator()(const candidate& a, const candidate& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.pos > b.pos);
  }
};

struct bpe_scratch {
  std::vector<symbol> syms;
  std::vector<candidate> heap;
};

}  // namespace

void tokenizer::impl::push_bytes(std::string_view s, std::vector<token_id>& out) const {
  for (char c : s) {
    const token_id b = byte_token[static_cast<uint8_t>(c)];
    if (b >= 0) out.push_back(b);
    else if (unk_id >= 0) out.push_back(unk_id);
  }
}

void tokenizer::impl::encode_bpe(std::string_view piece, std::vector<token_id>& out) const {
  if (piece.empty()) return;
  if (ignore_merges) {
    const auto& whole = byte_level ? by_bytes : by_text;
    if (const token_id id = whole.find(piece); id >= 0) {
      out.push_back(id);
      return;
    }
  }

  thread_local bpe_scratch scratch;
  std::vector<symbol>& syms = scratch.syms;
  syms.clear();
  auto add = [&](token_id id) { syms.push_back({id, static_cast<int32_t>(syms.size()) - 1, -1}); };
  if (byte_level) {
    for (char c : piece) add(byte_token[static_cast<uint8_t>(c)]);
  } else {
    for (size_t i = 0; i < piece.size();) {
      const size_t len = std::min(unicode::utf8_seq_len(static_cast<uint8_t>(piece[i])), piece.size() - i);
      const std::string_view ch = piece.substr(i, len);
      i += len;
      if (const token_id id = by_text.find(ch); id >= 0) {
        add(id);
        continue;
      }
      bool all_bytes = byte_fallback;
      for (char c : ch) all_bytes = all_bytes && byte_token[static_cast<uint8_t>(c)] >= 0;
      if (all_bytes) {
        for (char c : ch) add(byte_token[static_cast<uint8_t>(c)]);
      } else if (!(fuse_unk && !syms.empty() && syms.back().id == unk_id && unk_id >= 0)) {
        add(unk_id);
      }
    }
  }
  const auto n = static_cast<int32_t>(syms.size());
  for (int32_t i = 0; i + 1 < n; ++i) syms[i].next = i + 1;

  std::vector<candidate>& heap = scratch.heap;
  heap.clear();
  auto consider = [&](int32_t pos) {
    const int32_t nx = syms[pos].next;
    if (nx < 0 || syms[pos].id < 0 || syms[nx].id < 0) return;
    if (const merge_table::entry* e = merges.find(syms[pos].id, syms[nx].id)) {
      heap.push_back({e->rank, pos, syms[pos].id, syms[nx].id, e->merged});
      std::push_heap(heap.begin(), heap.end(), pops_later{});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), pops_later{});
    const candidate c = heap.back();
    heap.pop_back();
    symbol& l = syms[c.pos];
    if (l.id != c.left || l.next < 0) continue;
    symbol& r = syms[l.next];
    if (r.id != c.right) continue;
    l.id = c.merged;
    r.id = -2;
    l.next = r.next;
    if (l.next >= 0) syms[l.next].prev = c.pos;
    if (l.prev >= 0) consider(l.prev);
    consider(c.pos);
  }

  for (int32_t i = 0; i >= 0 && i < n; i = syms[i].next)
    if (syms[i].id >= 0) out.push_back(syms[i].id);
}

}  // namespace troupe
