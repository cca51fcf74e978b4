// mapped_file: a read-only memory map of a whole file; weights are read in place from it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "runtime/result.hpp"

namespace troupe {

class mapped_file {
 public:
  [[nodiscard]] static result<mapped_file> open(const std::string& path);

  mapped_file() = default;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  mapped_file(mapped_file&& other) noexcept;
  mapped_file& operator=(mapped_file&& other) noexcept;
  ~mapped_file();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// read_text_file: a whole (small) file as a string, or an error naming it.
[[nodiscard]] result<std::string> read_text_file(const std::string& path);

}  // namespace troupe
