// gguf_file: reads a GGUF v3 file (llama.cpp's format): its metadata and its tensors, in place.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "runtime/mapped_file.hpp"
#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

// A metadata value. Integers of every width are widened to int64 (uint64 values above
// INT64_MAX are kept as uint64), floats to double; arrays keep one element kind.
struct gguf_value {
  using array_of_ints = std::vector<int64_t>;
  using array_of_floats = std::vector<double>;
  using array_of_strings = std::vector<std::string>;
  using array_of_bools = std::vector<bool>;
  std::variant<int64_t, uint64_t, double, bool, std::string, array_of_ints, array_of_floats,
               array_of_strings, array_of_bools>
      v;

  const std::string* as_string() const { return std::get_if<std::string>(&v); }
  std::optional<int64_t> as_int() const;
  std::optional<double> as_float() const;  // ints convert too
  std::optional<bool> as_bool() const;
  const array_of_ints* as_ints() const { return std::get_if<array_of_ints>(&v); }
  const array_of_floats* as_floats() const { return std::get_if<array_of_floats>(&v); }
  const array_of_strings* as_strings() const { return std::get_if<array_of_strings>(&v); }
};

struct gguf_tensor_info {
  std::string name;
  uint32_t ggml_type = 0;  // GGML's type number
  tensor_view view;        // shape outermost first (GGUF stores it innermost first)
};

class gguf_file {
 public:
  // Maps and parses the file. Every structural problem (bad magic, unsupported version,
  // truncated metadata, a tensor outside the file, an unsupported tensor type) is an error
  // naming the file and the key or tensor.
  [[nodiscard]] static result<gguf_file> open(const std::string& path);
  // Parses bytes held elsewhere (the fuzz target uses this); the bytes must outlive it.
  [[nodiscard]] static result<gguf_file> parse(std::span<const uint8_t> bytes,
                                               const std::string& name);

  gguf_file(gguf_file&&) noexcept = default;
  gguf_file& operator=(gguf_file&&) noexcept = default;
  gguf_file(const gguf_file&) = delete;
  gguf_file& operator=(const gguf_file&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  const gguf_value* find(std::string_view key) const;
  const std::map<std::string, gguf_value, std::less<>>& metadata() const { return kv_; }
  // Typed getters: an error names the file and key when it is missing or of another type.
  [[nodiscard]] result<std::string> get_string(std::string_view key) const;
  [[nodiscard]] result<int64_t> get_int(std::string_view key) const;
  [[nodiscard]] result<double> get_float(std::string_view key) const;

  const std::vector<gguf_tensor_info>& tensors() const { return tensors_; }
  const gguf_tensor_info* find_tensor(std::string_view name) const;

 private:
  gguf_file() = default;
  std::unique_ptr<mapped_file> file_;  // null when parsing borrowed bytes
  std::string path_;
  uint32_t version_ = 0;
  std::map<std::string, gguf_value, std::less<>> kv_;
  std::vector<gguf_tensor_info> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace troupe
