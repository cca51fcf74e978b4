// tokenizer_impl: the vocabulary, rules and tables behind tokenizer, filled by its two loaders
// (tokenizer.json and GGUF) and read by the encoder and decoder.
#pragma once

#include <array>
#include <memory>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/text/pre_tokenizer.hpp"
#include "runtime/text/tokenizer.hpp"

namespace troupe {

// What a vocabulary entry is (GGUF's token_type numbers, Hugging Face's added-token flags).
enum class token_kind : uint8_t {
  normal,        // made by the model's merges
  control,       // special: <|im_end|>, <s>; matched in text only when parse_special
  user_defined,  // added, not special: always matched in text, never skipped
  unknown,       // <unk>: special
  byte,          // <0x0A>: byte fallback
  unused,
};

// BPE merges: (left id, right id) -> (rank, merged id), open addressing on 64-bit keys, which
// builds and looks up several times faster than std::unordered_map at 150k-280k merges.
class merge_table {
 public:
  struct entry {
    uint64_t key;
    int32_t rank;
    token_id merged;
  };
  static constexpr uint64_t empty_key = ~uint64_t{0};

  void reserve(size_t n_merges);
  // Keeps the first (lowest) rank when a pair appears twice.
  void insert(token_id left, token_id right, int32_t rank, token_id merged);
  const entry* find(token_id left, token_id right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = make_key(left, right);
    for (size_t i = hash(key);; i = (i + 1) & mask_) {
      const entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == empty_key) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static uint64_t make_key(token_id l, token_id r) {
    return (uint64_t{static_cast<uint32_t>(l)} << 32) | static_cast<uint32_t>(r);
  }
  size_t hash(uint64_t key) const { return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_); }
  std::vector<entry> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
};

// A read-only map from vocabulary strings to ids. It keeps no copy of the strings, only
// (hash tag, id) slots, so it builds and probes faster than std::unordered_map at 150k entries.
class string_index {
 public:
  // Indexes keys[id] for each id in ids; when two are equal the first stays.
  void build(const std::vector<std::string>& keys, const std::vector<token_id>& ids);
  token_id find(std::string_view s) const;  // -1 when absent

 private:
  struct slot {
    uint32_t tag;
    token_id id;  // -1: empty
  };
  const std::vector<std::string>* keys_ = nullptr;
  std::vector<slot> slots_;
  size_t mask_ = 0;
};

enum class model_kind {
  bpe,  // merges by rank (GPT-2, Llama 3, Qwen; Llama 2's tokenizer.json)
  spm,  // merges by score of the merged piece (SentencePiece BPE as GGUF "llama" stores it)
};

// A text transform applied to each stretch of text between added tokens, in order.
struct normalize_step {
  enum kind_t { nfc, prepend, replace } kind = nfc;
  std::string from, to;  // prepend: to; replace: from -> to
};

struct added_token {
  std::string text;
  token_id id = 0;
  bool special = false;  // matched only when parse_special
  bool lstrip = false, rstrip = false;  // swallow the white space on that side
};

struct tokenizer::impl {
  std::string source;  // the file, for messages

  // ---- vocabulary
  std::vector<std::string> text;   // [n_vocab] entry as written ("Ġthe", "▁the", "<0x0A>")
  std::vector<std::string> bytes;  // [n_vocab] raw bytes for decoding
  std::vector<token_kind> kind;    // [n_vocab]
  std::vector<float> score;        // [n_vocab] spm only
  std::vector<uint8_t> present;    // [n_vocab] 0 where an id has no entry
  // Model entries (normal and user-defined) by text; byte-level normal entries by raw bytes.
  string_index by_text;
  string_index by_bytes;
  // Every entry by text (find_token, merges, special tokens).
  string_index any_by_text;

  // ---- encoding rules
  model_kind model = model_kind::bpe;
  bool byte_level = false;     // BPE over GPT-2's byte alphabet
  bool byte_fallback = false;  // characters not in the vocabulary become <0xXX> tokens
  bool ignore_merges = false;  // a pre-token that is a vocabulary entry is taken whole (Llama 3)
  bool fuse_unk = false;
  token_id unk_id = -1;
  std::array<token_id, 256> byte_token{};  // byte-level: entry of each byte; byte fallback: <0xXX>
  merge_table merges;

  std::vector<normalize_step> normalizer;
  // Metaspace pre-tokenizer: spaces become replacement; prepend: 0 never, 1 first, 2 always.
  bool metaspace = false;
  std::string metaspace_replacement;
  int metaspace_prepend = 0;
  bool add_prefix_space = false;  // ByteLevel pre-tokenizer's
  std::vector<split_step> splits;

  // Added and special tokens, matched in text before anything else: longest first within
  // each first byte.
  std::vector<added_token> added;
  std::array<std::vector<uint32_t>, 256> added_by_first_byte;  // indexes into added

  std::vector<token_id> prefix_ids, suffix_ids;  // what add_special adds (BOS, EOS)

  // ---- decoding
  bool decode_byte_level = false;  // normal entries are written in GPT-2's byte alphabet
  std::vector<std::pair<std::string, std::string>> decode_replacements;  // on normal entries ("▁" -> " ")
  bool strip_leading_space = false;  // SentencePiece: drop the space the encoder prepended

  token_id bos = -1, eos = -1;
  std::vector<token_id> stop;

  // ---- set-up, called by the loaders (tokenizer_load_hf.cpp, tokenizer_load_gguf.cpp)
  void resize(size_t n);
  // The raw bytes of each entry, the text maps and the byte tables, once the entries are in.
  void build_index();
  // The added-token index and the stop ids, once added tokens and eos are known.
  void finish();

  // ---- encoding (tokenizer.cpp; the models in tokenizer_bpe.cpp and tokenizer_spm.cpp)
  std::vector<token_id> encode(std::string_view input, bool add_special, bool parse_special) const;
  void encode_text(std::string_view segment, bool at_input_start, std::vector<token_id>& out) const;
  void encode_bpe(std::string_view piece, std::vector<token_id>& out) const;
  void encode_spm(std::string_view piece, std::vector<token_id>& out) const;
  void push_bytes(std::string_view s, std::vector<token_id>& out) const;

  bool valid(token_id id) const { return id >= 0 && static_cast<size_t>(id) < text.size() && present[id]; }

  impl() = default;
  impl(const impl&) = delete;  // the indexes point into text and bytes
  impl& operator=(const impl&) = delete;
};

// The byte a "<0xXX>" entry stands for, or -1.
int parse_byte_token(std::string_view t);

// The loaders, one per file format.
[[nodiscard]] result<std::unique_ptr<tokenizer::impl>> load_hf_tokenizer(const std::string& tokenizer_json,
                                                                          const std::string& config_json);
[[nodiscard]] result<std::unique_ptr<tokenizer::impl>> load_gguf_tokenizer(const gguf_file& file);

}  // namespace troupe
