// Proves the tokenizer.json reader takes the forms real files use (GPT-2's ByteLevel regex,
// Metaspace, TemplateProcessing, added tokens with lstrip/rstrip, Digits) and refuses what it
// cannot read with an error naming the file and the field.
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/gguf.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/runtime/text/tokenizer_vectors.hpp"

namespace troupe {
namespace {
using json = nlohmann::ordered_json;

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// A small byte-level BPE: the 256 byte characters, a few merges, two added tokens.
json tiny_byte_level() {
  json vocab = json::object();
  const std::string alphabet =
      "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
  int id = 0;
  for (char c : alphabet) vocab[std::string(1, c)] = id++;
  vocab["\xC4\xA0"] = id++;  // Ġ, the space
  vocab["\xC4\x8A"] = id++;  // Ċ, the newline
  vocab["he"] = id++;
  vocab["ll"] = id++;
  vocab["hell"] = id++;
  vocab["hello"] = id++;
  vocab["\xC4\xA0w"] = id++;
  vocab["12"] = id++;
  json j = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 200}, {"content", "<|end|>"}, {"special", true}},
        {{"id", 201}, {"content", "<tool>"}, {"special", false}, {"lstrip", true}, {"rstrip", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Digits"}, {"individual_digits", true}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}, {{"SpecialToken", {{"id", "<|end|>"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"<|end|>", {{"id", "<|end|>"}, {"ids", {200}}, {"tokens", {"<|end|>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"h e", "l l", "he ll", "hell o", "\xC4\xA0 w", "1 2"}}}},
  };
  return j;
}

result<tokenizer> load(const json& j, const std::string& name, const std::string& config = "") {
  return tokenizer::from_hf_files(write_file(name, j.dump()), config.empty() ? "" : write_file(name + ".config", config));
}

TEST(tokenizer_load_hf, gpt2_json_from_openai_files_passes_the_gpt2_vectors) {
  auto tok = tokenizer::from_hf_files(testing::write_gpt2_tokenizer_json(), "");
  ASSERT_TRUE(tok.ok()) << tok.message();
  auto f = gguf_file::open(testing::vocab_path("gpt-2"));
  ASSERT_TRUE(f.ok()) << f.message();
  auto gg = tokenizer::from_gguf(*f);
  ASSERT_TRUE(gg.ok()) << gg.message();
  ASSERT_EQ(tok->n_vocab(), gg->n_vocab());
  for (token_id id = 0; id < tok->n_vocab(); ++id) ASSERT_EQ(tok->token_text(id), gg->token_text(id)) << id;
  size_t pass = 0;
  const auto vs = testing::read_vocab_vectors("gpt-2");
  for (const auto& v : vs) {
    const auto ids = tok->encode(v.text, false, false);
    EXPECT_EQ(ids, v.ids) << v.text;
    pass += ids == v.ids;
    EXPECT_EQ(tok->decode(ids, true), v.text);
  }
  std::cout << "[ vectors  ] gpt2 tokenizer.json from OpenAI's files: " << pass << "/" << vs.size() << " pass\n";
}

// The Metaspace form puts no ▁ before text that already starts with a space (Hugging Face's
// Metaspace checks for it), where the legacy form and llama.cpp add one regardless: the
// vectors hold for every other input, and those inputs encode as the legacy form encodes
// them without their first space.
TEST(tokenizer_load_hf, metaspace_form_of_llama2_passes_the_llama_spm_vectors) {
  auto tok = tokenizer::from_hf_files(testing::write_llama2_tokenizer_json(testing::spm_json_style::metaspace), "");
  ASSERT_TRUE(tok.ok()) << tok.message();
  auto legacy = tokenizer::from_hf_files(testing::write_llama2_tokenizer_json(testing::spm_json_style::legacy), "");
  ASSERT_TRUE(legacy.ok()) << legacy.message();
  size_t pass = 0, n_space = 0;
  const auto vs = testing::read_vocab_vectors("llama-spm");
  for (const auto& v : vs) {
    const auto ids = tok->encode(v.text, false, false);
    if (!v.text.empty() && v.text[0] == ' ') {
      ++n_space;
      const auto expected = v.text == " " ? std::vector<token_id>{*tok->find_token("\xE2\x96\x81")}
                                          : legacy->encode(v.text.substr(1), false, false);
      EXPECT_EQ(ids, expected) << v.text;
      EXPECT_EQ(tok->decode(ids, true), v.text.substr(1));
      continue;
    }
    EXPECT_EQ(ids, v.ids) << v.text;
    pass += ids == v.ids;
    EXPECT_EQ(tok->decode(ids, true), v.text);
  }
  EXPECT_EQ(pass + n_space, vs.size());
  std::cout << "[ vectors  ] llama2 tokenizer.json, Metaspace form: " << pass << "/" << vs.size() - n_space
            << " pass (" << n_space << " inputs start with a space)\n";
  // prepend_scheme "first": only the text at the very start gets the ▁, not text after <s>.
  const auto hello = tok->find_token("\xE2\x96\x81Hello");
  const auto bare = tok->find_token("Hello");
  ASSERT_TRUE(hello && bare);
  EXPECT_EQ(tok->encode("Hello<s>Hello", false, true), (std::vector<token_id>{*hello, 1, *bare}));
  // The post-processor's template adds <s>.
  EXPECT_EQ(tok->encode("Hello", true, false), (std::vector<token_id>{1, *hello}));
}

TEST(tokenizer_load_hf, reads_template_digits_and_added_token_flags) {
  auto tok = load(tiny_byte_level(), "tiny.json");
  ASSERT_TRUE(tok.ok()) << tok.message();
  const token_id hello = *tok->find_token("hello"), space_w = *tok->find_token("\xC4\xA0w");
  EXPECT_EQ(tok->encode("hello", false, false), std::vector<token_id>{hello});
  EXPECT_EQ(tok->encode("hello wo", false, false), (std::vector<token_id>{hello, space_w, *tok->find_token("o")}));
  // The template appends <|end|>.
  EXPECT_EQ(tok->encode("hello", true, false), (std::vector<token_id>{hello, 200}));
  // Digits split every digit before the byte-level regex would group them (and merge "12").
  EXPECT_EQ(tok->encode("123", false, false),
            (std::vector<token_id>{*tok->find_token("1"), *tok->find_token("2"), *tok->find_token("3")}));
  json no_digits = tiny_byte_level();
  no_digits["pre_tokenizer"]["pretokenizers"].erase(0);
  auto grouped = load(no_digits, "tiny-no-digits.json");
  ASSERT_TRUE(grouped.ok()) << grouped.message();
  EXPECT_EQ(grouped->encode("123", false, false), (std::vector<token_id>{*tok->find_token("12"), *tok->find_token("3")}));
  // <tool> is not special: matched without parse_special, and it swallows the spaces around it.
  EXPECT_EQ(tok->encode("hello  <tool>  hello", false, false), (std::vector<token_id>{hello, 201, hello}));
  EXPECT_EQ(tok->decode(tok->encode("hello<|end|>", false, true), true), "hello");
  EXPECT_EQ(tok->decode(tok->encode("hello<|end|>", false, false), true), "hello<|end|>");
  EXPECT_TRUE(tok->is_special(200));
  EXPECT_FALSE(tok->is_special(201));
  EXPECT_EQ(tok->n_vocab(), 202);
  EXPECT_EQ(tok->token_text(150), "");  // ids with no entry
  EXPECT_EQ(tok->decode(std::vector<token_id>{150, -3, 9999, hello}, false), "hello");
}

TEST(tokenizer_load_hf, tokenizer_config_sets_bos_eos_and_overrides_the_template) {
  const std::string config = R"({"bos_token": {"content": "<|end|>"}, "eos_token": "<|end|>",
                                 "add_bos_token": true, "add_eos_token": false})";
  auto tok = load(tiny_byte_level(), "tiny-config.json", config);
  ASSERT_TRUE(tok.ok()) << tok.message();
  EXPECT_EQ(tok->bos_id(), 200);
  EXPECT_EQ(tok->eos_text(), "<|end|>");
  const token_id hello = *tok->find_token("hello");
  EXPECT_EQ(tok->encode("hello", true, false), (std::vector<token_id>{200, hello}));
  EXPECT_EQ(tok->stop_ids(), (std::vector<token_id>{200}));
}

// ---- errors: each names the file and the field

void expect_error(const result<tokenizer>& r, const std::vector<std::string>& parts) {
  ASSERT_FALSE(r.ok());
  for (const std::string& p : parts) EXPECT_NE(r.message().find(p), std::string::npos) << r.message();
}

TEST(tokenizer_load_hf, refuses_malformed_and_missing_files) {
  const std::string bad = write_file("bad.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0");
  expect_error(tokenizer::from_hf_files(bad, ""), {bad, "not valid JSON"});
  const std::string missing = ::testing::TempDir() + "/no-such-tokenizer.json";
  expect_error(tokenizer::from_hf_files(missing, ""), {missing});
  expect_error(tokenizer::from_hf_files(write_file("array.json", "[1, 2]"), ""), {"array.json", "not a JSON object"});
  expect_error(tokenizer::from_hf_files(write_file("nomodel.json", "{}"), ""), {"nomodel.json", "model"});
}

TEST(tokenizer_load_hf, refuses_wordpiece_and_unigram_models) {
  for (const char* type : {"WordPiece", "Unigram", "WordLevel"}) {
    json j = tiny_byte_level();
    j["model"]["type"] = type;
    expect_error(load(j, std::string(type) + ".json"), {std::string(type) + ".json", "model.type", type});
  }
}

TEST(tokenizer_load_hf, refuses_bad_fields_naming_them) {
  struct bad_case {
    const char* name;
    void (*edit)(json&);
    std::vector<std::string> parts;
  };
  const bad_case cases[] = {
      {"novocab", [](json& j) { j["model"].erase("vocab"); }, {"model.vocab"}},
      {"vocabid", [](json& j) { j["model"]["vocab"]["x"] = "seven"; }, {"model.vocab", "'x'"}},
      {"negid", [](json& j) { j["model"]["vocab"]["x"] = -4; }, {"model.vocab"}},
      {"merge", [](json& j) { j["model"]["merges"].push_back("q zz"); }, {"model.merges[6]", "not in the vocabulary"}},
      {"mergeform", [](json& j) { j["model"]["merges"].push_back(7); }, {"model.merges[6]"}},
      {"nomerges", [](json& j) { j["model"].erase("merges"); }, {"model.merges"}},
      {"added", [](json& j) { j["added_tokens"].push_back({{"id", "x"}}); }, {"added_tokens[2]"}},
      {"normalizer", [](json& j) { j["normalizer"] = {{"type", "NFKD"}}; }, {"normalizer.type", "NFKD"}},
      {"prenorm",
       [](json& j) { j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Lowercase"}}}}}; },
       {"normalizer.normalizers[0].type", "Lowercase"}},
      {"regex",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Split"}, {"pattern", {{"Regex", "(a"}}}, {"behavior", "Isolated"}}; },
       {"pre_tokenizer.pretokenizers[0].pattern", "does not compile"}},
      {"behavior",
       [](json& j) { j["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Split"}, {"pattern", {{"String", "x"}}}, {"behavior", "Sideways"}}; },
       {"pre_tokenizer.pretokenizers[0].behavior", "Sideways"}},
      {"pretype", [](json& j) { j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}}; }, {"pre_tokenizer.type", "BertPreTokenizer"}},
      {"decoder", [](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }, {"decoder.type", "WordPiece"}},
      {"mixed", [](json& j) { j["decoder"] = nullptr; }, {"decoder", "ByteLevel"}},
      {"post", [](json& j) { j["post_processor"] = {{"type", "BertProcessing"}}; }, {"post_processor.type", "BertProcessing"}},
      {"template",
       [](json& j) { j["post_processor"]["special_tokens"]["<|end|>"]["ids"] = {5000}; },
       {"post_processor.special_tokens", "outside the vocabulary"}},
      {"prefix", [](json& j) { j["model"]["continuing_subword_prefix"] = "##"; }, {"model.continuing_subword_prefix"}},
      {"unk", [](json& j) { j["model"]["unk_token"] = "<nope>"; }, {"model.unk_token", "<nope>"}},
      {"typed", [](json& j) { j["added_tokens"][0]["special"] = "yes please"; j["model"]["vocab"] = 3; }, {"model.vocab"}},
  };
  for (const bad_case& c : cases) {
    json j = tiny_byte_level();
    c.edit(j);
    std::vector<std::string> parts = c.parts;
    parts.push_back(std::string(c.name) + ".json");
    expect_error(load(j, std::string(c.name) + ".json"), parts);
  }
}

TEST(tokenizer_load_hf, refuses_config_naming_unknown_tokens) {
  const std::string config = write_file("badconfig.json", R"({"bos_token": "<nope>"})");
  const std::string tj = write_file("tiny-for-config.json", tiny_byte_level().dump());
  expect_error(tokenizer::from_hf_files(tj, config), {"badconfig.json", "bos_token", "<nope>"});
  const std::string no_bos = write_file("nobos.json", R"({"add_bos_token": true})");
  expect_error(tokenizer::from_hf_files(tj, no_bos), {"nobos.json", "add_bos_token"});
  const std::string broken = write_file("brokenconfig.json", "{");
  expect_error(tokenizer::from_hf_files(tj, broken), {"brokenconfig.json", "not valid JSON"});
}

}  // namespace
}  // namespace troupe
