// config_error: one validation error of a config file or request, with the field path it is about.
#pragma once

#include <string>
#include <vector>

namespace troupe::config {

// A field error. `message` is complete on its own and names the field: documented messages are
// kept word for word ("Field trt_llm.build.base_model is not allowed to be set when using v2
// inference stack"), the others read "<path>: <what is wrong>". `line`/`column` are 1-based
// positions in the YAML source, 0 when unknown (JSON input, or a field that is missing).
struct config_error {
  std::string path;
  std::string message;
  int line = 0;
  int column = 0;
  std::string hint;  // how to fix it, when known (printed on its own line after the message)
};

// Validation never stops at the first error: every error of a file is collected here.
using error_list = std::vector<config_error>;

// "line 12, column 5: <message>", without the position when it is unknown, then
// "\n  fix: <hint>" when there is a hint.
std::string format_error(const config_error& e);
// One error per line (plus its fix line), each prefixed by `source` ("config.yaml:12:5: ")
// when given.
std::string format_errors(const error_list& errors, const std::string& source = "");

// A parsed value and the errors found while reading it. `value` holds defaults for everything
// that could not be read, so callers may inspect it, but it is only valid when ok().
template <class T>
struct [[nodiscard]] checked {
  T value{};
  error_list errors;
  bool ok() const { return errors.empty(); }
};

}  // namespace troupe::config
