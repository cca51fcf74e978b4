// json_schema: JSON Schema compiled to a byte grammar whose every complete output validates.
//
// Covered: type (all seven, and lists of them), properties, required, additionalProperties
// (false, true or a schema), enum, const, anyOf, oneOf (when its branches cannot match the same
// value), allOf of one schema, items, minItems / maxItems, minLength / maxLength, minimum /
// maximum and their exclusive forms, $ref into the same document ($defs, definitions, "#").
// A keyword that would constrain the output in a way the grammar does not (pattern, format,
// multipleOf, uniqueItems, ...) is an error naming it, never a silently looser output.
// Annotations (title, description, default, examples, ...) are ignored, as validators do.
//
// Choices made so that outputs stay short and models cannot run away: properties come in the
// schema's order (required ones always, optional ones may be left out); whitespace comes only
// where JSON writers put it (after '{', '[', ',' and ':', before '}' and ']') and is one space
// or a line break with an indent of at most k_max_whitespace; numbers are at most 32 bytes;
// strings have no surrogate \u escapes (characters outside the BMP are written as UTF-8).
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/result.hpp"
#include "runtime/structured/grammar.hpp"

namespace troupe::structured {

inline constexpr uint32_t k_max_whitespace = 24;

// Adds rules for JSON values to a grammar: one compiler per schema document (its $refs
// resolve inside it); several documents may share a grammar (a tool call per function).
class json_compiler {
 public:
  json_compiler(grammar& g, const nlohmann::ordered_json& document);

  // The rule for values the schema at pointer path of the document accepts ("" is the root).
  [[nodiscard]] result<uint32_t> schema_rule(const std::string& path = "");
  // Any JSON value; any JSON object.
  uint32_t any_value();
  uint32_t any_object();
  // The shared small rules.
  uint32_t whitespace();   // " " | "\n" [ \t]{0,k_max_whitespace}
  element ws();            // optional whitespace
  uint32_t string_rule(uint32_t min_len, uint32_t max_len);

 private:
  result<uint32_t> compile(const nlohmann::ordered_json& s, const std::string& path);
  result<uint32_t> compile_type(const nlohmann::ordered_json& s, const std::string& type, const std::string& path);
  result<uint32_t> compile_object(const nlohmann::ordered_json& s, const std::string& path);
  result<uint32_t> compile_array(const nlohmann::ordered_json& s, const std::string& path);
  result<uint32_t> compile_ref(const std::string& ref, const std::string& path);
  uint32_t literal_value(const nlohmann::ordered_json& v);
  uint32_t char_rule();

  grammar& g_;
  const nlohmann::ordered_json& doc_;
  std::map<std::string, uint32_t> by_pointer_;  // $ref targets, compiled once (recursion)
  uint32_t ws_char_ = UINT32_MAX, ws_ = UINT32_MAX, char_ = UINT32_MAX, any_ = UINT32_MAX, any_object_ = UINT32_MAX;
  uint32_t any_string_ = UINT32_MAX;
  int depth_ = 0;
};

// A grammar for exactly the values schema accepts (parsed from text, keeping key order).
[[nodiscard]] result<grammar> compile_json_schema(const nlohmann::ordered_json& schema);
// A grammar for any JSON object (response_format json_object).
grammar any_json_object_grammar();

}  // namespace troupe::structured
