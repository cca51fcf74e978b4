// Reads llama.cpp's tokenizer test vectors (ggml-vocab-*.gguf.inp / .out) the way its
// tests/test-tokenizer-0 does, and loads the vocabularies the tokenizer tests share.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/gguf.hpp"
#include "runtime/tokenizer.hpp"
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

inline std::string ids_to_string(const std::vector<token_id>& ids) {
  std::string s;
  for (token_id id : ids) s += std::to_string(id) + " ";
  return s;
}

}  // namespace troupe::testing
