#include "runtime/safetensors.hpp"

#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace troupe {
namespace {

constexpr uint64_t max_header_bytes = 100u << 20;  // the format's own limit

result<dtype> parse_dtype(const std::string& s, const std::string& tensor, const std::string& name) {
  if (s == "F32") return dtype::f32;
  if (s == "F16") return dtype::f16;
  if (s == "BF16") return dtype::bf16;
  if (s == "I32") return dtype::i32;
  if (s == "I64") return dtype::i64;
  if (s == "U8") return dtype::u8;
  return make_error(fmt::format(
      "{}: tensor {} has dtype {}, which troupe does not read (supported: F32, F16, BF16, I32, "
      "I64, U8)",
      name, tensor, s));
}

}  // namespace

result<safetensors_file> safetensors_file::open(const std::string& path) {
  TROUPE_TRY(mapped_file m, mapped_file::open(path));
  auto file = std::make_unique<mapped_file>(std::move(m));
  TROUPE_TRY(safetensors_file s, parse(file->bytes(), path));
  s.file_ = std::move(file);
  return s;
}

result<safetensors_file> safetensors_file::parse(std::span<const uint8_t> bytes,
                                                 const std::string& name) {
  safetensors_file f;
  f.path_ = name;
  if (bytes.size() < 8)
    return make_error(name + ": truncated safetensors file (shorter than its 8-byte header size)");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > max_header_bytes || header_len > bytes.size() - 8)
    return make_error(fmt::format(
        "{}: truncated or corrupt safetensors file: header of {} bytes in a file of {}", name,
        header_len, bytes.size()));
  const auto* hb = reinterpret_cast<const char*>(bytes.data() + 8);
  nlohmann::json header = nlohmann::json::parse(hb, hb + header_len, nullptr, false);
  if (header.is_discarded() || !header.is_object())
    return make_error(name + ": corrupt safetensors file: the header is not a JSON object");
  const uint8_t* data = bytes.data() + 8 + header_len;
  const uint64_t data_len = bytes.size() - 8 - header_len;

  for (auto& item : header.items()) {
    const std::string& key = item.key();  // (not a structured binding: lambdas below capture it)
    auto& entry = item.value();
    if (key == "__metadata__") {
      if (!entry.is_object())
        return make_error(name + ": corrupt safetensors header: __metadata__ is not an object");
      for (auto& [mk, mv] : entry.items())
        if (mv.is_string()) f.metadata_[mk] = mv.get<std::string>();
      continue;
    }
    auto bad = [&](std::string_view what) {
      return make_error(fmt::format("{}: corrupt safetensors header: tensor {}: {}", name, key, what));
    };
    if (!entry.is_object()) return bad("entry is not an object");
    auto dt = entry.find("dtype");
    auto sh = entry.find("shape");
    auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) return bad("dtype is missing or not a string");
    if (sh == entry.end() || !sh->is_array()) return bad("shape is missing or not an array");
    if (off == entry.end() || !off->is_array() || off->size() != 2 ||
        !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
      return bad("data_offsets must be two non-negative integers");
    TROUPE_TRY(dtype t, parse_dtype(dt->get<std::string>(), key, name));
    tensor_view v;
    v.type = t;
    uint64_t n_el = 1;
    for (auto& d : *sh) {
      if (!d.is_number_unsigned()) return bad("shape holds something other than a non-negative integer");
      auto dim = d.get<uint64_t>();
      if (dim > (uint64_t{1} << 40) || (dim != 0 && n_el > (uint64_t{1} << 48) / dim))
        return bad("shape is impossibly large");
      n_el *= dim;
      v.shape.push_back(static_cast<int64_t>(dim));
    }
    const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
    const uint64_t want = dtype_row_bytes(t, static_cast<int64_t>(n_el));
    if (end < begin || end - begin != want)
      return bad(fmt::format("data_offsets [{}, {}] hold {} bytes but shape {} of {} needs {}",
                             begin, end, end - begin, v.shape_string(), dtype_name(t), want));
    if (end > data_len)
      return make_error(fmt::format(
          "{}: tensor {} lies outside the file (bytes {} to {} of a {}-byte data section): the "
          "file is truncated or corrupt",
          name, key, begin, end, data_len));
    v.data = data + begin;
    v.n_bytes = static_cast<size_t>(want);
    f.tensors_.emplace(key, std::move(v));
  }
  return f;
}

const tensor_view* safetensors_file::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace troupe
