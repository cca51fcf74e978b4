// tokenizer_json: reads a Hugging Face tokenizer.json in one SAX pass, with the two large
// parts (model.vocab, model.merges) going straight into flat vectors instead of a JSON tree.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe {

struct tokenizer_json_file {
  bool has_vocab = false;   // model.vocab was an object
  bool has_merges = false;  // model.merges was an array
  std::vector<std::pair<std::string, int64_t>> vocab;        // in file order
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
  std::unique_ptr<nlohmann::json> rest;                     // the file without those two

  tokenizer_json_file();
  tokenizer_json_file(tokenizer_json_file&&) noexcept;
  tokenizer_json_file& operator=(tokenizer_json_file&&) noexcept;
  ~tokenizer_json_file();
};

// Errors name the file, and for a malformed vocabulary or merge list the entry.
[[nodiscard]] result<tokenizer_json_file> read_tokenizer_json(const std::string& path);

}  // namespace troupe
