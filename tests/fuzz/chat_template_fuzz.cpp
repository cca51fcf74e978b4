// libFuzzer target: parses arbitrary bytes as a chat template and renders it over a fixed
// conversation. It must never crash, hang or exhaust memory: every failure is an error result.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz/chat_template_fuzz.cpp \
//     runtime/text/chat_template.cpp runtime/text/jinja_*.cpp -o chat_template_fuzz
//   ./chat_template_fuzz -max_total_time=60 -max_len=4096 corpus/
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <nlohmann/json.hpp>

#include "runtime/text/chat_template.hpp"

namespace {

const nlohmann::ordered_json& context() {
  static const nlohmann::ordered_json ctx = nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": [{"type": "text", "text": "Héllo 🎉"}]},
      {"role": "assistant", "content": "", "reasoning_content": "think",
       "tool_calls": [{"id": "abc123xyz", "type": "function",
                       "function": {"name": "get_weather", "arguments": {"city": "Paris", "n": 2.5}}}]},
      {"role": "tool", "tool_call_id": "abc123xyz", "content": "18C"},
      {"role": "user", "content": "thanks"}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                              "required": ["city"]}}}],
    "add_generation_prompt": true,
    "enable_thinking": false,
    "bos_token": "<s>",
    "eos_token": "</s>"
  })");
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view source(reinterpret_cast<const char*>(data), size);
  auto tmpl = troupe::chat_template::parse(source);
  if (!tmpl.ok()) return 0;
  auto out = tmpl->render(context());
  (void)out;
  return 0;
}
