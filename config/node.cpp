// node: shared helpers and the JSON reader (nlohmann's SAX parser building nodes directly).
#include "config/node.hpp"

#include <cmath>
#include <cstdint>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace troupe::config {

bool node::is_scalar() const {
  return kind != node_kind::sequence && kind != node_kind::map;
}

const node* node::find(std::string_view key) const {
  for (const auto& m : members)
    if (m.key == key) return &m.value;
  return nullptr;
}

std::string node::describe() const {
  auto clip = [](const std::string& s) {
    return s.size() > 40 ? s.substr(0, 37) + "..." : s;
  };
  switch (kind) {
    case node_kind::null: return "null";
    case node_kind::boolean: return fmt::format("{} (a boolean)", boolean ? "true" : "false");
    case node_kind::integer: return fmt::format("{} (an integer)", clip(text));
    case node_kind::floating: return fmt::format("{} (a number)", clip(text));
    case node_kind::string: return fmt::format("\"{}\" (a string)", clip(text));
    case node_kind::sequence: return "a list";
    case node_kind::map: return "a map";
  }
  return "a value";
}

namespace {

// The length of the well-formed UTF-8 sequence at s[i], or 0.
size_t utf8_sequence(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (n <= 1) return n;
  if (i + n > s.size()) return 0;
  uint32_t cp = c & (0x7fu >> n);
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b >> 6) != 0x2) return 0;
    cp = (cp << 6) | (b & 0x3fu);
  }
  static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

}  // namespace

size_t utf8_error_offset(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_sequence(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::string to_valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_sequence(s, i);
    if (n == 0) {
      out += "\xef\xbf\xbd";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string format_error(const config_error& e) {
  std::string out = e.line > 0 ? fmt::format("line {}, column {}: {}", e.line, e.column, e.message)
                               : e.message;
  if (!e.hint.empty()) out += fmt::format("\n  fix: {}", e.hint);
  return out;
}

std::string format_errors(const error_list& errors, const std::string& source) {
  std::string out;
  for (const auto& e : errors) {
    if (!source.empty()) {
      out += source;
      if (e.line > 0) out += fmt::format(":{}:{}", e.line, e.column);
      out += ": ";
      out += e.message;
      if (!e.hint.empty()) out += fmt::format("\n  fix: {}", e.hint);
    } else {
      out += format_error(e);
    }
    out += '\n';
  }
  return out;
}

namespace {

nlohmann::json to_json(const node& n) {
  switch (n.kind) {
    case node_kind::null: return nullptr;
    case node_kind::boolean: return n.boolean;
    case node_kind::integer: return n.integer;
    case node_kind::floating: return std::isfinite(n.floating) ? nlohmann::json(n.floating)
                                                               : nlohmann::json(n.text);
    case node_kind::string: return n.text;
    case node_kind::sequence: {
      auto a = nlohmann::json::array();
      for (const auto& i : n.items) a.push_back(to_json(i));
      return a;
    }
    case node_kind::map: {
      auto o = nlohmann::json::object();
      for (const auto& m : n.members) o[m.key] = to_json(m.value);
      return o;
    }
  }
  return nullptr;
}

}  // namespace

std::string to_json_text(const node& n) {
  return to_json(n).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

// Builds nodes from SAX events. nlohmann's parser keeps its own explicit stack, so depth is
// checked here, before a frame is pushed.
class node_builder : public nlohmann::json_sax<nlohmann::json> {
 public:
  node_builder(std::string_view text, const parse_limits& limits, error_list& errors)
      : text_(text), limits_(limits), errors_(errors) {}

  bool null() override { return add(node{}); }
  bool boolean(bool v) override {
    node n;
    n.kind = node_kind::boolean;
    n.boolean = v;
    n.text = v ? "true" : "false";
    return add(std::move(n));
  }
  bool number_integer(number_integer_t v) override {
    node n;
    n.kind = node_kind::integer;
    n.integer = v;
    n.text = std::to_string(v);
    return add(std::move(n));
  }
  bool number_unsigned(number_unsigned_t v) override {
    node n;
    n.text = std::to_string(v);
    if (v <= static_cast<uint64_t>(INT64_MAX)) {
      n.kind = node_kind::integer;
      n.integer = static_cast<int64_t>(v);
    } else {  // too large for any field: keep it as a number so range checks reject it
      n.kind = node_kind::floating;
      n.floating = static_cast<double>(v);
    }
    return add(std::move(n));
  }
  bool number_float(number_float_t v, const string_t& s) override {
    node n;
    n.kind = node_kind::floating;
    n.floating = v;
    n.text = s;
    return add(std::move(n));
  }
  bool string(string_t& v) override {
    node n;
    n.kind = node_kind::string;
    n.text = std::move(v);
    return add(std::move(n));
  }
  bool binary(binary_t&) override { return fail("JSON input: binary values are not supported"); }
  bool start_object(std::size_t) override { return open(node_kind::map); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(node_kind::sequence); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    auto& top = stack_.back();
    for (const auto& m : top.n.members)
      if (m.key == k) return fail(fmt::format("JSON input: duplicate key \"{}\"", k));
    top.key = std::move(k);
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    std::string what = ex.what();
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> after the tag
    if (auto p = what.find("] "); p != std::string::npos) what = what.substr(p + 2);
    config_error e{"", "JSON syntax error: " + what, 0, 0};
    position_of(position, e.line, e.column);
    errors_.push_back(std::move(e));
    return false;
  }

  node take_root() { return std::move(root_); }

 private:
  struct frame {
    node n;
    std::string key;
  };

  bool count() {
    if (++n_nodes_ > limits_.max_nodes)
      return fail(fmt::format("JSON input has more than {} values", limits_.max_nodes));
    return true;
  }
  bool add(node n) {
    if (!count()) return false;
    attach(std::move(n));
    return true;
  }
  void attach(node n) {
    if (stack_.empty()) {
      root_ = std::move(n);
      return;
    }
    auto& top = stack_.back();
    if (top.n.kind == node_kind::map)
      top.n.members.push_back(node_member{std::move(top.key), 0, 0, std::move(n)});
    else
      top.n.items.push_back(std::move(n));
  }
  bool open(node_kind k) {
    if (static_cast<int>(stack_.size()) >= limits_.max_depth)
      return fail(fmt::format("JSON input nests deeper than {} levels", limits_.max_depth));
    if (!count()) return false;
    frame f;
    f.n.kind = k;
    stack_.push_back(std::move(f));
    return true;
  }
  bool close() {
    node n = std::move(stack_.back().n);
    stack_.pop_back();
    attach(std::move(n));
    return true;
  }
  bool fail(std::string message) {
    errors_.push_back(config_error{"", std::move(message), 0, 0});
    return false;
  }
  void position_of(std::size_t pos, int& line, int& column) const {
    line = 1;
    column = 1;
    for (std::size_t i = 0; i < pos && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
  }

  std::string_view text_;
  const parse_limits& limits_;
  error_list& errors_;
  std::vector<frame> stack_;
  node root_;
  size_t n_nodes_ = 0;
};

}  // namespace

checked<node> parse_json(std::string_view text, const parse_limits& limits) {
  checked<node> out;
  if (text.size() > limits.max_bytes) {
    out.errors.push_back({"", fmt::format("JSON input is {} bytes, more than the limit of {}",
                                          text.size(), limits.max_bytes)});
    return out;
  }
  node_builder b(text, limits, out.errors);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(text.begin(), text.end(), &b);
  } catch (const std::exception& e) {  // the SAX interface reports errors; this is a backstop
    out.errors.push_back({"", std::string("JSON input: ") + e.what()});
  }
  if (ok && out.errors.empty()) out.value = b.take_root();
  if (!ok && out.errors.empty()) out.errors.push_back({"", "JSON input could not be parsed"});
  return out;
}

}  // namespace troupe::config
