// Proves the GGUF tokenizer reader builds working tokenizers from tokenizer.ggml.* metadata
// and refuses missing or unsupported vocabularies with an error naming the file and key.
#include <cstring>
#include <functional>

#include <gtest/gtest.h>

#include "runtime/gguf.hpp"
#include "runtime/text/tokenizer.hpp"

namespace troupe {
namespace {

// GGUF metadata written by hand, independently of the reader.
class gguf_writer {
 public:
  void str(const std::string& key, const std::string& v) {
    kv(key, 8);
    put_str(v);
  }
  void u32(const std::string& key, uint32_t v) {
    kv(key, 4);
    put(v);
  }
  void boolean(const std::string& key, bool v) {
    kv(key, 7);
    put<uint8_t>(v ? 1 : 0);
  }
  void strings(const std::string& key, const std::vector<std::string>& v) {
    kv(key, 9);
    put<uint32_t>(8);
    put<uint64_t>(v.size());
    for (const auto& s : v) put_str(s);
  }
  void ints(const std::string& key, const std::vector<int32_t>& v) {
    kv(key, 9);
    put<uint32_t>(5);
    put<uint64_t>(v.size());
    for (int32_t x : v) put(x);
  }
  void floats(const std::string& key, const std::vector<float>& v) {
    kv(key, 9);
    put<uint32_t>(6);
    put<uint64_t>(v.size());
    for (float x : v) put(x);
  }
  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
    auto append = [&](const void* p, size_t n) {
      const auto* b = static_cast<const uint8_t*>(p);
      for (size_t i = 0; i < n; ++i) out.push_back(b[i]);
    };
    const uint32_t version = 3;
    const uint64_t n_tensors = 0;
    append(&version, 4);
    append(&n_tensors, 8);
    append(&n_kv_, 8);
    for (uint8_t b : body_) out.push_back(b);
    return out;
  }

 private:
  template <class T>
  void put(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    for (uint8_t x : b) body_.push_back(x);
  }
  void put_str(const std::string& s) {
    put<uint64_t>(s.size());
    for (char c : s) body_.push_back(static_cast<uint8_t>(c));
  }
  void kv(const std::string& key, uint32_t type) {
    put_str(key);
    put(type);
    ++n_kv_;
  }
  std::vector<uint8_t> body_;
  uint64_t n_kv_ = 0;
};

const std::string space = "\xE2\x96\x81";

// A SentencePiece vocabulary: <unk> <s> </s>, 256 byte pieces, then ▁ a b ▁a ab ▁ab.
void write_spm(gguf_writer& w, const std::function<void(std::vector<std::string>&, std::vector<float>&,
                                                        std::vector<int32_t>&)>& edit = {}) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    tokens.push_back(name);
    scores.push_back(0);
    types.push_back(6);
  }
  const std::vector<std::pair<std::string, float>> pieces = {
      {space, -1}, {"a", -2}, {"b", -3}, {space + "a", -4}, {"ab", -5}, {space + "ab", -6}};
  for (const auto& [t, s] : pieces) {
    tokens.push_back(t);
    scores.push_back(s);
    types.push_back(1);
  }
  if (edit) edit(tokens, scores, types);
  w.str("tokenizer.ggml.model", "llama");
  w.strings("tokenizer.ggml.tokens", tokens);
  w.floats("tokenizer.ggml.scores", scores);
  w.ints("tokenizer.ggml.token_type", types);
  w.u32("tokenizer.ggml.bos_token_id", 1);
  w.u32("tokenizer.ggml.eos_token_id", 2);
}

// A byte-level BPE vocabulary: the printable bytes as themselves plus Ġ, and merges.
void write_gpt2(gguf_writer& w, const std::string& pre, const std::vector<std::string>& extra_merges = {}) {
  std::vector<std::string> tokens;
  for (char c = '!'; c <= '~'; ++c) tokens.emplace_back(1, c);
  tokens.push_back("\xC4\xA0");  // Ġ
  tokens.push_back("ab");
  tokens.push_back("\xC4\xA0" "ab");
  tokens.push_back("<|endoftext|>");
  std::vector<int32_t> types(tokens.size(), 1);
  types.back() = 3;
  std::vector<std::string> merges = {"a b", "\xC4\xA0 ab"};
  merges.insert(merges.end(), extra_merges.begin(), extra_merges.end());
  w.str("tokenizer.ggml.model", "gpt2");
  if (!pre.empty()) w.str("tokenizer.ggml.pre", pre);
  w.strings("tokenizer.ggml.tokens", tokens);
  w.ints("tokenizer.ggml.token_type", types);
  w.strings("tokenizer.ggml.merges", merges);
  w.u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tokens.size() - 1));
}

result<tokenizer> load(const gguf_writer& w, std::vector<uint8_t>& keep) {
  keep = w.bytes();
  auto f = gguf_file::parse(keep, "test.gguf");
  if (!f) return f.err();
  return tokenizer::from_gguf(*f);
}

TEST(tokenizer_load_gguf, builds_a_sentencepiece_tokenizer_from_pieces_and_scores) {
  gguf_writer w;
  write_spm(w);
  std::vector<uint8_t> keep;
  auto tok = load(w, keep);
  ASSERT_TRUE(tok.ok()) << tok.message();
  const token_id sp_ab = *tok->find_token(space + "ab"), sp = *tok->find_token(space);
  EXPECT_EQ(tok->encode("ab", false, false), std::vector<token_id>{sp_ab});
  EXPECT_EQ(tok->encode("ab", true, false), (std::vector<token_id>{1, sp_ab}));  // adds BOS by default
  // "c" has no piece: byte fallback, <0x63> is id 3 + 0x63.
  EXPECT_EQ(tok->encode("ab c", false, false), (std::vector<token_id>{sp_ab, sp, 3 + 'c'}));
  EXPECT_EQ(tok->decode(tok->encode("ab c", true, false), true), "ab c");
  EXPECT_EQ(tok->token_bytes(3 + 'c'), "c");
  EXPECT_TRUE(tok->is_special(0));  // <unk>
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_EQ(tok->stop_ids(), std::vector<token_id>{2});
}

TEST(tokenizer_load_gguf, honours_add_bos_token_and_add_space_prefix) {
  gguf_writer w;
  write_spm(w);
  w.boolean("tokenizer.ggml.add_bos_token", false);
  w.boolean("tokenizer.ggml.add_eos_token", true);
  w.boolean("tokenizer.ggml.add_space_prefix", false);
  std::vector<uint8_t> keep;
  auto tok = load(w, keep);
  ASSERT_TRUE(tok.ok()) << tok.message();
  const token_id ab = *tok->find_token("ab");
  EXPECT_EQ(tok->encode("ab", true, false), (std::vector<token_id>{ab, 2}));
  EXPECT_EQ(tok->decode(tok->encode(" ab", false, false), true), " ab");  // nothing to strip
}

TEST(tokenizer_load_gguf, builds_a_byte_level_tokenizer_from_merges) {
  gguf_writer w;
  write_gpt2(w, "gpt-2");
  std::vector<uint8_t> keep;
  auto tok = load(w, keep);
  ASSERT_TRUE(tok.ok()) << tok.message();
  const token_id sp_ab = *tok->find_token("\xC4\xA0" "ab"), ab = *tok->find_token("ab");
  EXPECT_EQ(tok->encode("ab ab", false, false), (std::vector<token_id>{ab, sp_ab}));
  EXPECT_EQ(tok->decode(std::vector<token_id>{ab, sp_ab}, true), "ab ab");
  const token_id eot = *tok->find_token("<|endoftext|>");
  EXPECT_EQ(tok->encode("ab<|endoftext|>", false, true), (std::vector<token_id>{ab, eot}));
  EXPECT_EQ(tok->stop_ids(), std::vector<token_id>{eot});
  EXPECT_FALSE(tok->bos_id().has_value());
}

// GGUF strings may hold any bytes; an entry that is not UTF-8 decodes as its bytes.
TEST(tokenizer_load_gguf, entries_that_are_not_utf8_decode_as_their_bytes) {
  gguf_writer w;
  w.str("tokenizer.ggml.model", "gpt2");
  w.str("tokenizer.ggml.pre", "llama-bpe");
  w.strings("tokenizer.ggml.tokens", {"a", "b", "ab", "\xE2", "<|begin_of_text|>"});
  w.ints("tokenizer.ggml.token_type", {1, 1, 1, 1, 3});
  w.strings("tokenizer.ggml.merges", {"a b"});
  w.u32("tokenizer.ggml.bos_token_id", 4);
  std::vector<uint8_t> keep;
  auto tok = load(w, keep);
  ASSERT_TRUE(tok.ok()) << tok.message();
  EXPECT_EQ(tok->token_bytes(3), "\xE2");
  EXPECT_EQ(tok->decode(std::vector<token_id>{2, 3}, true), "ab\xEF\xBF\xBD");
  // llama-bpe adds BOS unless the file says otherwise.
  EXPECT_EQ(tok->encode("ab", true, false), (std::vector<token_id>{4, 2}));
}

void expect_error(const result<tokenizer>& r, const std::vector<std::string>& parts) {
  ASSERT_FALSE(r.ok());
  for (const std::string& p : parts) EXPECT_NE(r.message().find(p), std::string::npos) << r.message();
}

TEST(tokenizer_load_gguf, refuses_missing_and_unsupported_vocabularies) {
  std::vector<uint8_t> keep;
  {
    gguf_writer w;
    w.str("general.architecture", "llama");
    expect_error(load(w, keep), {"test.gguf", "tokenizer.ggml.model", "missing"});
  }
  for (const auto& [model, words] : std::vector<std::pair<std::string, std::string>>{
           {"bert", "WordPiece"}, {"t5", "Unigram"}, {"rwkv", "not supported"}}) {
    gguf_writer w;
    w.str("tokenizer.ggml.model", model);
    expect_error(load(w, keep), {"test.gguf", "tokenizer.ggml.model", words});
  }
  {
    gguf_writer w;
    w.str("tokenizer.ggml.model", "llama");
    expect_error(load(w, keep), {"test.gguf", "tokenizer.ggml.tokens", "missing"});
  }
  {
    gguf_writer w;
    w.str("tokenizer.ggml.model", "gpt2");
    w.ints("tokenizer.ggml.tokens", {1, 2});
    expect_error(load(w, keep), {"tokenizer.ggml.tokens", "array of strings"});
  }
  {
    gguf_writer w;
    write_spm(w, [](auto&, auto& scores, auto&) { scores.pop_back(); });
    expect_error(load(w, keep), {"tokenizer.ggml.scores", "entries"});
  }
  {
    gguf_writer w;
    write_spm(w, [](auto&, auto&, auto& types) { types.pop_back(); });
    expect_error(load(w, keep), {"tokenizer.ggml.token_type", "entries"});
  }
  {
    gguf_writer w;
    w.str("tokenizer.ggml.model", "llama");
    w.strings("tokenizer.ggml.tokens", {"<unk>", "a"});
    expect_error(load(w, keep), {"tokenizer.ggml.scores", "missing"});
  }
  {
    gguf_writer w;
    write_spm(w);
    w.u32("tokenizer.ggml.unknown_token_id", 100000);
    expect_error(load(w, keep), {"tokenizer.ggml.unknown_token_id", "outside the vocabulary"});
  }
  {
    gguf_writer w;
    w.str("tokenizer.ggml.model", "llama");
    w.strings("tokenizer.ggml.tokens", {"<unk>", "a"});
    w.floats("tokenizer.ggml.scores", {0, 0});
    expect_error(load(w, keep), {"tokenizer.ggml.bos_token_id", "adds BOS"});
  }
}

TEST(tokenizer_load_gguf, refuses_bad_byte_level_metadata) {
  std::vector<uint8_t> keep;
  {
    gguf_writer w;
    write_gpt2(w, "");
    expect_error(load(w, keep), {"test.gguf", "tokenizer.ggml.pre", "missing"});
  }
  {
    gguf_writer w;
    write_gpt2(w, "klingon");
    expect_error(load(w, keep), {"tokenizer.ggml.pre", "klingon"});
  }
  {
    gguf_writer w;
    write_gpt2(w, "qwen2", {"x yz"});
    expect_error(load(w, keep), {"tokenizer.ggml.merges", "entry 2", "not in the vocabulary"});
  }
  {
    gguf_writer w;
    write_gpt2(w, "qwen2", {"nospace"});
    expect_error(load(w, keep), {"tokenizer.ggml.merges", "entry 2"});
  }
  {
    gguf_writer w;
    w.str("tokenizer.ggml.model", "gpt2");
    w.str("tokenizer.ggml.pre", "gpt-2");
    w.strings("tokenizer.ggml.tokens", {"a", "b"});
    expect_error(load(w, keep), {"tokenizer.ggml.merges", "missing"});
  }
}

}  // namespace
}  // namespace troupe
