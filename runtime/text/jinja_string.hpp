// jinja_string: Python's str operations over UTF-8 (code-point indexing, Unicode whitespace,
// case mapping, repr quoting, HTML and JSON escaping) for the chat-template interpreter.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::jinja {

// Decodes one code point at s[i] and advances i; invalid bytes decode as themselves (U+0080..FF)
// so that no input makes the interpreter loop or read out of range.
char32_t utf8_next(std::string_view s, size_t& i);
void utf8_append(std::string& out, char32_t cp);
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
bool is_ascii(std::string_view s);
size_t code_point_count(std::string_view s);
// Byte offset of the n-th code point (s.size() when past the end).
size_t byte_offset(std::string_view s, size_t n);

// str.isspace(), which is also what Python's \s and str.strip() use.
bool is_py_space(char32_t c);
// str.isprintable() per character, which decides what repr() escapes.
bool is_py_printable(char32_t c);

std::string py_strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right);
std::vector<std::string> py_split(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> py_rsplit(std::string_view s, const std::optional<std::string>& sep, int64_t maxsplit);
std::vector<std::string> py_splitlines(std::string_view s, bool keepends);
std::string py_replace(std::string_view s, std::string_view old, std::string_view repl, int64_t count);
int64_t py_count(std::string_view s, std::string_view sub);
// str.find / str.rfind in code points; -1 when absent.
int64_t py_find(std::string_view s, std::string_view sub, bool reverse);

std::string py_upper(std::string_view s);
std::string py_upper_char(char32_t c);  // may be several characters (ß -> SS)
std::string py_lower(std::string_view s);
std::string py_title(std::string_view s);       // str.title()
std::string py_capitalize(std::string_view s);  // str.capitalize()
std::string py_swapcase(std::string_view s);
bool py_islower(std::string_view s);
bool py_isupper(std::string_view s);
char32_t to_upper_cp(char32_t c);
char32_t to_lower_cp(char32_t c);
bool is_cased_letter(char32_t c);
bool is_alpha_cp(char32_t c);
bool is_digit_cp(char32_t c);

// repr() of a str: quotes chosen as Python does, escapes for non-printable characters.
std::string py_str_repr(std::string_view s);
// markupsafe.escape: & < > " ' as HTML entities.
std::string html_escape(std::string_view s);
// A JSON string literal as json.dumps writes it.
void json_quote(std::string& out, std::string_view s, bool ensure_ascii);

}  // namespace troupe::jinja
