// libFuzzer target: compiles arbitrary JSON Schemas (and specs of every constraint type) to
// grammars and runs the matcher over arbitrary bytes. It must never crash or hang; a compiled
// grammar passes its own check, the matcher never takes a byte its state refuses, and a mark
// taken before bytes brings the state back exactly.
//   scripts/fuzz.sh 60 json_schema
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "runtime/structured/constraint_spec.hpp"
#include "runtime/structured/json_schema.hpp"

using namespace troupe::structured;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The input: a schema, then (after a NUL) bytes to feed.
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const size_t split = in.find('\0');
  const std::string_view schema_text = in.substr(0, split);
  const std::string_view feed = split == std::string_view::npos ? std::string_view() : in.substr(split + 1);
  const auto schema = nlohmann::ordered_json::parse(schema_text, nullptr, false);
  if (schema.is_discarded()) return 0;
  for (const std::string& spec : {json_schema_spec(schema), tool_calls_spec(nlohmann::ordered_json::array({{{"name", "f"}, {"parameters", schema}}}), true)}) {
    auto g = grammar_of_spec(spec);
    if (!g.ok()) continue;
    if (g->check()) std::abort();  // grammar_of_spec hands out checked grammars only
    matcher m(*g);
    std::string before, after;
    m.state_key(before);
    const auto mk = m.save();
    for (char c : feed) {
      if (m.terminated()) break;
      (void)m.advance(static_cast<uint8_t>(c));
    }
    m.restore(mk);
    m.state_key(after);
    if (before != after) std::abort();
  }
  return 0;
}
