// libFuzzer target: encodes arbitrary bytes with real vocabularies (byte-level BPE and
// SentencePiece) and streams arbitrary id sequences through the detokenizer. It must never
// crash; byte-level BPE must give back the (repaired) input, and streaming must equal decode.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/tokenizer_fuzz.cpp \
//     runtime/text/tokenizer*.cpp runtime/text/pre_tokenizer.cpp runtime/text/unicode*.cpp runtime/gguf.cpp \
//     runtime/mapped_file.cpp runtime/tensor.cpp -lpcre2-8 -lxxhash -lfmt -o tokenizer_fuzz
//   TROUPE_TEST_DATA=~/.cache/troupe/testdata ./tokenizer_fuzz -max_total_time=60 -max_len=512
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/gguf.hpp"
#include "runtime/text/tokenizer.hpp"
#include "runtime/text/unicode.hpp"

namespace {

struct vocab {
  troupe::tokenizer tok;
  bool byte_level;
};

std::vector<vocab>& vocabs() {
  static std::vector<vocab> v = [] {
    const char* dir = std::getenv("TROUPE_TEST_DATA");
    const std::string base = std::string(dir ? dir : "") + "/vocab/ggml-vocab-";
    std::vector<vocab> out;
    for (const auto& [name, byte_level] : {std::pair{"llama-bpe", true}, std::pair{"llama-spm", false}}) {
      auto f = troupe::gguf_file::open(base + name + ".gguf");
      if (!f) {
        std::fprintf(stderr, "%s\n", f.message().c_str());
        std::abort();
      }
      auto t = troupe::tokenizer::from_gguf(*f);
      if (!t) std::abort();
      out.push_back({std::move(t).value(), byte_level});
    }
    return out;
  }();
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const bool parse_special = data[0] & 1;
  for (const vocab& v : vocabs()) {
    const bool add_special = data[0] & 2;
    const auto ids = v.tok.encode(text, add_special, parse_special);
    const std::string back = v.tok.decode(ids, false);
    if (!troupe::unicode::is_valid_utf8(back)) std::abort();
    // Byte-level BPE loses nothing (special tokens written in the text decode as written).
    const std::string expected = (add_special ? v.tok.bos_text() : "") + troupe::unicode::to_valid_utf8(text);
    if (v.byte_level && back != expected) std::abort();

    // The input read as little-endian 16-bit ids, streamed one at a time.
    std::vector<troupe::token_id> stream;
    for (size_t i = 1; i + 1 < size; i += 2)
      stream.push_back(static_cast<troupe::token_id>(data[i] | (data[i + 1] << 8)) % (v.tok.n_vocab() + 8) - 4);
    const bool skip = data[0] & 4;
    troupe::detokenizer d(v.tok, skip);
    std::string streamed;
    for (troupe::token_id id : stream) {
      const std::string piece = d.push(id);
      if (!troupe::unicode::is_valid_utf8(piece)) std::abort();
      streamed += piece;
    }
    streamed += d.flush();
    if (streamed != v.tok.decode(stream, skip)) std::abort();
  }
  return 0;
}
