// jinja_parser: turns a template's tokens into a program (jinja2's grammar and precedence),
// then resolves filter and test names as jinja2's compiler does.
#pragma once

#include <string_view>

#include "runtime/text/jinja_ast.hpp"

namespace troupe::jinja {

// Throws template_error naming the construct and line on a syntax error, an unknown tag, or a
// filter or test that is unknown or unsupported outside an {% if %} (jinja2 checks those at
// compile time, except inside if-blocks and inline ifs, where the check waits until they run).
program parse_program(std::string_view source);

// Filters and tests by name (jinja_filters.cpp); null when not implemented.
filter_fn find_filter(std::string_view name);
test_fn find_test(std::string_view name);
// Whether jinja2 itself has the filter or test, which decides between "unsupported" and "unknown".
bool jinja2_has_filter(std::string_view name);
bool jinja2_has_test(std::string_view name);

}  // namespace troupe::jinja
