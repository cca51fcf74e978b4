// unicode: the UTF-8 and Unicode pieces tokenizers need: decoding, lossy repair of invalid
// UTF-8, NFC normalization, and GPT-2's byte <-> character table.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace troupe::unicode {

inline constexpr uint32_t replacement_char = 0xFFFD;

// Length of the sequence a lead byte starts (1 for a stray continuation or invalid byte).
inline size_t utf8_seq_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  if (lead >= 0xC0) return 2;
  return 1;
}

// Decodes the code point at s[i] and advances i; s must be valid UTF-8.
inline uint32_t next_cp(std::string_view s, size_t& i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) { ++i; return b0; }
  const size_t n = utf8_seq_len(b0);
  uint32_t cp = b0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp);

bool is_valid_utf8(std::string_view s);

// Appends bytes to out with every invalid sequence replaced by U+FFFD, one per maximal
// invalid subpart (as Rust's from_utf8_lossy and WHATWG do). When final is false an
// incomplete sequence at the end is held back; returns the number of bytes consumed.
size_t append_utf8_lossy(std::string& out, std::string_view bytes, bool final);

inline std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  append_utf8_lossy(out, s, true);
  return out;
}

// Canonical composition (NFC) of valid UTF-8; text already in NFC is returned unchanged
// after one scan.
std::string nfc(std::string_view s);

// GPT-2's byte-level alphabet: each byte stands for one printable character, so that
// byte-level BPE vocabularies can be written as text.
const std::array<uint32_t, 256>& byte_to_cp();
// The byte a character of that alphabet stands for, or -1.
int cp_to_byte(uint32_t cp);

}  // namespace troupe::unicode
