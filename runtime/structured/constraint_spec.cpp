#include "runtime/structured/constraint_spec.hpp"

#include <fmt/format.h>

#include "runtime/structured/json_schema.hpp"

namespace troupe::structured {

namespace {

using ojson = nlohmann::ordered_json;

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

// [{"name": "<f>", "parameters": <f's parameters>}, ...]: calls of the listed functions.
result<grammar> tool_calls_grammar(const ojson& tools, bool parallel) {
  if (!tools.is_array() || tools.empty()) return make_error("tool_calls needs at least one function");
  grammar g;
  const ojson none = ojson::object();
  json_compiler shared(g, none);  // whitespace and any-object rules
  auto lit = [&](std::vector<element>& seq, std::string_view text, bool ws_after) {
    g.append_literal(seq, text);
    if (ws_after) seq.push_back(shared.ws());
  };
  const uint32_t call = g.declare_rule("tool call");
  for (size_t i = 0; i < tools.size(); ++i) {
    const ojson& t = tools[i];
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string())
      return make_error(fmt::format("tools[{}] has no name", i));
    // Each function's parameters are a document of their own: their $refs resolve inside.
    const ojson params = t.contains("parameters") && !t["parameters"].is_null() ? t["parameters"] : ojson::object();
    json_compiler pc(g, params);
    auto p = params.is_object() && params.empty() ? result<uint32_t>(shared.any_object()) : pc.schema_rule("");
    if (!p.ok())
      return make_error(fmt::format("tools[{}] ({}).parameters: {}", i, t["name"].get<std::string>(), p.message()));
    std::vector<element> seq;
    lit(seq, "{", true);
    lit(seq, "\"name\":", true);
    lit(seq, dump(t["name"]) + ",", true);
    lit(seq, "\"parameters\":", true);
    seq.push_back(g.ref(*p));
    seq.push_back(shared.ws());
    lit(seq, "}", false);
    g.add_alternative(call, seq);
  }
  const uint32_t more = g.declare_rule("another tool call");
  std::vector<element> tail;
  lit(tail, ",", true);
  tail.push_back(g.ref(call));
  g.add_alternative(more, tail);
  const uint32_t root = g.declare_rule("tool calls");
  std::vector<element> seq;
  lit(seq, "[", true);
  seq.push_back(g.ref(call));
  if (parallel) seq.push_back(g.repeat(more, 0, k_unbounded));
  seq.push_back(shared.ws());
  lit(seq, "]", false);
  g.add_alternative(root, seq);
  g.set_root(root);
  return g;
}

}  // namespace

std::string json_object_spec() { return R"({"type":"json_object"})"; }

std::string json_schema_spec(const ojson& schema) { return dump(ojson{{"type", "json_schema"}, {"schema", schema}}); }

std::string tool_arguments_spec(const ojson& parameters) {
  return dump(ojson{{"type", "tool_arguments"}, {"schema", parameters}});
}

std::string tool_calls_spec(const ojson& tools, bool parallel) {
  return dump(ojson{{"type", "tool_calls"}, {"tools", tools}, {"parallel", parallel}});
}

result<grammar> grammar_of_spec(std::string_view text) {
  ojson spec = ojson::parse(text, nullptr, false);
  if (spec.is_discarded() || !spec.is_object() || !spec.contains("type") || !spec["type"].is_string())
    return make_error("the output constraint is not a JSON object with a \"type\"");
  const std::string type = spec["type"].get<std::string>();
  if (type == "json_object") return any_json_object_grammar();
  if (type == "json_schema" || type == "tool_arguments") {
    if (!spec.contains("schema")) return make_error("the output constraint has no schema");
    const ojson& s = spec["schema"];
    if (type == "tool_arguments" && (s.is_null() || (s.is_object() && s.empty()))) return any_json_object_grammar();
    result<grammar> g = compile_json_schema(s);
    if (!g.ok()) return g;
    if (auto e = g->check()) return make_error(*e);
    return g;
  }
  if (type == "tool_calls") {
    const bool parallel = !spec.contains("parallel") || !spec["parallel"].is_boolean() || spec["parallel"].get<bool>();
    result<grammar> g = tool_calls_grammar(spec.contains("tools") ? spec["tools"] : ojson(), parallel);
    if (!g.ok()) return g;
    if (auto e = g->check()) return make_error("the tool-call grammar is unusable: " + *e);
    return g;
  }
  return make_error(fmt::format("unknown output constraint type \"{}\"", type));
}

constraint_factory::constraint_factory(std::shared_ptr<const vocab_index> vocab, size_t max_grammars)
    : vocab_(std::move(vocab)), max_(std::max<size_t>(1, max_grammars)) {}

result<std::shared_ptr<token_constraint>> constraint_factory::make(const std::string& spec) {
  std::shared_ptr<compiled_grammar> g;
  if (auto it = by_spec_.find(spec); it != by_spec_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    g = it->second->second;
  } else {
    TROUPE_TRY(grammar gram, grammar_of_spec(spec));
    g = std::make_shared<compiled_grammar>(std::move(gram), vocab_);
    lru_.emplace_front(spec, g);
    by_spec_[spec] = lru_.begin();
    if (lru_.size() > max_) {
      by_spec_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }
  return std::shared_ptr<token_constraint>(std::make_shared<grammar_constraint>(std::move(g)));
}

mask_stats constraint_factory::stats() const {
  mask_stats s;
  for (const auto& [spec, g] : lru_) {
    s.masks += g->stats().masks;
    s.computed += g->stats().computed;
    s.compute_seconds += g->stats().compute_seconds;
  }
  return s;
}

}  // namespace troupe::structured
