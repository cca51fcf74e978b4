// tokenizer_regex: the pre-tokenizer patterns of the byte-level BPE families, as their
// tokenizer.json files write them, and the GGUF tokenizer.ggml.pre names that stand for them.
#pragma once

#include <string_view>

namespace troupe {

// GPT-2's pattern; also what a ByteLevel pre-tokenizer with use_regex splits by.
inline constexpr std::string_view gpt2_regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Llama 3: case-insensitive contractions, numbers in groups of up to three.
inline constexpr std::string_view llama3_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Qwen2 and Qwen3: as Llama 3 but every digit alone.
inline constexpr std::string_view qwen2_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct pre_tokenizer_preset {
  std::string_view name;  // tokenizer.ggml.pre
  std::string_view regex;
  bool ignore_merges;  // Llama 3's tokenizer.json sets model.ignore_merges
  bool nfc;            // Qwen's tokenizer.json normalizes to NFC
  bool add_bos;        // llama.cpp's default when the file has no tokenizer.ggml.add_bos_token
};

inline const pre_tokenizer_preset* find_pre_tokenizer_preset(std::string_view name) {
  static constexpr pre_tokenizer_preset presets[] = {
      {"gpt-2", gpt2_regex, false, false, false},
      {"llama-bpe", llama3_regex, true, false, true},
      {"llama3", llama3_regex, true, false, true},
      {"llama-v3", llama3_regex, true, false, true},
      {"qwen2", qwen2_regex, false, true, false},
      {"deepseek-r1-qwen", qwen2_regex, false, true, false},
  };
  for (const auto& p : presets)
    if (p.name == name) return &p;
  return nullptr;
}

}  // namespace troupe
