#include "runtime/text/jinja_lexer.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "runtime/text/jinja_string.hpp"
#include "runtime/text/jinja_value.hpp"

namespace troupe::jinja {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// jinja2 turns \r\n and \r into \n and drops one trailing newline (keep_trailing_newline=False).
std::string normalize(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

int count_newlines(std::string_view s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }

// Python's \s* from pos; returns the new position.
size_t skip_space(std::string_view s, size_t pos) {
  while (pos < s.size()) {
    size_t j = pos;
    if (!is_py_space(utf8_next(s, j))) break;
    pos = j;
  }
  return pos;
}

bool all_space(std::string_view s) {
  if (s.empty()) return false;  // \s+ needs one character
  return skip_space(s, 0) == s.size();
}

class lexer {
 public:
  explicit lexer(std::string_view source) : src_(normalize(source)) {}

  std::vector<token> run() {
    while (pos_ < src_.size()) {
      size_t k = find_tag(pos_);
      if (k == std::string::npos) {
        emit_data(src_.substr(pos_));
        line_ += count_newlines(std::string_view(src_).substr(pos_));
        pos_ = src_.size();
        break;
      }
      const char kind = src_[k + 1];
      char sign = k + 2 < src_.size() && (src_[k + 2] == '-' || src_[k + 2] == '+') ? src_[k + 2] : 0;
      size_t raw_end = kind == '%' ? match_raw_begin(k) : std::string::npos;
      lex_text(std::string_view(src_).substr(pos_, k - pos_), sign, kind != '{');
      pos_ = k;
      if (raw_end != std::string::npos) {
        lex_raw(raw_end);
      } else if (kind == '#') {
        lex_comment(k + 2 + (sign ? 1 : 0));
      } else {
        lex_tag(k + 2 + (sign ? 1 : 0), kind == '%');
      }
    }
    tokens_.push_back(token{tok::eof, line_, {}, 0, 0.0});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void error(const std::string& msg) const { fail(msg, line_); }

  size_t find_tag(size_t from) const {
    for (size_t k = src_.find('{', from); k != std::string::npos; k = src_.find('{', k + 1)) {
      if (k + 1 < src_.size() && (src_[k + 1] == '{' || src_[k + 1] == '%' || src_[k + 1] == '#')) return k;
    }
    return std::string::npos;
  }

  // {%(-|+|)\s*raw\s*(-%}\s*|%}) at k: the end of the match, or npos.
  size_t match_raw_begin(size_t k) const {
    size_t p = k + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p = skip_space(src_, p);
    if (src_.compare(p, 3, "raw") != 0) return std::string::npos;
    p = skip_space(src_, p + 3);
    if (src_.compare(p, 3, "-%}") == 0) return skip_space(src_, p + 3);
    if (src_.compare(p, 2, "%}") == 0) return p + 2;
    return std::string::npos;
  }

  void emit_data(std::string_view text) {
    if (!text.empty()) tokens_.push_back(token{tok::data, line_, std::string(text), 0, 0.0});
  }

  // The text before a tag, with {%- / -%} stripping and lstrip_blocks applied.
  void lex_text(std::string_view text, char sign, bool lstrip_applies) {
    const int newlines = count_newlines(text);
    if (sign == '-') {
      text = text.substr(0, py_strip(text, std::nullopt, false, true).size());
    } else if (sign != '+' && lstrip_applies) {
      size_t l_pos = text.rfind('\n');
      l_pos = l_pos == std::string_view::npos ? 0 : l_pos + 1;
      if ((l_pos > 0 || line_starting_) && all_space(text.substr(l_pos))) text = text.substr(0, l_pos);
    }
    emit_data(text);
    line_ += newlines;
  }

  // After a tag's end: trim_blocks' newline, or \s* after a '-'.
  void finish_tag(size_t end) {
    line_ += count_newlines(std::string_view(src_).substr(pos_, end - pos_));
    line_starting_ = end > 0 && src_[end - 1] == '\n';
    pos_ = end;
  }

  void lex_comment(size_t p) {
    pos_ = p;
    for (; p < src_.size(); ++p) {
      if (src_[p] == '+' && src_.compare(p + 1, 2, "#}") == 0) return finish_tag(p + 3);
      if (src_[p] == '-' && src_.compare(p + 1, 2, "#}") == 0) return finish_tag(skip_space(src_, p + 3));
      if (src_.compare(p, 2, "#}") == 0) return finish_tag(p + 2 < src_.size() && src_[p + 2] == '\n' ? p + 3 : p + 2);
    }
    error("Missing end of comment tag");
  }

  void lex_raw(size_t body) {
    line_ += count_newlines(std::string_view(src_).substr(pos_, body - pos_));
    for (size_t k = find_tag(body); k != std::string::npos; k = find_tag(k + 1)) {
      if (src_[k + 1] != '%') continue;
      size_t p = k + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p = skip_space(src_, p);
      if (src_.compare(p, 6, "endraw") != 0) continue;
      p = skip_space(src_, p + 6);
      size_t end;
      if (src_.compare(p, 3, "+%}") == 0) end = p + 3;
      else if (src_.compare(p, 3, "-%}") == 0) end = skip_space(src_, p + 3);
      else if (src_.compare(p, 2, "%}") == 0) end = p + 2 < src_.size() && src_[p + 2] == '\n' ? p + 3 : p + 2;
      else continue;
      line_starting_ = body > 0 && src_[body - 1] == '\n';
      lex_text(std::string_view(src_).substr(body, k - body), sign, true);
      pos_ = k;
      finish_tag(end);
      return;
    }
    error("Missing end of raw directive");
  }

  void lex_tag(size_t p, bool block) {
    tokens_.push_back(token{block ? tok::block_begin : tok::var_begin, line_, {}, 0, 0.0});
    line_ += count_newlines(std::string_view(src_).substr(pos_, p - pos_));
    pos_ = p;
    std::vector<char> balance;
    while (true) {
      if (pos_ >= src_.size()) return;  // the parser reports the missing end
      if (balance.empty()) {
        size_t end = match_tag_end(block);
        if (end != std::string::npos) {
          tokens_.push_back(token{block ? tok::block_end : tok::var_end, line_, {}, 0, 0.0});
          finish_tag(end);
          return;
        }
      }
      size_t ws = skip_space(src_, pos_);
      if (ws != pos_) {
        line_ += count_newlines(std::string_view(src_).substr(pos_, ws - pos_));
        pos_ = ws;
        continue;
      }
      const char c = src_[pos_];
      if (is_digit(c) && lex_number()) continue;
      if (is_name_start(c)) {
        size_t e = pos_;
        while (e < src_.size() && is_name_char(src_[e])) ++e;
        tokens_.push_back(token{tok::name, line_, src_.substr(pos_, e - pos_), 0, 0.0});
        pos_ = e;
        continue;
      }
      if (c == '\'' || c == '"') {
        lex_string(c);
        continue;
      }
      lex_operator(balance);
    }
  }

  size_t match_tag_end(bool block) const {
    if (block) {
      if (src_.compare(pos_, 3, "+%}") == 0) return pos_ + 3;
      if (src_.compare(pos_, 3, "-%}") == 0) return skip_space(src_, pos_ + 3);
      if (src_.compare(pos_, 2, "%}") == 0)
        return pos_ + 2 < src_.size() && src_[pos_ + 2] == '\n' ? pos_ + 3 : pos_ + 2;
    } else {
      if (src_.compare(pos_, 3, "-}}") == 0) return skip_space(src_, pos_ + 3);
      if (src_.compare(pos_, 2, "}}") == 0) return pos_ + 2;
    }
    return std::string::npos;
  }

  // Digits with optional single underscores between them, as jinja2's number patterns allow.
  size_t digits(size_t p, bool (*ok)(char)) const {
    size_t start = p;
    while (p < src_.size()) {
      if (ok(src_[p])) {
        ++p;
      } else if (src_[p] == '_' && p > start && p + 1 < src_.size() && ok(src_[p + 1])) {
        ++p;
      } else {
        break;
      }
    }
    return p;
  }

  bool lex_number() {
    auto dec = [](char ch) { return is_digit(ch); };
    const bool after_dot = pos_ > 0 && src_[pos_ - 1] == '.';
    // float: digits ((.digits)? e[+-]digits | .digits)
    size_t p = digits(pos_, dec);
    size_t float_end = std::string::npos;
    if (!after_dot) {
      size_t q = p;
      bool frac = false;
      if (q < src_.size() && src_[q] == '.' && q + 1 < src_.size() && is_digit(src_[q + 1])) {
        q = digits(q + 1, dec);
        frac = true;
      }
      if (q < src_.size() && (src_[q] == 'e' || src_[q] == 'E')) {
        size_t r = q + 1;
        if (r < src_.size() && (src_[r] == '+' || src_[r] == '-')) ++r;
        if (r < src_.size() && is_digit(src_[r])) float_end = digits(r, dec);
      }
      if (float_end == std::string::npos && frac) float_end = q;
    }
    if (float_end != std::string::npos) {
      std::string text;
      for (size_t i = pos_; i < float_end; ++i)
        if (src_[i] != '_') text += src_[i];
      token t{tok::floating, line_, text, 0, std::strtod(text.c_str(), nullptr)};
      tokens_.push_back(std::move(t));
      pos_ = float_end;
      return true;
    }
    int base = 10;
    size_t start = pos_, end;
    if (src_[pos_] == '0' && pos_ + 1 < src_.size() && std::string_view("xXoObB").find(src_[pos_ + 1]) != std::string_view::npos) {
      const char b = static_cast<char>(src_[pos_ + 1] | 0x20);
      base = b == 'x' ? 16 : (b == 'o' ? 8 : 2);
      start = pos_ + 2;
      if (start < src_.size() && src_[start] == '_') ++start;
      auto ok = base == 16 ? +[](char ch) { return std::isxdigit(static_cast<unsigned char>(ch)) != 0; }
                : base == 8 ? +[](char ch) { return ch >= '0' && ch <= '7'; }
                            : +[](char ch) { return ch == '0' || ch == '1'; };
      end = digits(start, ok);
      if (end == start) error("invalid number literal");
    } else if (src_[pos_] == '0') {
      end = digits(pos_, [](char ch) { return ch == '0'; });
    } else {
      end = digits(pos_, dec);
    }
    std::string text;
    for (size_t i = start; i < end; ++i)
      if (src_[i] != '_') text += src_[i];
    errno = 0;
    long long v = std::strtoll(text.c_str(), nullptr, base);
    if (errno == ERANGE) error("integer literal too large: " + text);
    tokens_.push_back(token{tok::integer, line_, src_.substr(pos_, end - pos_), v, 0.0});
    pos_ = end;
    return true;
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Python's unicode-escape decoding of a string literal's body.
  void lex_string(char quote) {
    const int start_line = line_;
    size_t p = pos_ + 1;
    std::string out;
    while (true) {
      if (p >= src_.size()) error("unexpected char '" + std::string(1, quote) + "'");
      const char c = src_[p];
      if (c == quote) break;
      if (c != '\\') {
        if (c == '\n') ++line_;
        out += c;
        ++p;
        continue;
      }
      if (p + 1 >= src_.size()) error("unexpected char '" + std::string(1, quote) + "'");
      const char e = src_[p + 1];
      p += 2;
      switch (e) {
        case '\n': ++line_; break;  // line continuation
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x':
        case 'u':
        case 'U': {
          const int n = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
          char32_t cp = 0;
          for (int i = 0; i < n; ++i) {
            int h = p < src_.size() ? hex_value(src_[p]) : -1;
            if (h < 0) error(std::string("truncated \\") + e + " escape in string literal");
            cp = cp * 16 + static_cast<char32_t>(h);
            ++p;
          }
          if (cp > 0x10FFFF) error("illegal Unicode character in string literal");
          utf8_append(out, cp);
          break;
        }
        case 'N': error("\\N{...} escapes in string literals are not supported");
        default:
          if (e >= '0' && e <= '7') {
            char32_t cp = static_cast<char32_t>(e - '0');
            for (int i = 0; i < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++i, ++p)
              cp = cp * 8 + static_cast<char32_t>(src_[p] - '0');
            utf8_append(out, cp);
          } else {
            out += '\\';  // unknown escapes stay as written
            --p;
          }
      }
    }
    tokens_.push_back(token{tok::string, start_line, std::move(out), 0, 0.0});
    pos_ = p + 1;
  }

  void lex_operator(std::vector<char>& balance) {
    static constexpr std::string_view two[] = {"//", "**", "==", "!=", ">=", "<="};
    std::string op;
    for (auto t : two) {
      if (src_.compare(pos_, 2, t) == 0) {
        op = t;
        break;
      }
    }
    if (op.empty()) {
      const char c = src_[pos_];
      if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == std::string_view::npos) {
        size_t j = pos_;
        std::string ch;
        utf8_append(ch, utf8_next(src_, j));
        error("unexpected char '" + ch + "'");
      }
      op = std::string(1, c);
      if (c == '(' || c == '[' || c == '{') {
        balance.push_back(c == '(' ? ')' : (c == '[' ? ']' : '}'));
      } else if (c == ')' || c == ']' || c == '}') {
        if (balance.empty()) error("unexpected '" + op + "'");
        if (balance.back() != c) error("unexpected '" + op + "', expected '" + std::string(1, balance.back()) + "'");
        balance.pop_back();
      }
    }
    tokens_.push_back(token{tok::op, line_, op, 0, 0.0});
    pos_ += op.size();
  }

  std::string src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<token> tokens_;
};

}  // namespace

std::vector<token> tokenize(std::string_view source) { return lexer(source).run(); }

}  // namespace troupe::jinja
