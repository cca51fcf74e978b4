// node: the YAML reader (yaml-cpp), with the YAML 1.2 core schema for unquoted scalars.
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>

#include "config/node.hpp"

namespace troupe::config {

int estimate_yaml_depth(std::string_view text) {
  std::vector<size_t> indents;  // open block levels, strictly increasing
  int flow = 0;
  int deepest = 0;
  char quote = 0;  // the quote a multi-line quoted scalar is still open with
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    size_t i = 0;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i == line.size() || (line[i] == '#' && !quote)) {
      if (end == text.size()) break;
      continue;
    }
    if (!quote) {
      while (!indents.empty() && indents.back() > i) indents.pop_back();
      if (indents.empty() || indents.back() < i) indents.push_back(i);
    }
    int inline_levels = 0;
    // Leading "- " / "? " indicators each open a level on the same line ("- - - x").
    while (!quote && i + 1 <= line.size() && (line[i] == '-' || line[i] == '?') &&
           (i + 1 == line.size() || line[i + 1] == ' ' || line[i + 1] == '\t')) {
      ++inline_levels;
      i += 2;
      while (i < line.size() && line[i] == ' ') ++i;
    }
    int flow_max = flow;
    bool has_key = false;
    for (size_t j = i; j < line.size(); ++j) {
      char c = line[j];
      if (quote) {
        if (quote == '"' && c == '\\') { ++j; continue; }
        if (c == quote) {
          if (quote == '\'' && j + 1 < line.size() && line[j + 1] == '\'') { ++j; continue; }
          quote = 0;
        }
        continue;
      }
      char prev = j == 0 ? ' ' : line[j - 1];
      if (c == '#' && (prev == ' ' || prev == '\t')) break;
      if ((c == '"' || c == '\'') &&
          (j == i || prev == ' ' || prev == '\t' || prev == '[' || prev == '{' || prev == ',' ||
           prev == ':')) {
        quote = c;
      } else if (c == '[' || c == '{') {
        flow_max = std::max(flow_max, ++flow);
      } else if ((c == ']' || c == '}') && flow > 0) {
        --flow;
      } else if (c == ':' && flow == 0 && (j + 1 == line.size() || line[j + 1] == ' ')) {
        has_key = true;  // a block key opens one more level for its value
      }
    }
    deepest = std::max(deepest, static_cast<int>(indents.size()) + inline_levels +
                                    (has_key ? 1 : 0) + flow_max);
    if (end == text.size()) break;
  }
  return deepest;
}

namespace {

bool all_of(std::string_view s, size_t from, bool (*pred)(char)) {
  if (from >= s.size()) return false;
  for (size_t i = from; i < s.size(); ++i)
    if (!pred(s[i])) return false;
  return true;
}
bool is_dec(char c) { return c >= '0' && c <= '9'; }
bool is_oct(char c) { return c >= '0' && c <= '7'; }
bool is_hex(char c) {
  return is_dec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// YAML 1.2 core schema: null, booleans, integers (decimal, 0o, 0x) and floats.
void resolve_plain(node& n) {
  const std::string& s = n.text;
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    n.kind = node_kind::null;
    return;
  }
  if (s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" ||
      s == "FALSE") {
    n.kind = node_kind::boolean;
    n.boolean = s[0] == 't' || s[0] == 'T';
    return;
  }
  size_t sign = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  int base = 0;
  if (all_of(s, sign, is_dec)) base = 10;
  else if (!sign && s.size() > 2 && s[0] == '0' && s[1] == 'o' && all_of(s, 2, is_oct)) base = 8;
  else if (!sign && s.size() > 2 && s[0] == '0' && s[1] == 'x' && all_of(s, 2, is_hex)) base = 16;
  if (base) {
    errno = 0;
    const char* digits = s.c_str() + (base == 10 ? 0 : 2);
    char* end = nullptr;
    long long v = std::strtoll(digits, &end, base);
    if (errno == 0 && end && *end == 0) {
      n.kind = node_kind::integer;
      n.integer = v;
    } else {  // out of range: keep it a number so range checks report it
      n.kind = node_kind::floating;
      n.floating = std::strtod(s.c_str(), nullptr);
    }
    return;
  }
  std::string_view body = std::string_view(s).substr(sign);
  if (body == ".inf" || body == ".Inf" || body == ".INF") {
    n.kind = node_kind::floating;
    n.floating = s[0] == '-' ? -HUGE_VAL : HUGE_VAL;
    return;
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    n.kind = node_kind::floating;
    n.floating = std::nan("");
    return;
  }
  // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
  size_t i = 0;
  size_t int_digits = 0, frac_digits = 0;
  while (i < body.size() && is_dec(body[i])) ++i, ++int_digits;
  bool dot = i < body.size() && body[i] == '.';
  if (dot) {
    ++i;
    while (i < body.size() && is_dec(body[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return;
  if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    ++i;
    if (i < body.size() && (body[i] == '-' || body[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < body.size() && is_dec(body[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return;
  }
  if (i != body.size()) return;
  n.kind = node_kind::floating;
  n.floating = std::strtod(s.c_str(), nullptr);
}

struct converter {
  const parse_limits& limits;
  error_list& errors;
  size_t n_nodes = 0;
  bool stopped = false;

  void stop(std::string message, const YAML::Mark& m) {
    if (stopped) return;
    stopped = true;
    errors.push_back(config_error{"", std::move(message), m.is_null() ? 0 : m.line + 1,
                                  m.is_null() ? 0 : m.column + 1});
  }

  node convert(const YAML::Node& y, int depth) {
    node n;
    const YAML::Mark m = y.Mark();
    if (!m.is_null()) {
      n.line = m.line + 1;
      n.column = m.column + 1;
    }
    if (stopped) return n;
    if (++n_nodes > limits.max_nodes) {
      stop(fmt::format("the YAML document expands to more than {} values (aliases included)",
                       limits.max_nodes), m);
      return n;
    }
    if (depth > limits.max_depth) {
      stop(fmt::format("the YAML document nests deeper than {} levels", limits.max_depth), m);
      return n;
    }
    switch (y.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        n.kind = node_kind::null;
        break;
      case YAML::NodeType::Scalar: {
        n.text = y.Scalar();
        const std::string& tag = y.Tag();
        // "?" marks an untagged plain scalar; "!" a quoted one; explicit standard tags are
        // resolved like plain scalars of that type, and a !!str stays a string.
        if (tag == "!" || tag == "tag:yaml.org,2002:str") {
          n.kind = node_kind::string;
        } else {
          n.kind = node_kind::string;
          n.yaml_plain = true;
          resolve_plain(n);
        }
        break;
      }
      case YAML::NodeType::Sequence:
        n.kind = node_kind::sequence;
        for (const auto& item : y) {
          n.items.push_back(convert(item, depth + 1));
          if (stopped) break;
        }
        break;
      case YAML::NodeType::Map:
        n.kind = node_kind::map;
        // Copy each pair: yaml-cpp's iterator hands out a temporary, so a reference to
        // it->first would dangle (ASan finds it; GCC 12 warns about it).
        for (auto it = y.begin(); it != y.end(); ++it) {
          const std::pair<YAML::Node, YAML::Node> kv = *it;
          const YAML::Node& k = kv.first;
          const YAML::Mark km = k.Mark();
          if (!k.IsScalar()) {
            stop("a map key must be a plain name, not a list or map", km);
            break;
          }
          std::string key = k.Scalar();
          if (n.find(key)) {
            stop(fmt::format("duplicate key \"{}\"", key), km);
            break;
          }
          node_member member;
          member.key = std::move(key);
          if (!km.is_null()) {
            member.line = km.line + 1;
            member.column = km.column + 1;
          }
          member.value = convert(kv.second, depth + 1);
          // A missing value ("key:") has no useful mark (yaml-cpp gives the next token's):
          // point at the key.
          if (member.value.line == 0 || member.value.kind == node_kind::null) {
            member.value.line = member.line;
            member.value.column = member.column;
          }
          n.members.push_back(std::move(member));
          if (stopped) break;
        }
        break;
    }
    return n;
  }
};

// The line where a second document starts ("---" after content, or content after "..."),
// or 0. A text scan, because only the first document is parsed.
int second_document_line(std::string_view text) {
  bool content = false, ended = false, started = false;
  int line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto marker = [&](std::string_view m) {
      return line.substr(0, 3) == m && (line.size() == 3 || line[3] == ' ' || line[3] == '\t');
    };
    if (marker("---")) {
      if (content || started) return line_no;
      started = true;
      std::string_view rest = line.substr(3);
      size_t i = rest.find_first_not_of(" \t");
      if (i != std::string_view::npos && rest[i] != '#') content = true;
      continue;
    }
    if (marker("...")) {
      ended = true;
      continue;
    }
    size_t i = line.find_first_not_of(" \t");
    if (i == std::string_view::npos || line[i] == '#' || (i == 0 && line[0] == '%')) continue;
    if (ended) return line_no;
    content = true;
  }
  return 0;
}

// Plain when it reads back as the same string; double-quoted (with escapes) otherwise:
// yaml-cpp's emitter writes control characters such as '\r' unquoted, which reads back as a
// line break.
void emit_string(YAML::Emitter& out, const std::string& s) {
  bool plain = !s.empty() && plain_scalar_kind(s) == node_kind::string;
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) plain = false;
  if (plain) out << s;
  else out << YAML::DoubleQuoted << s;
}

void emit(YAML::Emitter& out, const node& n) {
  switch (n.kind) {
    case node_kind::null: out << YAML::Null; break;
    case node_kind::boolean: out << (n.boolean ? "true" : "false"); break;
    case node_kind::integer:
    case node_kind::floating: out << n.text; break;
    case node_kind::string: emit_string(out, n.text); break;
    case node_kind::sequence:
      out << YAML::BeginSeq;
      for (const auto& i : n.items) emit(out, i);
      out << YAML::EndSeq;
      break;
    case node_kind::map:
      out << YAML::BeginMap;
      for (const auto& m : n.members) {
        // An implicit key may be at most 1024 characters (escapes included): longer ones
        // are written as explicit "? key" entries, which have no limit (fuzzer find).
        if (m.key.size() > 128) out << YAML::LongKey;
        out << YAML::Key;
        emit_string(out, m.key);
        out << YAML::Value;
        emit(out, m.value);
      }
      out << YAML::EndMap;
      break;
  }
}

}  // namespace

node_kind plain_scalar_kind(std::string_view text) {
  node n;
  n.kind = node_kind::string;
  n.text = std::string(text);
  resolve_plain(n);
  return n.kind;
}

std::string emit_yaml(const node& n) {
  YAML::Emitter out;
  out.SetIndent(2);
  out.SetOutputCharset(YAML::EscapeNonAscii);
  emit(out, n);
  std::string s = out.c_str();
  if (s.empty() || s.back() != '\n') s += '\n';
  return s;
}

bool same_tree(const node& a, const node& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case node_kind::null: return true;
    case node_kind::boolean: return a.boolean == b.boolean;
    case node_kind::integer: return a.integer == b.integer;
    case node_kind::floating:
      return a.text == b.text || (a.floating == b.floating);
    case node_kind::string: return a.text == b.text;
    case node_kind::sequence:
      if (a.items.size() != b.items.size()) return false;
      for (size_t i = 0; i < a.items.size(); ++i)
        if (!same_tree(a.items[i], b.items[i])) return false;
      return true;
    case node_kind::map:
      if (a.members.size() != b.members.size()) return false;
      for (size_t i = 0; i < a.members.size(); ++i)
        if (a.members[i].key != b.members[i].key ||
            !same_tree(a.members[i].value, b.members[i].value))
          return false;
      return true;
  }
  return false;
}

checked<node> parse_yaml(std::string_view text, const parse_limits& limits) {
  checked<node> out;
  if (text.size() > limits.max_bytes) {
    out.errors.push_back({"", fmt::format("the YAML document is {} bytes, more than the limit of {}",
                                          text.size(), limits.max_bytes)});
    return out;
  }
  // YAML is Unicode; yaml-cpp would pass ill-formed bytes through, and two keys that differ
  // only there could not be written back apart.
  if (size_t bad = utf8_error_offset(text); bad != std::string_view::npos) {
    int line = 1, column = 1;
    for (size_t i = 0; i < bad; ++i) {
      if (text[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    out.errors.push_back({"", "the YAML document is not valid UTF-8", line, column});
    return out;
  }
  if (int depth = estimate_yaml_depth(text); depth > limits.max_depth) {
    out.errors.push_back({"", fmt::format("the YAML document nests deeper than {} levels "
                                          "(about {} found)", limits.max_depth, depth)});
    return out;
  }
  if (int line = second_document_line(text); line > 0) {
    out.errors.push_back({"", "expected one YAML document, found more than one", line, 1});
    return out;
  }
  try {
    // Load, not LoadAll: yaml-cpp 0.7's LoadAll never returns on some inputs (a lone ","
    // makes it produce empty documents forever; the fuzzer found it).
    YAML::Node doc = YAML::Load(std::string(text));
    converter c{limits, out.errors};
    node n = c.convert(doc, 0);
    if (out.errors.empty()) out.value = std::move(n);
  } catch (const YAML::Exception& e) {
    out.errors.push_back({"", "YAML syntax error: " + e.msg, e.mark.is_null() ? 0 : e.mark.line + 1,
                          e.mark.is_null() ? 0 : e.mark.column + 1});
  } catch (const std::exception& e) {
    out.errors.push_back({"", std::string("YAML input could not be read: ") + e.what()});
  }
  return out;
}

}  // namespace troupe::config
