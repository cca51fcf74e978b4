// constraint_spec: an output constraint as text that can travel (a request crosses actors and
// nodes; a compiled grammar cannot), compiled where it is used, once per (spec, vocabulary).
//
// A spec is a JSON object:
//   {"type": "json_object"}                          any JSON object
//   {"type": "json_schema", "schema": {...}}         a value the schema accepts
//   {"type": "tool_arguments", "schema": {...}}      one call's arguments (a named tool_choice)
//   {"type": "tool_calls", "tools": [{"name", "parameters"}, ...], "parallel": true}
//        [{"name": ..., "parameters": {...}}, ...]: at least one call of the listed functions
//        (tool_choice "required"), exactly one when parallel is false.
#pragma once

#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "runtime/result.hpp"
#include "runtime/structured/grammar.hpp"
#include "runtime/structured/token_mask.hpp"

namespace troupe::structured {

std::string json_object_spec();
std::string json_schema_spec(const nlohmann::ordered_json& schema);
std::string tool_arguments_spec(const nlohmann::ordered_json& parameters);
// tools: [{"name", "parameters"}] (parameters may be absent: any object).
std::string tool_calls_spec(const nlohmann::ordered_json& tools, bool parallel);

// The grammar of a spec; the error says what in it cannot be honoured.
[[nodiscard]] result<grammar> grammar_of_spec(std::string_view spec);

// Compiles specs against one vocabulary, keeping the most recently used ones (and their masks).
class constraint_factory {
 public:
  explicit constraint_factory(std::shared_ptr<const vocab_index> vocab, size_t max_grammars = 64);
  [[nodiscard]] result<std::shared_ptr<token_constraint>> make(const std::string& spec);
  size_t n_cached() const { return lru_.size(); }
  // Masks asked for and computed, over the grammars kept now.
  mask_stats stats() const;

 private:
  std::shared_ptr<const vocab_index> vocab_;
  size_t max_;
  std::list<std::pair<std::string, std::shared_ptr<compiled_grammar>>> lru_;
  std::unordered_map<std::string, decltype(lru_)::iterator> by_spec_;
};

}  // namespace troupe::structured
