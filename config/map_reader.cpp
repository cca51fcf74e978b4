// map_reader: typed getters over a map node, unknown-field detection and did-you-mean.
#include "config/map_reader.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fmt/format.h>

namespace troupe::config {

namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower(b[i])) return false;
  return true;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

}  // namespace

int edit_distance(std::string_view a, std::string_view b) {
  // Names longer than this are never typos of a field name; bound the quadratic work.
  if (a.size() > 64 || b.size() > 64) return 1000;
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      int cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
          lower(a[i - 2]) == lower(b[j - 1]))
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  // A third of the word's length, at least 1 and at most 3 edits: "max_batch_sise" finds
  // "max_batch_size", "tp" finds nothing.
  const int limit = std::clamp(static_cast<int>(word.size()) / 3, 1, 3);
  std::string best;
  int best_d = limit + 1;
  for (const auto& c : candidates) {
    int d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

map_reader::map_reader(const node* n, std::string path, error_list& errors)
    : path_(std::move(path)), errors_(errors) {
  if (!n || n->kind == node_kind::null) return;
  if (n->kind != node_kind::map) {
    errors_.push_back({path_, fmt::format("{}: expected a map, got {}", path_, n->describe()),
                       n->line, n->column});
    return;
  }
  map_ = n;
}

std::string map_reader::path_of(std::string_view key) const {
  return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
}

const node_member* map_reader::member(std::string_view key) const {
  if (!map_) return nullptr;
  for (const auto& m : map_->members)
    if (m.key == key) return &m;
  return nullptr;
}

const node* map_reader::get(std::string_view key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end()) known_.emplace_back(key);
  const node_member* m = member(key);
  return m ? &m->value : nullptr;
}

void map_reader::type_error(const node_member& m, std::string_view expected) {
  std::string p = path_of(m.key);
  errors_.push_back({p, fmt::format("{}: expected {}, got {}", p, expected, m.value.describe()),
                     m.value.line, m.value.column});
}

std::optional<int64_t> map_reader::integer(std::string_view key, int64_t min, int64_t max) {
  get(key);
  const node_member* m = member(key);
  if (!m) return std::nullopt;
  std::string expected = max == INT64_MAX ? fmt::format("an integer >= {}", min)
                                          : fmt::format("an integer from {} to {}", min, max);
  if (m->value.kind != node_kind::integer) {
    // 2.0 is an integer in value; JSON writers often emit it so.
    if (m->value.kind == node_kind::floating && std::isfinite(m->value.floating) &&
        std::floor(m->value.floating) == m->value.floating &&
        std::fabs(m->value.floating) < 9.0e15) {
      auto v = static_cast<int64_t>(m->value.floating);
      if (v >= min && v <= max) return v;
    }
    type_error(*m, expected);
    return std::nullopt;
  }
  if (m->value.integer < min || m->value.integer > max) {
    std::string p = path_of(key);
    errors_.push_back({p, fmt::format("{}: must be {}, got {}", p, expected, m->value.integer),
                       m->value.line, m->value.column});
    return std::nullopt;
  }
  return m->value.integer;
}

std::optional<double> map_reader::number(std::string_view key, double min, double max) {
  get(key);
  const node_member* m = member(key);
  if (!m) return std::nullopt;
  double v = 0;
  if (m->value.kind == node_kind::integer) v = static_cast<double>(m->value.integer);
  else if (m->value.kind == node_kind::floating) v = m->value.floating;
  else {
    type_error(*m, "a number");
    return std::nullopt;
  }
  if (!std::isfinite(v) || v < min || v > max) {
    std::string p = path_of(key);
    std::string range = std::isinf(max) ? fmt::format("a number >= {}", min)
                                        : fmt::format("a number from {} to {}", min, max);
    errors_.push_back({p, fmt::format("{}: must be {}, got {}", p, range, m->value.text),
                       m->value.line, m->value.column});
    return std::nullopt;
  }
  return v;
}

std::optional<bool> map_reader::boolean(std::string_view key) {
  get(key);
  const node_member* m = member(key);
  if (!m) return std::nullopt;
  if (m->value.kind != node_kind::boolean) {
    type_error(*m, "a boolean (true or false)");
    return std::nullopt;
  }
  return m->value.boolean;
}

std::optional<std::string> map_reader::string(std::string_view key) {
  get(key);
  const node_member* m = member(key);
  if (!m) return std::nullopt;
  const node& v = m->value;
  bool ok = v.kind == node_kind::string ||
            (v.yaml_plain && (v.kind == node_kind::integer || v.kind == node_kind::floating ||
                              v.kind == node_kind::boolean));
  if (!ok) {
    type_error(*m, "a string");
    return std::nullopt;
  }
  if (v.text.empty()) {
    std::string p = path_of(key);
    errors_.push_back({p, fmt::format("{}: must not be empty", p), v.line, v.column});
    return std::nullopt;
  }
  return v.text;
}

std::optional<std::string> map_reader::choice(std::string_view key,
                                              std::initializer_list<std::string_view> options,
                                              bool case_insensitive) {
  get(key);
  const node_member* m = member(key);
  if (!m) return std::nullopt;
  std::vector<std::string> names(options.begin(), options.end());
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i) list += i + 1 == names.size() ? (names.size() == 2 ? " or " : ", or ") : ", ";
    list += names[i];
  }
  const node& v = m->value;
  std::string p = path_of(key);
  std::string expected =
      fmt::format("one of {}{}", list, case_insensitive ? " (case-insensitive)" : "");
  if (!(v.kind == node_kind::string || (v.yaml_plain && v.is_scalar() && !v.text.empty()))) {
    type_error(*m, expected);
    return std::nullopt;
  }
  for (const auto& o : names)
    if (v.text == o || (case_insensitive && iequals(v.text, o))) return o;
  std::string msg = fmt::format("{}: must be {}, got \"{}\"", p, expected, v.text);
  if (std::string s = did_you_mean(v.text, names); !s.empty())
    msg += fmt::format("; did you mean {}?", s);
  errors_.push_back({p, std::move(msg), v.line, v.column});
  return std::nullopt;
}

void map_reader::reject(std::string_view key, std::string message, std::string fix) {
  get(key);
  rejected_.emplace_back(key);
  if (const node_member* m = member(key))
    errors_.push_back({path_of(key), std::move(message), m->line, m->column, std::move(fix)});
}

void map_reader::hint(std::string_view key, std::string message) {
  hints_.emplace_back(std::string(key), std::move(message));
}

void map_reader::error(std::string_view key, std::string message, std::string fix) {
  const node_member* m = member(key);
  errors_.push_back({path_of(key), std::move(message), m ? m->line : (map_ ? map_->line : 0),
                     m ? m->column : (map_ ? map_->column : 0), std::move(fix)});
}

void map_reader::finish() {
  if (!map_) return;
  // Suggest only fields that are allowed here.
  std::vector<std::string> allowed;
  for (const auto& k : known_)
    if (std::find(rejected_.begin(), rejected_.end(), k) == rejected_.end()) allowed.push_back(k);
  for (const auto& m : map_->members) {
    if (std::find(known_.begin(), known_.end(), m.key) != known_.end()) continue;
    std::string p = path_of(m.key);
    auto h = std::find_if(hints_.begin(), hints_.end(),
                          [&](const auto& kv) { return kv.first == m.key; });
    std::string msg;
    if (h != hints_.end()) {
      msg = fmt::format("{}: unknown field; {}", p, h->second);
    } else if (std::string s = did_you_mean(m.key, allowed); !s.empty()) {
      msg = fmt::format("{}: unknown field; did you mean {}?", p, s);
    } else {
      msg = fmt::format("{}: unknown field; the fields of {} are: {}", p,
                        path_.empty() ? "the top level" : path_, join(allowed, ", "));
    }
    errors_.push_back({p, std::move(msg), m.line, m.column});
  }
}

}  // namespace troupe::config
