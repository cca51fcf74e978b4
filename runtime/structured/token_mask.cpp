#include "runtime/structured/token_mask.hpp"

#include <algorithm>
#include <chrono>
#include <limits>
#include <numeric>

#include "runtime/text/tokenizer.hpp"

namespace troupe::structured {

namespace {
// Masks kept per grammar; past this the cache starts over (states of one schema repeat, so it
// refills with the ones in use).
constexpr size_t k_max_cache_bytes = size_t{64} << 20;
}  // namespace

vocab_index::vocab_index(const std::vector<std::string>& token_bytes, const std::vector<bool>& usable,
                         std::vector<token_id> end_ids, int64_t n_rows)
    : n_rows_(n_rows), end_ids_(std::move(end_ids)) {
  const auto n = static_cast<token_id>(std::min<int64_t>(static_cast<int64_t>(token_bytes.size()), n_rows));
  std::vector<token_id> order;
  for (token_id t = 0; t < n; ++t)
    if (usable[static_cast<size_t>(t)] && !token_bytes[static_cast<size_t>(t)].empty() && !is_end(t))
      order.push_back(t);
  std::sort(order.begin(), order.end(), [&](token_id a, token_id b) {
    return token_bytes[static_cast<size_t>(a)] < token_bytes[static_cast<size_t>(b)];
  });
  rank_.assign(static_cast<size_t>(n_rows), std::numeric_limits<uint32_t>::max());
  offsets_.push_back(0);
  std::string_view prev;
  for (token_id t : order) {
    const std::string& b = token_bytes[static_cast<size_t>(t)];
    uint32_t l = 0;
    while (l < prev.size() && l < b.size() && prev[l] == b[l]) ++l;
    rank_[static_cast<size_t>(t)] = static_cast<uint32_t>(ids_.size());
    ids_.push_back(t);
    lcp_.push_back(l);
    bytes_ += b;
    max_bytes_ = std::max(max_bytes_, static_cast<uint32_t>(b.size()));
    offsets_.push_back(static_cast<uint32_t>(bytes_.size()));
    prev = b;
  }
}

std::shared_ptr<const vocab_index> vocab_index::of(const tokenizer& tok, std::vector<token_id> end_ids, int64_t n_rows) {
  const int32_t n = tok.n_vocab();
  std::vector<std::string> bytes(static_cast<size_t>(n));
  std::vector<bool> usable(static_cast<size_t>(n));
  for (token_id t = 0; t < n; ++t) {
    usable[static_cast<size_t>(t)] = !tok.is_special(t);
    if (usable[static_cast<size_t>(t)]) bytes[static_cast<size_t>(t)] = tok.token_bytes(t);
  }
  return std::make_shared<const vocab_index>(bytes, usable, std::move(end_ids), n_rows);
}

bool vocab_index::is_end(token_id t) const {
  return std::find(end_ids_.begin(), end_ids_.end(), t) != end_ids_.end();
}

std::string_view vocab_index::bytes_of(token_id t) const {
  if (t < 0 || static_cast<size_t>(t) >= rank_.size() || rank_[static_cast<size_t>(t)] == std::numeric_limits<uint32_t>::max())
    return {};
  return sorted_bytes(rank_[static_cast<size_t>(t)]);
}

// ---- compiled grammar ------------------------------------------------------------------------

compiled_grammar::compiled_grammar(grammar g, std::shared_ptr<const vocab_index> vocab)
    : g_(std::move(g)), vocab_(std::move(vocab)) {}

std::span<const uint64_t> compiled_grammar::mask(matcher& m) {
  ++stats_.masks;
  // A mask looks at most one token ahead: states alike for that many bytes share it.
  m.state_key(key_, vocab_->max_token_bytes() + 1);
  if (auto it = cache_.find(key_); it != cache_.end()) return it->second;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<uint64_t> bits(vocab_->n_words(), 0);
  compute(m, bits);
  stats_.compute_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ++stats_.computed;
  const size_t size = bits.size() * sizeof(uint64_t) + key_.size();
  if (cache_bytes_ + size > k_max_cache_bytes) {
    cache_.clear();
    cache_bytes_ = 0;
  }
  cache_bytes_ += size;
  return cache_.emplace(key_, std::move(bits)).first->second;
}

void compiled_grammar::compute(matcher& m, std::vector<uint64_t>& bits) {
  const vocab_index& v = *vocab_;
  auto set = [&](token_id t) { bits[static_cast<size_t>(t) >> 6] |= uint64_t{1} << (t & 63); };
  const matcher::mark base = m.save();
  // marks[d]: the state after the first d bytes of the token being tried.
  std::vector<matcher::mark> marks{base};
  size_t path = 0;      // bytes of the previous token taken
  bool failed = false;  // the previous token's byte `path` was refused
  for (size_t k = 0; k < v.n_sorted(); ++k) {
    const std::string_view b = v.sorted_bytes(k);
    const size_t shared = v.shared_with_previous(k);
    if (failed && shared > path) continue;  // it starts with the refused prefix
    const size_t d = std::min(shared, path);
    m.restore(marks[d]);
    marks.resize(d + 1);
    failed = false;
    path = b.size();
    for (size_t j = d; j < b.size(); ++j) {
      if (!m.advance(static_cast<uint8_t>(b[j]))) {
        path = j;
        failed = true;
        break;
      }
      marks.push_back(m.save());
    }
    if (!failed) set(v.sorted_id(k));
  }
  m.drop(base);
  if (m.can_end())
    for (token_id t : v.end_ids())
      if (t >= 0 && t < v.n_rows()) set(t);
}

// ---- one sequence's constraint ---------------------------------------------------------------

grammar_constraint::grammar_constraint(std::shared_ptr<compiled_grammar> g) : g_(std::move(g)), m_(g_->gram()) {}

void grammar_constraint::mask_logits(std::span<float> logits) {
  const float ninf = -std::numeric_limits<float>::infinity();
  if (ended_) {
    std::fill(logits.begin(), logits.end(), ninf);
    return;
  }
  const std::span<const uint64_t> bits = mask();
  const size_t n = logits.size();
  for (size_t w = 0; w * 64 < n; ++w) {
    const uint64_t word = w < bits.size() ? bits[w] : 0;
    if (word == ~uint64_t{0}) continue;
    const size_t end = std::min(n, (w + 1) * 64);
    for (size_t i = w * 64; i < end; ++i)
      if (!((word >> (i & 63)) & 1)) logits[i] = ninf;
  }
}

bool grammar_constraint::allows(token_id t) {
  if (ended_) return false;
  if (g_->vocab().is_end(t)) return m_.can_end();
  const std::string_view b = g_->vocab().bytes_of(t);
  if (b.empty()) return false;
  const matcher::mark mk = m_.save();
  bool ok = true;
  for (char c : b)
    if (!m_.advance(static_cast<uint8_t>(c))) {
      ok = false;
      break;
    }
  m_.drop(mk);
  return ok;
}

bool grammar_constraint::accept(token_id t) {
  if (ended_) return false;
  if (g_->vocab().is_end(t)) {
    if (!m_.can_end()) return false;
    history_.push_back(m_.save());
    ended_ = true;
    return true;
  }
  const std::string_view b = g_->vocab().bytes_of(t);
  if (b.empty()) return false;
  const matcher::mark mk = m_.save();
  for (char c : b)
    if (!m_.advance(static_cast<uint8_t>(c))) {
      m_.drop(mk);
      return false;
    }
  history_.push_back(mk);
  return true;
}

bool grammar_constraint::finished() const { return ended_ || m_.terminated(); }

size_t grammar_constraint::allowed_prefix(std::span<const token_id> drafts) {
  size_t n = 0;
  while (n < drafts.size() && accept(drafts[n])) ++n;
  rollback(n);
  return n;
}

void grammar_constraint::rollback(size_t n) {
  n = std::min(n, history_.size());
  if (n == 0) return;
  const matcher::mark mk = history_[history_.size() - n];
  history_.resize(history_.size() - n);
  m_.drop(mk);
  ended_ = false;
}

}  // namespace troupe::structured
