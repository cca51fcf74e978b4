// tokenizer: text <-> token ids for the vocabularies troupe serves: byte-level BPE (GPT-2,
// Llama 3, Qwen2/3) and SentencePiece-style BPE with byte fallback (Llama 2), read from a
// Hugging Face tokenizer.json or from a GGUF file's metadata.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

class gguf_file;
using token_id = int32_t;

class tokenizer {
 public:
  // tokenizer_config_json may be empty; when given it supplies bos/eos tokens and add_bos_token.
  [[nodiscard]] static result<tokenizer> from_hf_files(const std::string& tokenizer_json,
                                                       const std::string& tokenizer_config_json);
  [[nodiscard]] static result<tokenizer> from_gguf(const gguf_file& file);

  tokenizer(tokenizer&&) noexcept;
  tokenizer& operator=(tokenizer&&) noexcept;
  ~tokenizer();

  // add_special: add what the model's post-processor adds (BOS for Llama) when it asks for it.
  // parse_special: recognise special and added tokens written in the text ("<|im_start|>").
  std::vector<token_id> encode(std::string_view text, bool add_special, bool parse_special) const;
  std::string decode(std::span<const token_id> ids, bool skip_special) const;

  // The raw bytes token id stands for (may be part of a UTF-8 sequence).
  std::string token_bytes(token_id id) const;
  // The vocabulary entry of id as written in the vocabulary ("Ġthe", "▁the", "<0x0A>").
  const std::string& token_text(token_id id) const;
  std::optional<token_id> find_token(std::string_view text) const;
  bool is_special(token_id id) const;  // control tokens: skipped by decode(skip_special)

  int32_t n_vocab() const;
  std::optional<token_id> bos_id() const;
  std::optional<token_id> eos_id() const;
  // Every id that ends generation: eos plus end-of-turn tokens (<|eot_id|>, <|im_end|>, ...).
  const std::vector<token_id>& stop_ids() const;
  // The text of BOS and EOS, as chat templates see them ("" when the model has none).
  std::string bos_text() const;
  std::string eos_text() const;

  struct impl;

 private:
  friend class detokenizer;
  explicit tokenizer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

// detokenizer: turns a stream of ids into text for streaming, emitting only complete UTF-8
// sequences. The concatenation of every push() and the final flush() equals
// tokenizer::decode of all the ids.
class detokenizer {
 public:
  explicit detokenizer(const tokenizer& tok, bool skip_special = true);
  std::string push(token_id id);
  // What is held back at the end; an incomplete UTF-8 tail becomes U+FFFD.
  std::string flush();

 private:
  const tokenizer* tok_;
  bool skip_special_;
  bool at_start_ = true;  // nothing decoded yet: SentencePiece's leading space is still to drop
  std::string pending_;   // bytes of an unfinished UTF-8 sequence, held back
};

}  // namespace troupe
