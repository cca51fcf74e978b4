#include "runtime/jinja_string.hpp"

#include <locale.h>
#include <wctype.h>

#include <algorithm>
#include <cstdio>

namespace troupe::jinja {

char32_t utf8_next(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  int n = 0;
  char32_t cp = 0;
  if ((b0 & 0xE0) == 0xC0) {
    n = 1;
    cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 2;
    cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 3;
    cp = b0 & 0x07;
  } else {
    ++i;
    return b0;
  }
  if (i + static_cast<size_t>(n) >= s.size()) {
    ++i;
    return b0;
  }
  for (int k = 1; k <= n; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return b0;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  i += n + 1;
  return cp;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out += utf8_next(s, i);
  return out;
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) utf8_append(out, c);
  return out;
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

size_t code_point_count(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    utf8_next(s, i);
    ++n;
  }
  return n;
}

size_t byte_offset(std::string_view s, size_t n) {
  size_t i = 0;
  while (n > 0 && i < s.size()) {
    utf8_next(s, i);
    --n;
  }
  return i;
}

bool is_py_space(char32_t c) {
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_py_printable(char32_t c) {
  // The assigned non-printable ranges of Python 3.11's Unicode database (Cc, Cf, Cs, Co, Zl,
  // Zp and Zs other than space). Unassigned code points count as printable here.
  static constexpr char32_t ranges[][2] = {
      {0x7f, 0xa0},       {0xad, 0xad},       {0x600, 0x605},     {0x61c, 0x61c},
      {0x6dd, 0x6dd},     {0x70f, 0x70f},     {0x890, 0x891},     {0x8e2, 0x8e2},
      {0x1680, 0x1680},   {0x180e, 0x180e},   {0x2000, 0x200f},   {0x2028, 0x202f},
      {0x205f, 0x2064},   {0x2066, 0x206f},   {0x3000, 0x3000},   {0xd800, 0xf8ff},
      {0xfeff, 0xfeff},   {0xfff9, 0xfffb},   {0x110bd, 0x110bd}, {0x110cd, 0x110cd},
      {0x13430, 0x13438}, {0x1bca0, 0x1bca3}, {0x1d173, 0x1d17a}, {0xe0001, 0xe0001},
      {0xe0020, 0xe007f}, {0xf0000, 0xffffd}, {0x100000, 0x10fffd}};
  if (c < 0x20) return false;
  if (c < 0x7f) return true;
  for (const auto& r : ranges) {
    if (c < r[0]) return true;
    if (c <= r[1]) return false;
  }
  return true;
}

namespace {

// glibc's C.UTF-8 locale carries Unicode's simple case mappings; a private locale object keeps
// the process-wide locale untouched.
locale_t utf8_locale() {
  static locale_t loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t(nullptr));
  return loc;
}

bool in_chars(char32_t c, const std::u32string& chars) { return chars.find(c) != std::u32string::npos; }

}  // namespace

char32_t to_upper_cp(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') ? c - 32 : c;
  locale_t loc = utf8_locale();
  return loc ? static_cast<char32_t>(towupper_l(static_cast<wint_t>(c), loc)) : c;
}

char32_t to_lower_cp(char32_t c) {
  if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
  locale_t loc = utf8_locale();
  return loc ? static_cast<char32_t>(towlower_l(static_cast<wint_t>(c), loc)) : c;
}

bool is_cased_letter(char32_t c) { return to_upper_cp(c) != c || to_lower_cp(c) != c; }

bool is_alpha_cp(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  locale_t loc = utf8_locale();
  return loc ? iswalpha_l(static_cast<wint_t>(c), loc) != 0 : false;
}

bool is_digit_cp(char32_t c) { return c >= '0' && c <= '9'; }

std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
  const std::u32string cs = chars ? utf8_decode(*chars) : std::u32string();
  auto strip_it = [&](char32_t c) { return chars ? in_chars(c, cs) : is_py_space(c); };
  size_t begin = 0, end = s.size();
  if (left) {
    while (begin < end) {
      size_t j = begin;
      char32_t c = utf8_next(s, j);
      if (!strip_it(c)) break;
      begin = j;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
      size_t j = start;
      char32_t c = utf8_next(s, j);
      if (j != end) {  // a stray continuation byte: treat it as one character
        start = end - 1;
        j = start;
        c = utf8_next(s, j);
      }
      if (!strip_it(c)) break;
      end = start;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (sep) {
    size_t pos = 0;
    while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
      size_t k = s.find(*sep, pos);
      if (k == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, k - pos));
      pos = k + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  size_t i = 0;
  auto skip_space = [&] {
    while (i < s.size()) {
      size_t j = i;
      if (!is_py_space(utf8_next(s, j))) break;
      i = j;
    }
  };
  skip_space();
  while (i < s.size()) {
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
      // The rest, with trailing whitespace removed, is the last piece.
      out.push_back(py_strip(s.substr(i), std::nullopt, false, true));
      return out;
    }
    size_t start = i;
    while (i < s.size()) {
      size_t j = i;
      if (is_py_space(utf8_next(s, j))) break;
      i = j;
    }
    out.emplace_back(s.substr(start, i - start));
    skip_space();
  }
  return out;
}

std::vector<std::string> py_rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit) {
  if (maxsplit < 0) return py_split(s, sep, maxsplit);
  std::vector<std::string> out;
  if (sep) {
    size_t end = s.size();
    while (static_cast<int64_t>(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      size_t k = s.rfind(*sep, end - sep->size());
      if (k == std::string_view::npos) break;
      out.emplace_back(s.substr(k + sep->size(), end - k - sep->size()));
      end = k;
    }
    out.emplace_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
    return out;
  }
  std::u32string u = utf8_decode(s);
  size_t end = u.size();
  auto space = [&](size_t k) { return is_py_space(u[k]); };
  while (end > 0 && space(end - 1)) --end;
  while (end > 0) {
    if (static_cast<int64_t>(out.size()) >= maxsplit) {
      size_t b = 0;
      while (b < end && space(b)) ++b;
      out.push_back(utf8_encode(u.substr(b, end - b)));
      end = 0;
      break;
    }
    size_t start = end;
    while (start > 0 && !space(start - 1)) --start;
    out.push_back(utf8_encode(u.substr(start, end - start)));
    end = start;
    while (end > 0 && space(end - 1)) --end;
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> py_splitlines(std::string_view s, bool keepends) {
  std::vector<std::string> out;
  size_t start = 0, i = 0;
  while (i < s.size()) {
    size_t j = i;
    char32_t c = utf8_next(s, j);
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D ||
               c == 0x1E || c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) {
      i = j;
      continue;
    }
    size_t line_end = i;
    if (c == '\r' && j < s.size() && s[j] == '\n') ++j;
    out.emplace_back(s.substr(start, (keepends ? j : line_end) - start));
    start = i = j;
  }
  if (start < s.size()) out.emplace_back(s.substr(start));
  return out;
}

std::string py_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts repl before every character and at the end.
    int64_t n = 0;
    size_t i = 0;
    while (i <= s.size()) {
      if (count < 0 || n < count) {
        out += repl;
        ++n;
      }
      if (i == s.size()) break;
      size_t j = i;
      utf8_next(s, j);
      out += s.substr(i, j - i);
      i = j;
    }
    return out;
  }
  size_t pos = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    size_t k = s.find(old, pos);
    if (k == std::string_view::npos) break;
    out += s.substr(pos, k - pos);
    out += repl;
    pos = k + old.size();
    ++n;
  }
  out += s.substr(pos);
  return out;
}

int64_t py_count(std::string_view s, std::string_view sub) {
  if (sub.empty()) return static_cast<int64_t>(code_point_count(s)) + 1;
  int64_t n = 0;
  size_t pos = 0;
  while ((pos = s.find(sub, pos)) != std::string_view::npos) {
    ++n;
    pos += sub.size();
  }
  return n;
}

int64_t py_find(std::string_view s, std::string_view sub, bool reverse) {
  size_t k = reverse ? s.rfind(sub) : s.find(sub);
  if (k == std::string_view::npos) return -1;
  return static_cast<int64_t>(code_point_count(s.substr(0, k)));
}

namespace {

template <class F>
std::string map_chars(std::string_view s, F f) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) utf8_append(out, f(utf8_next(s, i)));
  return out;
}

}  // namespace

std::string py_upper(std::string_view s) { return map_chars(s, to_upper_cp); }
std::string py_lower(std::string_view s) { return map_chars(s, to_lower_cp); }
std::string py_swapcase(std::string_view s) {
  return map_chars(s, [](char32_t c) {
    char32_t u = to_upper_cp(c);
    return u != c ? u : to_lower_cp(c);
  });
}

std::string py_title(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = utf8_next(s, i);
    char32_t m = prev_cased ? to_lower_cp(c) : to_upper_cp(c);
    utf8_append(out, m);
    prev_cased = is_cased_letter(c);
  }
  return out;
}

std::string py_capitalize(std::string_view s) {
  std::string out;
  bool first = true;
  for (size_t i = 0; i < s.size();) {
    char32_t c = utf8_next(s, i);
    utf8_append(out, first ? to_upper_cp(c) : to_lower_cp(c));
    first = false;
  }
  return out;
}

bool py_islower(std::string_view s) {
  bool cased = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = utf8_next(s, i);
    if (to_upper_cp(c) != c) cased = true;          // a lowercase letter
    else if (to_lower_cp(c) != c) return false;     // an uppercase letter
  }
  return cased;
}

bool py_isupper(std::string_view s) {
  bool cased = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = utf8_next(s, i);
    if (to_lower_cp(c) != c) cased = true;
    else if (to_upper_cp(c) != c) return false;
  }
  return cased;
}

std::string py_str_repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    char32_t c = utf8_next(s, i);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (!is_py_printable(c)) {
      if (c < 0x100) std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(c));
      else if (c < 0x10000) std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      else std::snprintf(buf, sizeof buf, "\\U%08x", static_cast<unsigned>(c));
      out += buf;
    } else {
      utf8_append(out, c);
    }
  }
  out += quote;
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

void json_quote(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  char buf[16];
  size_t plain = 0;  // start of a run copied verbatim
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const char* esc = nullptr;
    switch (b) {
      case '"': esc = "\\\""; break;
      case '\\': esc = "\\\\"; break;
      case '\n': esc = "\\n"; break;
      case '\r': esc = "\\r"; break;
      case '\t': esc = "\\t"; break;
      case '\b': esc = "\\b"; break;
      case '\f': esc = "\\f"; break;
      default: break;
    }
    if (esc == nullptr && b >= 0x20 && (b < 0x80 || !ensure_ascii)) {
      ++i;
      continue;
    }
    out.append(s.substr(plain, i - plain));
    if (esc) {
      out += esc;
      ++i;
    } else if (b < 0x20) {
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(b));
      out += buf;
      ++i;
    } else {
      char32_t c = utf8_next(s, i);
      if (c >= 0x10000) {
        c -= 0x10000;
        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (c >> 10)),
                      static_cast<unsigned>(0xDC00 + (c & 0x3FF)));
      } else {
        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
      }
      out += buf;
    }
    plain = i;
  }
  out.append(s.substr(plain));
  out += '"';
}

}  // namespace troupe::jinja
