// Reads llama.cpp's tokenizer test vectors (ggml-vocab-*.gguf.inp / .out) the way its
// tests/test-tokenizer-0 does, and writes tokenizer.json files the tokenizer tests share.
#pragma once

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/gguf.hpp"
#include "runtime/text/tokenizer.hpp"
#include "tests/test_data.hpp"

namespace troupe::testing {

struct vocab_vector {
  std::string text;
  std::vector<token_id> ids;
};

inline std::string vocab_path(const std::string& name) {
  return test_data_dir() + "/vocab/ggml-vocab-" + name + ".gguf";
}
inline std::string hf_path(const std::string& model, const std::string& file) {
  return test_data_dir() + "/hf/" + model + "/" + file;
}

// Inputs are separated by "\n__ggml_vocab_test__\n"; .out has one line of ids per input.
// A missing or mismatched file fails the calling test.
inline std::vector<vocab_vector> read_vocab_vectors(const std::string& name) {
  const std::string base = vocab_path(name);
  std::ifstream inp(base + ".inp", std::ios::binary), outp(base + ".out", std::ios::binary);
  EXPECT_TRUE(inp.good()) << "missing " << base << ".inp (run scripts/fetch_test_data.sh)";
  EXPECT_TRUE(outp.good()) << "missing " << base << ".out";
  std::stringstream ss;
  ss << inp.rdbuf();
  const std::string raw = ss.str();
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<std::vector<token_id>> outputs;
  for (std::string line; std::getline(outp, line);) {
    std::istringstream ls(line);
    std::vector<token_id> ids;
    for (long v; ls >> v;) ids.push_back(static_cast<token_id>(v));
    outputs.push_back(std::move(ids));
  }
  EXPECT_EQ(inputs.size(), outputs.size()) << base;
  std::vector<vocab_vector> r;
  for (size_t i = 0; i < inputs.size() && i < outputs.size(); ++i) r.push_back({inputs[i], outputs[i]});
  return r;
}

// Writes the tokenizer.json that Hugging Face's LlamaConverter makes from Llama 2's
// SentencePiece model, from the GGUF's pieces and scores: the same vocabulary, and a merge
// for every split of a piece into two pieces, ordered by the score of the piece it makes.
// legacy is the form of Llama 2's own file (Prepend and Replace normalizers, Strip decoder);
// metaspace the later one (Metaspace pre-tokenizer and decoder, as Mistral's files have).
enum class spm_json_style { legacy, metaspace };

inline std::string write_llama2_tokenizer_json(spm_json_style style) {
  const std::string path = ::testing::TempDir() + (style == spm_json_style::legacy ? "/llama2-legacy-tokenizer.json"
                                                                                     : "/llama2-metaspace-tokenizer.json");
  auto f = gguf_file::open(vocab_path("llama-spm"));
  if (!f) {
    ADD_FAILURE() << f.message();
    return path;
  }
  const auto& tokens = *f->find("tokenizer.ggml.tokens")->as_strings();
  const auto& scores = *f->find("tokenizer.ggml.scores")->as_floats();
  nlohmann::json vocab = nlohmann::json::object();
  std::map<std::string, int> id;
  for (size_t i = 0; i < tokens.size(); ++i) {
    vocab[tokens[i]] = i;
    id.emplace(tokens[i], static_cast<int>(i));
  }
  struct merge {
    std::string a, b;
    double score;
    int ia, ib;
  };
  std::vector<merge> merges;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& piece = tokens[i];
    std::vector<merge> local;
    for (size_t k = 1; k < piece.size(); ++k) {
      if ((static_cast<uint8_t>(piece[k]) & 0xC0) == 0x80) continue;  // split between characters
      auto l = id.find(piece.substr(0, k)), r = id.find(piece.substr(k));
      if (l != id.end() && r != id.end()) local.push_back({l->first, r->first, scores[i], l->second, r->second});
    }
    std::sort(local.begin(), local.end(),
              [](const merge& x, const merge& y) { return std::pair(x.ia, x.ib) < std::pair(y.ia, y.ib); });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const merge& x, const merge& y) { return x.score > y.score; });
  nlohmann::json merge_list = nlohmann::json::array();
  for (const merge& m : merges) merge_list.push_back(m.a + " " + m.b);
  const std::string space = "\xE2\x96\x81";
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
        {{"id", 1}, {"content", "<s>"}, {"special", true}},
        {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", space}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"vocab", vocab},
        {"merges", merge_list}}},
  };
  if (style == spm_json_style::metaspace) {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", space}, {"prepend_scheme", "first"}, {"split", false}};
    j["decoder"] = {{"type", "Sequence"},
                    {"decoders",
                     {{{"type", "Metaspace"}, {"replacement", space}, {"prepend_scheme", "first"}, {"split", false}},
                      {{"type", "ByteFallback"}},
                      {{"type", "Fuse"}}}}};
  }
  std::ofstream(path) << j.dump();
  return path;
}

// Writes GPT-2's tokenizer.json from OpenAI's own files (encoder.json, vocab.bpe), as
// Hugging Face's gpt2 tokenizer.json has it: a ByteLevel pre-tokenizer that splits by regex.
inline std::string write_gpt2_tokenizer_json() {
  const std::string path = ::testing::TempDir() + "/gpt2-openai-tokenizer.json";
  std::ifstream enc(test_data_dir() + "/gpt2/encoder.json"), bpe(test_data_dir() + "/gpt2/vocab.bpe");
  EXPECT_TRUE(enc.good() && bpe.good()) << "missing " << test_data_dir() << "/gpt2 (run scripts/fetch_test_data.sh)";
  nlohmann::json vocab = nlohmann::json::parse(enc, nullptr, false);
  EXPECT_FALSE(vocab.is_discarded());
  nlohmann::json merges = nlohmann::json::array();
  for (std::string line; std::getline(bpe, line);)
    if (!line.empty() && line[0] != '#') merges.push_back(line);
  const nlohmann::json byte_level = {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens", {{{"id", 50256}, {"content", "<|endoftext|>"}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}},
  };
  std::ofstream(path) << j.dump();
  return path;
}

inline std::string ids_to_string(const std::vector<token_id>& ids) {
  std::string s;
  for (token_id id : ids) s += std::to_string(id) + " ";
  return s;
}

}  // namespace troupe::testing
