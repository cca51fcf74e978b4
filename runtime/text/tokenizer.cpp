#include "runtime/text/tokenizer.hpp"

#include <algorithm>

#include <xxhash.h>

#include "runtime/text/tokenizer_impl.hpp"
#include "runtime/text/unicode.hpp"

namespace troupe {

// ---- merge_table

void merge_table::reserve(size_t n_merges) {
  size_t cap = 16;
  int bits = 4;
  while (cap < n_merges * 2) {
    cap <<= 1;
    ++bits;
  }
  slots_.assign(cap, entry{empty_key, 0, 0});
  mask_ = cap - 1;
  shift_ = 64 - bits;
  size_ = 0;
}

void merge_table::insert(token_id left, token_id right, int32_t rank, token_id merged) {
  if ((size_ + 1) * 2 > slots_.size()) {
    // Grow: rehash what is there into a table twice the size.
    std::vector<entry> old;
    old.swap(slots_);
    reserve(std::max<size_t>(16, old.size()));
    for (const entry& e : old)
      if (e.key != empty_key) insert(static_cast<token_id>(e.key >> 32), static_cast<token_id>(e.key & 0xFFFFFFFF),
                                     e.rank, e.merged);
  }
  const uint64_t key = make_key(left, right);
  for (size_t i = hash(key);; i = (i + 1) & mask_) {
    entry& e = slots_[i];
    if (e.key == key) return;  // a repeated merge keeps its first rank
    if (e.key == empty_key) {
      e = entry{key, rank, merged};
      ++size_;
      return;
    }
  }
}

// ---- string_index

void string_index::build(const std::vector<std::string>& keys, const std::vector<token_id>& ids) {
  keys_ = &keys;
  size_t cap = 16;
  while (cap < ids.size() * 2) cap <<= 1;
  slots_.assign(cap, slot{0, -1});
  mask_ = cap - 1;
  for (token_id id : ids) {
    const std::string& k = keys[id];
    const uint64_t h = XXH3_64bits(k.data(), k.size());
    const auto tag = static_cast<uint32_t>(h >> 32);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      slot& s = slots_[i];
      if (s.id < 0) {
        s = slot{tag, id};
        break;
      }
      if (s.tag == tag && keys[s.id] == k) break;  // a duplicate: the first stays
    }
  }
}

token_id string_index::find(std::string_view k) const {
  if (slots_.empty()) return -1;
  const uint64_t h = XXH3_64bits(k.data(), k.size());
  const auto tag = static_cast<uint32_t>(h >> 32);
  for (size_t i = h & mask_;; i = (i + 1) & mask_) {
    const slot& s = slots_[i];
    if (s.id < 0) return -1;
    if (s.tag == tag && (*keys_)[s.id] == k) return s.id;
  }
}

// ---- impl: indexes built once the entries are in

void tokenizer::impl::resize(size_t n) {
  text.resize(n);
  bytes.resize(n);
  kind.resize(n, token_kind::normal);
  present.resize(n, 0);
}

namespace {

// End-of-turn tokens of the model families troupe serves: generation stops at any of them.
constexpr std::string_view end_of_turn_texts[] = {
    "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<|endoftext|>", "<|end_of_text|>",
    "<end_of_turn>", "<|return|>", "<|call|>", "<EOT>", "<｜end▁of▁sentence｜>",
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  if (from.empty() || s.find(from) == std::string::npos) return;
  std::string r;
  r.reserve(s.size() + s.size() / 4);
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size())
    r.append(s, pos, hit - pos).append(to);
  r.append(s, pos, std::string::npos);
  s = std::move(r);
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  const int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

void tokenizer::impl::build_index() {
  const size_t n = text.size();

  // Raw bytes of each entry. Added and control tokens decode as written.
  for (size_t i = 0; i < n; ++i) {
    if (!present[i]) continue;
    const std::string& t = text[i];
    std::string& b = bytes[i];
    b.clear();
    if (kind[i] == token_kind::byte) {
      const int v = parse_byte_token(t);
      if (v >= 0) b.push_back(static_cast<char>(v));
      else b = t;
    } else if (kind[i] != token_kind::normal || !unicode::is_valid_utf8(t)) {
      b = t;  // a GGUF string may be any bytes: those stand for themselves
    } else if (decode_byte_level) {
      for (size_t k = 0; k < t.size();) {
        const size_t start = k;
        const int v = unicode::cp_to_byte(unicode::next_cp(t, k));
        if (v >= 0) b.push_back(static_cast<char>(v));
        else b.append(t, start, k - start);  // not of the byte alphabet: keep the character
      }
    } else {
      b = t;
      for (const auto& [from, to] : decode_replacements) replace_all(b, from, to);
    }
  }

  std::vector<token_id> all, model_entries, normal;
  all.reserve(n);
  model_entries.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (!present[i]) continue;
    const auto id = static_cast<token_id>(i);
    all.push_back(id);
    if (kind[i] == token_kind::normal || kind[i] == token_kind::user_defined) model_entries.push_back(id);
    if (byte_level && kind[i] == token_kind::normal) normal.push_back(id);
  }
  any_by_text.build(text, all);
  by_text.build(text, model_entries);
  by_bytes.build(bytes, normal);

  // The entry each byte starts as: its character of the byte alphabet, or <0xXX>.
  byte_token.fill(-1);
  for (int b = 0; b < 256; ++b) {
    if (byte_level) {
      std::string c;
      unicode::append_utf8(c, unicode::byte_to_cp()[b]);
      byte_token[b] = by_text.find(c);
    } else if (byte_fallback) {
      static constexpr char hex[] = "0123456789ABCDEF";
      const char name[] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
      byte_token[b] = any_by_text.find(std::string_view(name, 6));
    }
  }

}

void tokenizer::impl::finish() {
  // Added tokens: longest first, so that "<|im_start|>" wins over a shorter prefix of it.
  std::stable_sort(added.begin(), added.end(),
                   [](const added_token& a, const added_token& b) { return a.text.size() > b.text.size(); });
  for (auto& v : added_by_first_byte) v.clear();
  for (size_t i = 0; i < added.size(); ++i)
    if (!added[i].text.empty()) added_by_first_byte[static_cast<uint8_t>(added[i].text[0])].push_back(static_cast<uint32_t>(i));

  stop.clear();
  if (valid(eos)) stop.push_back(eos);
  for (std::string_view t : end_of_turn_texts) {
    const token_id id = any_by_text.find(t);
    if (id < 0) continue;
    if (kind[id] == token_kind::control || kind[id] == token_kind::user_defined) stop.push_back(id);
  }
  std::sort(stop.begin(), stop.end());
  stop.erase(std::unique(stop.begin(), stop.end()), stop.end());
}

// ---- encoding

// One stretch of text between added tokens: normalize, pre-tokenize, run the model.
void tokenizer::impl::encode_text(std::string_view segment, bool at_input_start, std::vector<token_id>& out) const {
  if (segment.empty()) return;
  std::string s(segment);
  for (const normalize_step& n : normalizer) {
    switch (n.kind) {
      case normalize_step::nfc: s = unicode::nfc(s); break;
      case normalize_step::prepend:
        if (!s.empty()) s.insert(0, n.to);
        break;
      case normalize_step::replace: replace_all(s, n.from, n.to); break;
    }
  }
  if (metaspace) {
    replace_all(s, " ", metaspace_replacement);
    const bool prepend = metaspace_prepend == 2 || (metaspace_prepend == 1 && at_input_start);
    if (prepend && s.compare(0, metaspace_replacement.size(), metaspace_replacement) != 0)
      s.insert(0, metaspace_replacement);
  }
  if (add_prefix_space && !s.empty() && s[0] != ' ') s.insert(0, 1, ' ');

  thread_local std::vector<text_span> pieces;
  pre_split(splits, s, pieces);
  for (const text_span& p : pieces) {
    const std::string_view piece(s.data() + p.offset, p.size);
    if (model == model_kind::bpe) encode_bpe(piece, out);
    else encode_spm(piece, out);
  }
}

std::vector<token_id> tokenizer::impl::encode(std::string_view input, bool add_special, bool parse_special) const {
  std::string repaired;
  if (!unicode::is_valid_utf8(input)) {
    // Text from a client may carry broken UTF-8; what it means is U+FFFD, as in Rust strings.
    repaired = unicode::to_valid_utf8(input);
    input = repaired;
  }
  std::vector<token_id> out;
  out.reserve(input.size() / 3 + 4);
  if (add_special) out = prefix_ids;

  size_t seg_begin = 0;
  size_t i = 0;
  while (i < input.size()) {
    const added_token* hit = nullptr;
    for (uint32_t idx : added_by_first_byte[static_cast<uint8_t>(input[i])]) {
      const added_token& a = added[idx];
      if (a.special && !parse_special) continue;
      if (input.compare(i, a.text.size(), a.text) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t seg_end = i;
    if (hit->lstrip)
      while (seg_end > seg_begin && is_space(input[seg_end - 1])) --seg_end;
    encode_text(input.substr(seg_begin, seg_end - seg_begin), seg_begin == 0, out);
    out.push_back(hit->id);
    i += hit->text.size();
    if (hit->rstrip)
      while (i < input.size() && is_space(input[i])) ++i;
    seg_begin = i;
  }
  encode_text(input.substr(seg_begin), seg_begin == 0, out);
  if (add_special) out.insert(out.end(), suffix_ids.begin(), suffix_ids.end());
  return out;
}

// ---- tokenizer

tokenizer::tokenizer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
tokenizer::tokenizer(tokenizer&&) noexcept = default;
tokenizer& tokenizer::operator=(tokenizer&&) noexcept = default;
tokenizer::~tokenizer() = default;

result<tokenizer> tokenizer::from_hf_files(const std::string& tokenizer_json, const std::string& tokenizer_config_json) {
  TROUPE_TRY(auto p, load_hf_tokenizer(tokenizer_json, tokenizer_config_json));
  return tokenizer(std::move(p));
}

result<tokenizer> tokenizer::from_gguf(const gguf_file& file) {
  TROUPE_TRY(auto p, load_gguf_tokenizer(file));
  return tokenizer(std::move(p));
}

std::vector<token_id> tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  return impl_->encode(text, add_special, parse_special);
}

std::string tokenizer::decode(std::span<const token_id> ids, bool skip_special) const {
  std::string raw;
  for (token_id id : ids) {
    if (!impl_->valid(id)) continue;
    if (skip_special && is_special(id)) continue;
    raw += impl_->bytes[id];
  }
  size_t start = 0;
  if (impl_->strip_leading_space && !raw.empty() && raw[0] == ' ') start = 1;
  std::string out;
  out.reserve(raw.size() - start);
  unicode::append_utf8_lossy(out, std::string_view(raw).substr(start), true);
  return out;
}

std::string tokenizer::token_bytes(token_id id) const { return impl_->valid(id) ? impl_->bytes[id] : std::string(); }

const std::string& tokenizer::token_text(token_id id) const {
  static const std::string none;
  return impl_->valid(id) ? impl_->text[id] : none;
}

std::optional<token_id> tokenizer::find_token(std::string_view text) const {
  const token_id id = impl_->any_by_text.find(text);
  if (id < 0) return std::nullopt;
  return id;
}

bool tokenizer::is_special(token_id id) const {
  if (!impl_->valid(id)) return false;
  const token_kind k = impl_->kind[id];
  return k == token_kind::control || k == token_kind::unknown;
}

int32_t tokenizer::n_vocab() const { return static_cast<int32_t>(impl_->text.size()); }

std::optional<token_id> tokenizer::bos_id() const {
  return impl_->valid(impl_->bos) ? std::optional<token_id>(impl_->bos) : std::nullopt;
}
std::optional<token_id> tokenizer::eos_id() const {
  return impl_->valid(impl_->eos) ? std::optional<token_id>(impl_->eos) : std::nullopt;
}
const std::vector<token_id>& tokenizer::stop_ids() const { return impl_->stop; }
std::string tokenizer::bos_text() const { return impl_->valid(impl_->bos) ? impl_->text[impl_->bos] : std::string(); }
std::string tokenizer::eos_text() const { return impl_->valid(impl_->eos) ? impl_->text[impl_->eos] : std::string(); }

// ---- detokenizer

detokenizer::detokenizer(const tokenizer& tok, bool skip_special) : tok_(&tok), skip_special_(skip_special) {}

std::string detokenizer::push(token_id id) {
  const tokenizer::impl& m = *tok_->impl_;
  if (!m.valid(id) || (skip_special_ && tok_->is_special(id))) return {};
  std::string_view piece = m.bytes[id];
  if (at_start_ && !piece.empty()) {
    // decode() drops the first byte of the whole text when it is the space the encoder added.
    if (m.strip_leading_space && piece[0] == ' ') piece.remove_prefix(1);
    at_start_ = false;
  }
  pending_.append(piece);
  std::string out;
  const size_t used = unicode::append_utf8_lossy(out, pending_, false);
  pending_.erase(0, used);
  return out;
}

std::string detokenizer::flush() {
  std::string out;
  unicode::append_utf8_lossy(out, pending_, true);
  pending_.clear();
  return out;
}

}  // namespace troupe
