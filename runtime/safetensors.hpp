// safetensors_file: reads a .safetensors file (a JSON header, then raw tensors) in place.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "runtime/mapped_file.hpp"
#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

class safetensors_file {
 public:
  // Maps and parses the file. A malformed header, an unknown dtype, a shape that does not
  // match the byte range, or a range outside the file is an error naming file and tensor.
  [[nodiscard]] static result<safetensors_file> open(const std::string& path);
  // Parses bytes held elsewhere (the fuzz target uses this); they must outlive the result.
  [[nodiscard]] static result<safetensors_file> parse(std::span<const uint8_t> bytes,
                                                      const std::string& name);

  safetensors_file(safetensors_file&&) noexcept = default;
  safetensors_file& operator=(safetensors_file&&) noexcept = default;

  const std::string& path() const { return path_; }
  const std::map<std::string, tensor_view, std::less<>>& tensors() const { return tensors_; }
  const tensor_view* find(std::string_view name) const;
  const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }

 private:
  safetensors_file() = default;
  std::unique_ptr<mapped_file> file_;  // null when parsing borrowed bytes
  std::string path_;
  std::map<std::string, tensor_view, std::less<>> tensors_;
  std::map<std::string, std::string, std::less<>> metadata_;
};

}  // namespace troupe
