#include "runtime/text/jinja_string.hpp"

#include "runtime/text/jinja_value.hpp"

#include <locale.h>
#include <wctype.h>

#include <algorithm>
#include <cstdio>
#include <iterator>

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
      if (out.size() > max_string_bytes) fail_too_long();
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
    if (out.size() > max_string_bytes) fail_too_long();
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

struct special_case {
  char32_t cp;
  const char* mapped;  // UTF-8
};

// Generated from Python 3.11 (str.upper and str.title): the mappings glibc's simple
// case tables lack, sorted by code point.
constexpr special_case upper_special[] = {
    {0xdf, "\x53\x53"},
    {0x149, "\xca\xbc\x4e"},
    {0x1f0, "\x4a\xcc\x8c"},
    {0x390, "\xce\x99\xcc\x88\xcc\x81"},
    {0x3b0, "\xce\xa5\xcc\x88\xcc\x81"},
    {0x587, "\xd4\xb5\xd5\x92"},
    {0x1e96, "\x48\xcc\xb1"},
    {0x1e97, "\x54\xcc\x88"},
    {0x1e98, "\x57\xcc\x8a"},
    {0x1e99, "\x59\xcc\x8a"},
    {0x1e9a, "\x41\xca\xbe"},
    {0x1f50, "\xce\xa5\xcc\x93"},
    {0x1f52, "\xce\xa5\xcc\x93\xcc\x80"},
    {0x1f54, "\xce\xa5\xcc\x93\xcc\x81"},
    {0x1f56, "\xce\xa5\xcc\x93\xcd\x82"},
    {0x1f80, "\xe1\xbc\x88\xce\x99"},
    {0x1f81, "\xe1\xbc\x89\xce\x99"},
    {0x1f82, "\xe1\xbc\x8a\xce\x99"},
    {0x1f83, "\xe1\xbc\x8b\xce\x99"},
    {0x1f84, "\xe1\xbc\x8c\xce\x99"},
    {0x1f85, "\xe1\xbc\x8d\xce\x99"},
    {0x1f86, "\xe1\xbc\x8e\xce\x99"},
    {0x1f87, "\xe1\xbc\x8f\xce\x99"},
    {0x1f88, "\xe1\xbc\x88\xce\x99"},
    {0x1f89, "\xe1\xbc\x89\xce\x99"},
    {0x1f8a, "\xe1\xbc\x8a\xce\x99"},
    {0x1f8b, "\xe1\xbc\x8b\xce\x99"},
    {0x1f8c, "\xe1\xbc\x8c\xce\x99"},
    {0x1f8d, "\xe1\xbc\x8d\xce\x99"},
    {0x1f8e, "\xe1\xbc\x8e\xce\x99"},
    {0x1f8f, "\xe1\xbc\x8f\xce\x99"},
    {0x1f90, "\xe1\xbc\xa8\xce\x99"},
    {0x1f91, "\xe1\xbc\xa9\xce\x99"},
    {0x1f92, "\xe1\xbc\xaa\xce\x99"},
    {0x1f93, "\xe1\xbc\xab\xce\x99"},
    {0x1f94, "\xe1\xbc\xac\xce\x99"},
    {0x1f95, "\xe1\xbc\xad\xce\x99"},
    {0x1f96, "\xe1\xbc\xae\xce\x99"},
    {0x1f97, "\xe1\xbc\xaf\xce\x99"},
    {0x1f98, "\xe1\xbc\xa8\xce\x99"},
    {0x1f99, "\xe1\xbc\xa9\xce\x99"},
    {0x1f9a, "\xe1\xbc\xaa\xce\x99"},
    {0x1f9b, "\xe1\xbc\xab\xce\x99"},
    {0x1f9c, "\xe1\xbc\xac\xce\x99"},
    {0x1f9d, "\xe1\xbc\xad\xce\x99"},
    {0x1f9e, "\xe1\xbc\xae\xce\x99"},
    {0x1f9f, "\xe1\xbc\xaf\xce\x99"},
    {0x1fa0, "\xe1\xbd\xa8\xce\x99"},
    {0x1fa1, "\xe1\xbd\xa9\xce\x99"},
    {0x1fa2, "\xe1\xbd\xaa\xce\x99"},
    {0x1fa3, "\xe1\xbd\xab\xce\x99"},
    {0x1fa4, "\xe1\xbd\xac\xce\x99"},
    {0x1fa5, "\xe1\xbd\xad\xce\x99"},
    {0x1fa6, "\xe1\xbd\xae\xce\x99"},
    {0x1fa7, "\xe1\xbd\xaf\xce\x99"},
    {0x1fa8, "\xe1\xbd\xa8\xce\x99"},
    {0x1fa9, "\xe1\xbd\xa9\xce\x99"},
    {0x1faa, "\xe1\xbd\xaa\xce\x99"},
    {0x1fab, "\xe1\xbd\xab\xce\x99"},
    {0x1fac, "\xe1\xbd\xac\xce\x99"},
    {0x1fad, "\xe1\xbd\xad\xce\x99"},
    {0x1fae, "\xe1\xbd\xae\xce\x99"},
    {0x1faf, "\xe1\xbd\xaf\xce\x99"},
    {0x1fb2, "\xe1\xbe\xba\xce\x99"},
    {0x1fb3, "\xce\x91\xce\x99"},
    {0x1fb4, "\xce\x86\xce\x99"},
    {0x1fb6, "\xce\x91\xcd\x82"},
    {0x1fb7, "\xce\x91\xcd\x82\xce\x99"},
    {0x1fbc, "\xce\x91\xce\x99"},
    {0x1fc2, "\xe1\xbf\x8a\xce\x99"},
    {0x1fc3, "\xce\x97\xce\x99"},
    {0x1fc4, "\xce\x89\xce\x99"},
    {0x1fc6, "\xce\x97\xcd\x82"},
    {0x1fc7, "\xce\x97\xcd\x82\xce\x99"},
    {0x1fcc, "\xce\x97\xce\x99"},
    {0x1fd2, "\xce\x99\xcc\x88\xcc\x80"},
    {0x1fd3, "\xce\x99\xcc\x88\xcc\x81"},
    {0x1fd6, "\xce\x99\xcd\x82"},
    {0x1fd7, "\xce\x99\xcc\x88\xcd\x82"},
    {0x1fe2, "\xce\xa5\xcc\x88\xcc\x80"},
    {0x1fe3, "\xce\xa5\xcc\x88\xcc\x81"},
    {0x1fe4, "\xce\xa1\xcc\x93"},
    {0x1fe6, "\xce\xa5\xcd\x82"},
    {0x1fe7, "\xce\xa5\xcc\x88\xcd\x82"},
    {0x1ff2, "\xe1\xbf\xba\xce\x99"},
    {0x1ff3, "\xce\xa9\xce\x99"},
    {0x1ff4, "\xce\x8f\xce\x99"},
    {0x1ff6, "\xce\xa9\xcd\x82"},
    {0x1ff7, "\xce\xa9\xcd\x82\xce\x99"},
    {0x1ffc, "\xce\xa9\xce\x99"},
    {0xfb00, "\x46\x46"},
    {0xfb01, "\x46\x49"},
    {0xfb02, "\x46\x4c"},
    {0xfb03, "\x46\x46\x49"},
    {0xfb04, "\x46\x46\x4c"},
    {0xfb05, "\x53\x54"},
    {0xfb06, "\x53\x54"},
    {0xfb13, "\xd5\x84\xd5\x86"},
    {0xfb14, "\xd5\x84\xd4\xb5"},
    {0xfb15, "\xd5\x84\xd4\xbb"},
    {0xfb16, "\xd5\x8e\xd5\x86"},
    {0xfb17, "\xd5\x84\xd4\xbd"},
};
constexpr special_case title_special[] = {
    {0xdf, "\x53\x73"},
    {0x1c4, "\xc7\x85"},
    {0x1c5, "\xc7\x85"},
    {0x1c6, "\xc7\x85"},
    {0x1c7, "\xc7\x88"},
    {0x1c8, "\xc7\x88"},
    {0x1c9, "\xc7\x88"},
    {0x1ca, "\xc7\x8b"},
    {0x1cb, "\xc7\x8b"},
    {0x1cc, "\xc7\x8b"},
    {0x1f1, "\xc7\xb2"},
    {0x1f2, "\xc7\xb2"},
    {0x1f3, "\xc7\xb2"},
    {0x587, "\xd4\xb5\xd6\x82"},
    {0x10d0, "\xe1\x83\x90"},
    {0x10d1, "\xe1\x83\x91"},
    {0x10d2, "\xe1\x83\x92"},
    {0x10d3, "\xe1\x83\x93"},
    {0x10d4, "\xe1\x83\x94"},
    {0x10d5, "\xe1\x83\x95"},
    {0x10d6, "\xe1\x83\x96"},
    {0x10d7, "\xe1\x83\x97"},
    {0x10d8, "\xe1\x83\x98"},
    {0x10d9, "\xe1\x83\x99"},
    {0x10da, "\xe1\x83\x9a"},
    {0x10db, "\xe1\x83\x9b"},
    {0x10dc, "\xe1\x83\x9c"},
    {0x10dd, "\xe1\x83\x9d"},
    {0x10de, "\xe1\x83\x9e"},
    {0x10df, "\xe1\x83\x9f"},
    {0x10e0, "\xe1\x83\xa0"},
    {0x10e1, "\xe1\x83\xa1"},
    {0x10e2, "\xe1\x83\xa2"},
    {0x10e3, "\xe1\x83\xa3"},
    {0x10e4, "\xe1\x83\xa4"},
    {0x10e5, "\xe1\x83\xa5"},
    {0x10e6, "\xe1\x83\xa6"},
    {0x10e7, "\xe1\x83\xa7"},
    {0x10e8, "\xe1\x83\xa8"},
    {0x10e9, "\xe1\x83\xa9"},
    {0x10ea, "\xe1\x83\xaa"},
    {0x10eb, "\xe1\x83\xab"},
    {0x10ec, "\xe1\x83\xac"},
    {0x10ed, "\xe1\x83\xad"},
    {0x10ee, "\xe1\x83\xae"},
    {0x10ef, "\xe1\x83\xaf"},
    {0x10f0, "\xe1\x83\xb0"},
    {0x10f1, "\xe1\x83\xb1"},
    {0x10f2, "\xe1\x83\xb2"},
    {0x10f3, "\xe1\x83\xb3"},
    {0x10f4, "\xe1\x83\xb4"},
    {0x10f5, "\xe1\x83\xb5"},
    {0x10f6, "\xe1\x83\xb6"},
    {0x10f7, "\xe1\x83\xb7"},
    {0x10f8, "\xe1\x83\xb8"},
    {0x10f9, "\xe1\x83\xb9"},
    {0x10fa, "\xe1\x83\xba"},
    {0x10fd, "\xe1\x83\xbd"},
    {0x10fe, "\xe1\x83\xbe"},
    {0x10ff, "\xe1\x83\xbf"},
    {0x1f80, "\xe1\xbe\x88"},
    {0x1f81, "\xe1\xbe\x89"},
    {0x1f82, "\xe1\xbe\x8a"},
    {0x1f83, "\xe1\xbe\x8b"},
    {0x1f84, "\xe1\xbe\x8c"},
    {0x1f85, "\xe1\xbe\x8d"},
    {0x1f86, "\xe1\xbe\x8e"},
    {0x1f87, "\xe1\xbe\x8f"},
    {0x1f88, "\xe1\xbe\x88"},
    {0x1f89, "\xe1\xbe\x89"},
    {0x1f8a, "\xe1\xbe\x8a"},
    {0x1f8b, "\xe1\xbe\x8b"},
    {0x1f8c, "\xe1\xbe\x8c"},
    {0x1f8d, "\xe1\xbe\x8d"},
    {0x1f8e, "\xe1\xbe\x8e"},
    {0x1f8f, "\xe1\xbe\x8f"},
    {0x1f90, "\xe1\xbe\x98"},
    {0x1f91, "\xe1\xbe\x99"},
    {0x1f92, "\xe1\xbe\x9a"},
    {0x1f93, "\xe1\xbe\x9b"},
    {0x1f94, "\xe1\xbe\x9c"},
    {0x1f95, "\xe1\xbe\x9d"},
    {0x1f96, "\xe1\xbe\x9e"},
    {0x1f97, "\xe1\xbe\x9f"},
    {0x1f98, "\xe1\xbe\x98"},
    {0x1f99, "\xe1\xbe\x99"},
    {0x1f9a, "\xe1\xbe\x9a"},
    {0x1f9b, "\xe1\xbe\x9b"},
    {0x1f9c, "\xe1\xbe\x9c"},
    {0x1f9d, "\xe1\xbe\x9d"},
    {0x1f9e, "\xe1\xbe\x9e"},
    {0x1f9f, "\xe1\xbe\x9f"},
    {0x1fa0, "\xe1\xbe\xa8"},
    {0x1fa1, "\xe1\xbe\xa9"},
    {0x1fa2, "\xe1\xbe\xaa"},
    {0x1fa3, "\xe1\xbe\xab"},
    {0x1fa4, "\xe1\xbe\xac"},
    {0x1fa5, "\xe1\xbe\xad"},
    {0x1fa6, "\xe1\xbe\xae"},
    {0x1fa7, "\xe1\xbe\xaf"},
    {0x1fa8, "\xe1\xbe\xa8"},
    {0x1fa9, "\xe1\xbe\xa9"},
    {0x1faa, "\xe1\xbe\xaa"},
    {0x1fab, "\xe1\xbe\xab"},
    {0x1fac, "\xe1\xbe\xac"},
    {0x1fad, "\xe1\xbe\xad"},
    {0x1fae, "\xe1\xbe\xae"},
    {0x1faf, "\xe1\xbe\xaf"},
    {0x1fb2, "\xe1\xbe\xba\xcd\x85"},
    {0x1fb3, "\xe1\xbe\xbc"},
    {0x1fb4, "\xce\x86\xcd\x85"},
    {0x1fb7, "\xce\x91\xcd\x82\xcd\x85"},
    {0x1fbc, "\xe1\xbe\xbc"},
    {0x1fc2, "\xe1\xbf\x8a\xcd\x85"},
    {0x1fc3, "\xe1\xbf\x8c"},
    {0x1fc4, "\xce\x89\xcd\x85"},
    {0x1fc7, "\xce\x97\xcd\x82\xcd\x85"},
    {0x1fcc, "\xe1\xbf\x8c"},
    {0x1ff2, "\xe1\xbf\xba\xcd\x85"},
    {0x1ff3, "\xe1\xbf\xbc"},
    {0x1ff4, "\xce\x8f\xcd\x85"},
    {0x1ff7, "\xce\xa9\xcd\x82\xcd\x85"},
    {0x1ffc, "\xe1\xbf\xbc"},
    {0xfb00, "\x46\x66"},
    {0xfb01, "\x46\x69"},
    {0xfb02, "\x46\x6c"},
    {0xfb03, "\x46\x66\x69"},
    {0xfb04, "\x46\x66\x6c"},
    {0xfb05, "\x53\x74"},
    {0xfb06, "\x53\x74"},
    {0xfb13, "\xd5\x84\xd5\xb6"},
    {0xfb14, "\xd5\x84\xd5\xa5"},
    {0xfb15, "\xd5\x84\xd5\xab"},
    {0xfb16, "\xd5\x8e\xd5\xb6"},
    {0xfb17, "\xd5\x84\xd5\xad"},
};

const char* find_special(const special_case* begin, const special_case* end, char32_t c) {
  auto it = std::lower_bound(begin, end, c, [](const special_case& e, char32_t x) { return e.cp < x; });
  return it != end && it->cp == c ? it->mapped : nullptr;
}

void append_upper(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(to_upper_cp(c));
  } else if (const char* m = find_special(std::begin(upper_special), std::end(upper_special), c)) {
    out += m;
  } else {
    utf8_append(out, to_upper_cp(c));
  }
}

void append_title(std::string& out, char32_t c) {
  if (const char* m = find_special(std::begin(title_special), std::end(title_special), c)) {
    out += m;
  } else {
    append_upper(out, c);
  }
}

bool case_ignorable(char32_t c) {
  return c == '\'' || c == '.' || c == ':' || c == '^' || c == '`' || c == 0xB7 || c == 0x2019 ||
         (c >= 0x300 && c <= 0x36F);
}

// Python's full lowercase of u[i]: U+0130 becomes two characters, and a capital sigma ending a
// word becomes the final sigma.
void append_lower(std::string& out, const std::u32string& u, size_t i) {
  const char32_t c = u[i];
  if (c == 0x130) {
    out += "i\xcc\x87";
    return;
  }
  if (c == 0x3A3) {
    auto cased_before = [&] {
      for (size_t j = i; j-- > 0;) {
        if (case_ignorable(u[j])) continue;
        return is_cased_letter(u[j]);
      }
      return false;
    };
    auto cased_after = [&] {
      for (size_t j = i + 1; j < u.size(); ++j) {
        if (case_ignorable(u[j])) continue;
        return is_cased_letter(u[j]);
      }
      return false;
    };
    utf8_append(out, cased_before() && !cased_after() ? 0x3C2 : 0x3C3);
    return;
  }
  utf8_append(out, to_lower_cp(c));
}

}  // namespace

std::string py_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) append_upper(out, utf8_next(s, i));
  return out;
}

std::string py_upper_char(char32_t c) {
  std::string out;
  append_upper(out, c);
  return out;
}

std::string py_lower(std::string_view s) {
  if (is_ascii(s)) {
    std::string out(s);
    for (char& c : out)
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    return out;
  }
  const std::u32string u = utf8_decode(s);
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < u.size(); ++i) append_lower(out, u, i);
  return out;
}

std::string py_swapcase(std::string_view s) {
  const std::u32string u = utf8_decode(s);
  std::string out;
  for (size_t i = 0; i < u.size(); ++i) {
    const char32_t c = u[i];
    if (to_lower_cp(c) != c || c == 0x130) append_lower(out, u, i);
    else if (to_upper_cp(c) != c || find_special(std::begin(upper_special), std::end(upper_special), c)) append_upper(out, c);
    else utf8_append(out, c);
  }
  return out;
}

std::string py_title(std::string_view s) {
  const std::u32string u = utf8_decode(s);
  std::string out;
  bool prev_cased = false;
  for (size_t i = 0; i < u.size(); ++i) {
    if (prev_cased) append_lower(out, u, i);
    else append_title(out, u[i]);
    prev_cased = is_cased_letter(u[i]);
  }
  return out;
}

std::string py_capitalize(std::string_view s) {
  const std::u32string u = utf8_decode(s);
  std::string out;
  for (size_t i = 0; i < u.size(); ++i) {
    if (i == 0) append_title(out, u[i]);
    else append_lower(out, u, i);
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
  out.reserve(s.size() + 2);
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    // Runs of printable ASCII other than the quote and backslash are copied as they are.
    size_t run = i;
    while (run < s.size()) {
      const auto b = static_cast<unsigned char>(s[run]);
      if (b < 0x20 || b >= 0x7f || b == static_cast<unsigned char>(quote) || b == '\\') break;
      ++run;
    }
    if (run > i) {
      out.append(s.substr(i, run - i));
      i = run;
      continue;
    }
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
