// tool_calls: tool calls parsed out of generated text, as it streams, for the formats of the
// model families troupe loads, and the format a model's chat template asks for.
//
//   hermes       <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>  (Hermes, Qwen 2.5 / 3)
//   llama3_json  {"name": "f", "parameters": {...}} (after an optional <|python_tag|>), several
//                separated by ';'                                                   (Llama 3.1-3.3)
//   mistral      [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]
//                or [TOOL_CALLS]f[ARGS]{...} (v11 tokenizers)                      (Mistral)
//   json_array   [{"name": "f", "parameters": {...}}, ...]: what tool_choice "required" is
//                constrained to (constraint_spec's tool_calls), whatever the model family
//   arguments    the whole output is one call's arguments (a named tool_choice)
//
// The parser is fed text as it is generated and says what is certain so far: plain content
// (text that cannot be the start of a call marker), a call's start (its name), and fragments
// of its arguments, which are the raw JSON text of the arguments value, so the fragments of a
// stream join into exactly the arguments of the same output parsed at once.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::structured {

enum class tool_format { none, hermes, llama3_json, mistral, json_array, arguments };
const char* tool_format_name(tool_format f);

// The format a chat template writes tool calls in (none when it shows no tools).
tool_format tool_format_of_template(std::string_view template_source);

struct tool_event {
  enum class kind { content, call_start, arguments };
  kind what = kind::content;
  size_t index = 0;   // the call (call_start, arguments)
  std::string text;   // content, the function name (call_start), or an arguments fragment
};

struct parsed_call {
  std::string name;
  std::string arguments;  // JSON text
};

class tool_call_parser {
 public:
  // forced_name: the function of a named tool_choice (format arguments).
  explicit tool_call_parser(tool_format f, std::string forced_name = "");

  // Appends generated text; returns what became certain.
  std::vector<tool_event> push(std::string_view text);
  // The output ended: what was held back. A call that never became well formed is content.
  std::vector<tool_event> finish();

  // Everything parsed so far (after finish(): the result).
  const std::vector<parsed_call>& calls() const { return calls_; }
  const std::string& content() const { return content_; }

 private:
  void scan(bool at_end, std::vector<tool_event>& out);
  void emit_content(size_t upto, std::vector<tool_event>& out);

  tool_format format_;
  std::string forced_name_;
  std::string buf_;       // all text so far
  size_t done_ = 0;       // buf_ before this is settled (emitted or consumed)
  std::string content_;
  std::vector<parsed_call> calls_;
  std::vector<size_t> args_sent_;  // bytes of each call's arguments emitted
  int phase_ = 0;                  // format-specific progress (see the .cpp)
  size_t open_at_ = 0;             // where the current block of calls opened (its marker)
  size_t call_base_ = 0;           // calls before the object being read
  size_t first_in_block_ = 0;      // calls before the current block
};

}  // namespace troupe::structured
