// libFuzzer target: feeds arbitrary text to the tool-call parser of every format, whole and
// in pieces. It must never crash, and the pieces must give the same content and calls as the
// whole (arguments are raw slices, so a stream joins into exactly the same).
//   scripts/fuzz.sh 60 tool_calls
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "runtime/structured/tool_calls.hpp"

using namespace troupe::structured;

namespace {

struct folded {
  std::string content;
  std::vector<parsed_call> calls;
};

folded run(tool_format f, std::string_view text, size_t step) {
  tool_call_parser p(f, "forced");
  folded o;
  auto take = [&](const std::vector<tool_event>& ev) {
    for (const auto& e : ev) {
      if (e.what == tool_event::kind::content) o.content += e.text;
      else if (e.what == tool_event::kind::call_start) o.calls.push_back({e.text, ""});
      else if (e.index < o.calls.size()) o.calls[e.index].arguments += e.text;
      else std::abort();  // arguments of a call that never started
    }
  };
  for (size_t i = 0; i < text.size(); i += step) take(p.push(text.substr(i, step)));
  take(p.finish());
  if (o.content != p.content() || o.calls.size() != p.calls().size()) std::abort();
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t step = 1 + data[0] % 7;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  for (tool_format f : {tool_format::hermes, tool_format::llama3_json, tool_format::mistral, tool_format::json_array,
                        tool_format::arguments}) {
    const folded whole = run(f, text, text.size() + 1);
    const folded pieces = run(f, text, step);
    if (whole.content != pieces.content || whole.calls.size() != pieces.calls.size()) std::abort();
    for (size_t i = 0; i < whole.calls.size(); ++i)
      if (whole.calls[i].name != pieces.calls[i].name || whole.calls[i].arguments != pieces.calls[i].arguments)
        std::abort();
  }
  return 0;
}
