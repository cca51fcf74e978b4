// jinja_lexer: splits a template into text and tag tokens as jinja2's lexer does with
// trim_blocks and lstrip_blocks on (the whitespace rules that decide a prompt's exact bytes).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::jinja {

enum class tok : uint8_t {
  data,         // template text, already trimmed by the whitespace rules
  var_begin,    // {{
  var_end,      // }}
  block_begin,  // {%
  block_end,    // %}
  name,
  string,       // text holds the unescaped value
  integer,
  floating,
  op,           // text holds the operator: + - * / // % ** ~ ( ) [ ] { } == != < <= > >= = . : | , ;
  eof,
};

struct token {
  tok type = tok::eof;
  int line = 1;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0.0;
};

// Throws template_error (with the line) on a lexical error.
std::vector<token> tokenize(std::string_view source);

}  // namespace troupe::jinja
