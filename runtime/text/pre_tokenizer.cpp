#include "runtime/text/pre_tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

#include "runtime/text/unicode.hpp"

namespace troupe {

struct split_regex::code {
  pcre2_code* re = nullptr;
  bool jit = false;
  ~code() { pcre2_code_free(re); }
};

namespace {

// Unicode White_Space, which Oniguruma's and Rust's \s match. PCRE2's \s (with UCP) is
// \p{Z} plus \t-\r, which leaves out U+0085.
constexpr std::string_view white_space_items = "\\t-\\r\\x{85}\\p{Z}";

std::string rewrite_white_space(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 32);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[i + 1];
      ++i;
      if (n == 's') {
        if (in_class) out.append(white_space_items);
        else out.append("[").append(white_space_items).append("]");
      } else if (n == 'S' && !in_class) {
        out.append("[^").append(white_space_items).append("]");
      } else {
        out.push_back(c);
        out.push_back(n);
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      // A ']' first in a class (after an optional '^') is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out.push_back(p[++i]);
      if (i + 1 < p.size() && p[i + 1] == ']') out.push_back(p[++i]);
      continue;
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
  }
  return out;
}

// Per-thread PCRE2 match state: encode() is const and may run on many threads at once.
struct match_state {
  pcre2_match_data* data = pcre2_match_data_create(8, nullptr);
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  match_state() {
    if (context && stack) pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~match_state() {
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(stack);
    pcre2_match_data_free(data);
  }
  match_state(const match_state&) = delete;
  match_state& operator=(const match_state&) = delete;
};

match_state& thread_match_state() {
  thread_local match_state s;
  return s;
}

}  // namespace

result<split_regex> split_regex::compile(std::string_view pattern, bool literal) {
  split_regex r;
  r.pattern_ = std::string(pattern);
  const std::string source = literal ? std::string(pattern) : rewrite_white_space(pattern);
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  // PCRE2 refuses UCP beside LITERAL, and a literal needs no character classes.
  const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(source.data()), source.size(), options,
                                 &err, &err_offset, nullptr);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return make_error(fmt::format("regular expression /{}/ does not compile: {} (at offset {})", pattern,
                                  reinterpret_cast<const char*>(msg), err_offset));
  }
  auto c = std::make_shared<code>();
  c->re = re;
  // Without JIT support (some platforms) the interpreter gives the same matches, slower.
  c->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
  r.code_ = std::move(c);
  return r;
}

void split_regex::split(std::string_view text, size_t base, split_behavior behavior, bool invert,
                        std::vector<text_span>& out) const {
  if (text.empty()) return;
  // Alternate gaps and matches: (span, is_delimiter).
  struct part {
    size_t begin, end;
    bool delim;
  };
  std::vector<part> parts;
  match_state& ms = thread_match_state();
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0, gap_begin = 0;
  while (start < text.size()) {
    int rc = code_->jit ? pcre2_jit_match(code_->re, subject, text.size(), start, 0, ms.data, ms.context)
                        : pcre2_match(code_->re, subject, text.size(), start, PCRE2_NO_UTF_CHECK, ms.data,
                                      ms.context);
    if (rc < 0) break;  // no match, or a resource limit: the rest is one gap
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(ms.data);
    const size_t m_begin = ov[0], m_end = ov[1];
    if (m_end <= m_begin) {
      // An empty match splits nothing; step over one character.
      start = m_begin + unicode::utf8_seq_len(static_cast<uint8_t>(text[m_begin < text.size() ? m_begin : 0]));
      continue;
    }
    if (m_begin > gap_begin) parts.push_back({gap_begin, m_begin, invert});
    parts.push_back({m_begin, m_end, !invert});
    gap_begin = start = m_end;
  }
  if (gap_begin < text.size()) parts.push_back({gap_begin, text.size(), invert});

  auto emit = [&](size_t b, size_t e) {
    if (e > b) out.push_back({base + b, e - b});
  };
  switch (behavior) {
    case split_behavior::isolated:
      for (const part& p : parts) emit(p.begin, p.end);
      break;
    case split_behavior::removed:
      for (const part& p : parts)
        if (!p.delim) emit(p.begin, p.end);
      break;
    case split_behavior::merged_with_previous: {
      size_t b = 0;
      for (size_t i = 0; i < parts.size(); ++i) {
        if (parts[i].delim) {
          emit(b, parts[i].end);
          b = parts[i].end;
        }
      }
      emit(b, text.size());
      break;
    }
    case split_behavior::merged_with_next: {
      size_t b = 0;
      for (const part& p : parts) {
        if (p.delim) {
          emit(b, p.begin);
          b = p.begin;
        }
      }
      emit(b, text.size());
      break;
    }
    case split_behavior::contiguous: {
      size_t i = 0;
      while (i < parts.size()) {
        size_t j = i + 1;
        if (parts[i].delim)
          while (j < parts.size() && parts[j].delim) ++j;
        emit(parts[i].begin, parts[j - 1].end);
        i = j;
      }
      break;
    }
  }
}

void pre_split(const std::vector<split_step>& steps, std::string_view text, std::vector<text_span>& out) {
  out.clear();
  if (text.empty()) return;
  out.push_back({0, text.size()});
  std::vector<text_span> next;
  for (const split_step& s : steps) {
    next.clear();
    for (const text_span& p : out)
      s.re.split(text.substr(p.offset, p.size), p.offset, s.behavior, s.invert, next);
    out.swap(next);
  }
}

}  // namespace troupe
