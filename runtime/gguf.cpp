#include "runtime/gguf.hpp"

#include <cstring>
#include <limits>

#include <fmt/format.h>

namespace troupe {
namespace {

enum : uint32_t {
  t_uint8 = 0, t_int8 = 1, t_uint16 = 2, t_int16 = 3, t_uint32 = 4, t_int32 = 5,
  t_float32 = 6, t_bool = 7, t_string = 8, t_array = 9, t_uint64 = 10, t_int64 = 11,
  t_float64 = 12,
};

// GGML tensor type numbers that troupe reads.
enum : uint32_t {
  g_f32 = 0, g_f16 = 1, g_q4_0 = 2, g_q8_0 = 8, g_q4_k = 12, g_q5_k = 13, g_q6_k = 14,
  g_i8 = 24, g_i32 = 26, g_i64 = 27, g_bf16 = 30
};

std::string ggml_type_name(uint32_t t) {
  static const char* names[] = {"F32",  "F16",  "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0",
                                "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K",
                                "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
                                "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32",
                                "I64", "F64", "IQ1_M", "BF16"};
  if (t < std::size(names)) return names[t];
  return "type " + std::to_string(t);
}

// A bounds-checked little-endian reader over the file's bytes.
class reader {
 public:
  reader(std::span<const uint8_t> b, const std::string& name) : b_(b), name_(name) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return b_.size() - pos_; }

  template <class T>
  status read(T& out, std::string_view what) {
    if (remaining() < sizeof(T)) return truncated(what);
    std::memcpy(&out, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return {};
  }
  status read_string(std::string& out, std::string_view what) {
    uint64_t n = 0;
    TROUPE_CHECK(read(n, what));
    if (n > remaining()) return truncated(what);
    out.assign(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return {};
  }
  error truncated(std::string_view what) const {
    return make_error(fmt::format("{}: truncated GGUF file: {} runs past the end (offset {} of {})",
                                  name_, what, pos_, b_.size()));
  }

 private:
  std::span<const uint8_t> b_;
  const std::string& name_;
  size_t pos_ = 0;
};

size_t scalar_size(uint32_t t) {
  switch (t) {
    case t_uint8: case t_int8: case t_bool: return 1;
    case t_uint16: case t_int16: return 2;
    case t_uint32: case t_int32: case t_float32: return 4;
    case t_uint64: case t_int64: case t_float64: return 8;
    case t_string: return 8;  // at least its length
    default: return 0;
  }
}

template <class T>
status read_int(reader& r, int64_t& out, std::string_view what) {
  T v{};
  TROUPE_CHECK(r.read(v, what));
  out = static_cast<int64_t>(v);
  return {};
}

// Reads one scalar of type t as an integer, float, bool or string.
status read_scalar(reader& r, uint32_t t, gguf_value& out, std::string_view what) {
  int64_t i = 0;
  switch (t) {
    case t_uint8: TROUPE_CHECK(read_int<uint8_t>(r, i, what)); out.v = i; return {};
    case t_int8: TROUPE_CHECK(read_int<int8_t>(r, i, what)); out.v = i; return {};
    case t_uint16: TROUPE_CHECK(read_int<uint16_t>(r, i, what)); out.v = i; return {};
    case t_int16: TROUPE_CHECK(read_int<int16_t>(r, i, what)); out.v = i; return {};
    case t_uint32: TROUPE_CHECK(read_int<uint32_t>(r, i, what)); out.v = i; return {};
    case t_int32: TROUPE_CHECK(read_int<int32_t>(r, i, what)); out.v = i; return {};
    case t_int64: TROUPE_CHECK(read_int<int64_t>(r, i, what)); out.v = i; return {};
    case t_uint64: {
      uint64_t u = 0;
      TROUPE_CHECK(r.read(u, what));
      if (u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        out.v = static_cast<int64_t>(u);
      else
        out.v = u;
      return {};
    }
    case t_float32: {
      float f = 0;
      TROUPE_CHECK(r.read(f, what));
      out.v = static_cast<double>(f);
      return {};
    }
    case t_float64: {
      double d = 0;
      TROUPE_CHECK(r.read(d, what));
      out.v = d;
      return {};
    }
    case t_bool: {
      uint8_t b = 0;
      TROUPE_CHECK(r.read(b, what));
      out.v = b != 0;
      return {};
    }
    case t_string: {
      std::string s;
      TROUPE_CHECK(r.read_string(s, what));
      out.v = std::move(s);
      return {};
    }
    default: break;
  }
  return make_error(fmt::format("unknown value type {}", t));
}

status read_value(reader& r, uint32_t t, gguf_value& out, const std::string& key,
                  const std::string& name) {
  if (t != t_array) {
    status s = read_scalar(r, t, out, key);
    if (!s.ok() && scalar_size(t) == 0)
      return make_error(fmt::format("{}: metadata key {}: unknown value type {}", name, key, t));
    return s;
  }
  uint32_t et = 0;
  uint64_t n = 0;
  TROUPE_CHECK(r.read(et, key));
  TROUPE_CHECK(r.read(n, key));
  const size_t es = scalar_size(et);
  if (es == 0)
    return make_error(fmt::format("{}: metadata key {}: unsupported array element type {}", name,
                                  key, et));
  if (n > r.remaining() / es) return r.truncated(key);
  const auto count = static_cast<size_t>(n);
  gguf_value elem;
  if (et == t_string) {
    gguf_value::array_of_strings a;
    a.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      TROUPE_CHECK(read_scalar(r, et, elem, key));
      a.push_back(std::move(std::get<std::string>(elem.v)));
    }
    out.v = std::move(a);
  } else if (et == t_float32 || et == t_float64) {
    gguf_value::array_of_floats a;
    a.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      TROUPE_CHECK(read_scalar(r, et, elem, key));
      a.push_back(std::get<double>(elem.v));
    }
    out.v = std::move(a);
  } else if (et == t_bool) {
    gguf_value::array_of_bools a;
    a.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      TROUPE_CHECK(read_scalar(r, et, elem, key));
      a.push_back(std::get<bool>(elem.v));
    }
    out.v = std::move(a);
  } else {
    gguf_value::array_of_ints a;
    a.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      TROUPE_CHECK(read_scalar(r, et, elem, key));
      if (auto* u = std::get_if<uint64_t>(&elem.v))
        a.push_back(static_cast<int64_t>(*u));
      else
        a.push_back(std::get<int64_t>(elem.v));
    }
    out.v = std::move(a);
  }
  return {};
}

result<dtype> dtype_of(uint32_t g, const std::string& tensor, const std::string& name) {
  switch (g) {
    case g_f32: return dtype::f32;
    case g_f16: return dtype::f16;
    case g_bf16: return dtype::bf16;
    case g_q8_0: return dtype::q8_0;
    case g_q4_0: return dtype::q4_0;
    case g_q4_k: return dtype::q4_k;
    case g_q5_k: return dtype::q5_k;
    case g_q6_k: return dtype::q6_k;
    case g_i32: return dtype::i32;
    case g_i64: return dtype::i64;
    case g_i8: return dtype::u8;
    default: break;
  }
  return make_error(fmt::format(
      "{}: tensor {} has type {}, which troupe does not read (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K)",
      name, tensor, ggml_type_name(g)));
}

}  // namespace

std::optional<int64_t> gguf_value::as_int() const {
  if (auto* i = std::get_if<int64_t>(&v)) return *i;
  if (auto* u = std::get_if<uint64_t>(&v)) return static_cast<int64_t>(*u);
  if (auto* b = std::get_if<bool>(&v)) return *b ? 1 : 0;
  return std::nullopt;
}

std::optional<double> gguf_value::as_float() const {
  if (auto* d = std::get_if<double>(&v)) return *d;
  if (auto i = as_int()) return static_cast<double>(*i);
  return std::nullopt;
}

std::optional<bool> gguf_value::as_bool() const {
  if (auto* b = std::get_if<bool>(&v)) return *b;
  if (auto* i = std::get_if<int64_t>(&v)) return *i != 0;
  return std::nullopt;
}

result<gguf_file> gguf_file::open(const std::string& path) {
  TROUPE_TRY(mapped_file m, mapped_file::open(path));
  auto file = std::make_unique<mapped_file>(std::move(m));
  TROUPE_TRY(gguf_file g, parse(file->bytes(), path));
  g.file_ = std::move(file);
  return g;
}

result<gguf_file> gguf_file::parse(std::span<const uint8_t> bytes, const std::string& name) {
  gguf_file g;
  g.path_ = name;
  reader r(bytes, name);
  uint32_t magic = 0;
  TROUPE_CHECK(r.read(magic, "the magic number"));
  if (std::memcmp(&magic, "GGUF", 4) != 0)
    return make_error(name + ": not a GGUF file (the first four bytes are not \"GGUF\")");
  TROUPE_CHECK(r.read(g.version_, "the version"));
  if (g.version_ != 2 && g.version_ != 3)
    return make_error(fmt::format("{}: GGUF version {} is not supported (troupe reads 2 and 3)",
                                  name, g.version_));
  uint64_t n_tensors = 0, n_kv = 0;
  TROUPE_CHECK(r.read(n_tensors, "the tensor count"));
  TROUPE_CHECK(r.read(n_kv, "the metadata count"));
  // Each key-value pair takes at least 12 bytes and each tensor info at least 24.
  if (n_kv > r.remaining() / 12) return r.truncated("the metadata");
  if (n_tensors > r.remaining() / 24) return r.truncated("the tensor infos");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key;
    TROUPE_CHECK(r.read_string(key, fmt::format("metadata key #{}", i)));
    uint32_t type = 0;
    TROUPE_CHECK(r.read(type, key));
    gguf_value v;
    TROUPE_CHECK(read_value(r, type, v, key, name));
    if (!g.kv_.emplace(key, std::move(v)).second)
      return make_error(fmt::format("{}: metadata key {} appears twice", name, key));
  }

  uint64_t alignment = 32;
  if (const gguf_value* a = g.find("general.alignment")) {
    auto av = a->as_int();
    if (!av || *av <= 0 || (*av & (*av - 1)) != 0 || *av > (1 << 20))
      return make_error(name + ": metadata key general.alignment must be a power of two");
    alignment = static_cast<uint64_t>(*av);
  }

  struct raw_info {
    uint64_t offset;
    uint64_t n_bytes;
  };
  std::vector<raw_info> raw;
  raw.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    gguf_tensor_info info;
    TROUPE_CHECK(r.read_string(info.name, fmt::format("tensor info #{}", i)));
    uint32_t n_dims = 0;
    TROUPE_CHECK(r.read(n_dims, info.name));
    if (n_dims == 0 || n_dims > 4)
      return make_error(fmt::format("{}: tensor {} has {} dimensions (1 to 4 allowed)", name,
                                    info.name, n_dims));
    std::vector<int64_t> dims(n_dims);
    uint64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t v = 0;
      TROUPE_CHECK(r.read(v, info.name));
      if (v == 0 || v > (uint64_t{1} << 40) || n_el > (uint64_t{1} << 48) / v)
        return make_error(fmt::format("{}: tensor {} has an impossible dimension {}", name,
                                      info.name, v));
      n_el *= v;
      dims[n_dims - 1 - d] = static_cast<int64_t>(v);  // GGUF lists innermost first
    }
    TROUPE_CHECK(r.read(info.ggml_type, info.name));
    uint64_t offset = 0;
    TROUPE_CHECK(r.read(offset, info.name));
    TROUPE_TRY(dtype t, dtype_of(info.ggml_type, info.name, name));
    if (dims.back() % dtype_block(t) != 0)
      return make_error(fmt::format("{}: tensor {} is {} but its rows ({}) are not a multiple of its block ({})",
                                    name, info.name, ggml_type_name(info.ggml_type), dims.back(), dtype_block(t)));
    if (offset % alignment != 0)
      return make_error(fmt::format("{}: tensor {} is not aligned to {} bytes", name, info.name,
                                    alignment));
    info.view.type = t;
    info.view.shape = std::move(dims);
    info.view.n_bytes = dtype_row_bytes(t, info.view.shape.back()) *
                        static_cast<size_t>(n_el / static_cast<uint64_t>(info.view.shape.back()));
    raw.push_back({offset, info.view.n_bytes});
    if (!g.tensor_index_.emplace(info.name, g.tensors_.size()).second)
      return make_error(fmt::format("{}: tensor {} appears twice", name, info.name));
    g.tensors_.push_back(std::move(info));
  }

  const uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  for (size_t i = 0; i < g.tensors_.size(); ++i) {
    const uint64_t begin = data_start + raw[i].offset;
    if (raw[i].offset > bytes.size() || begin > bytes.size() ||
        raw[i].n_bytes > bytes.size() - begin)
      return make_error(fmt::format(
          "{}: tensor {} lies outside the file (it needs bytes {} to {}, the file has {}): "
          "the file is truncated or corrupt",
          name, g.tensors_[i].name, begin, begin + raw[i].n_bytes, bytes.size()));
    g.tensors_[i].view.data = bytes.data() + begin;
  }
  return g;
}

const gguf_value* gguf_file::find(std::string_view key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

result<std::string> gguf_file::get_string(std::string_view key) const {
  const gguf_value* v = find(key);
  if (!v) return make_error(fmt::format("{}: metadata key {} is missing", path_, key));
  if (auto* s = v->as_string()) return *s;
  return make_error(fmt::format("{}: metadata key {} is not a string", path_, key));
}

result<int64_t> gguf_file::get_int(std::string_view key) const {
  const gguf_value* v = find(key);
  if (!v) return make_error(fmt::format("{}: metadata key {} is missing", path_, key));
  if (auto i = v->as_int()) return *i;
  return make_error(fmt::format("{}: metadata key {} is not an integer", path_, key));
}

result<double> gguf_file::get_float(std::string_view key) const {
  const gguf_value* v = find(key);
  if (!v) return make_error(fmt::format("{}: metadata key {} is missing", path_, key));
  if (auto d = v->as_float()) return *d;
  return make_error(fmt::format("{}: metadata key {} is not a number", path_, key));
}

const gguf_tensor_info* gguf_file::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace troupe
