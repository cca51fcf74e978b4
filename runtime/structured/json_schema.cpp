#include "runtime/structured/json_schema.hpp"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

namespace troupe::structured {

namespace {

using ojson = nlohmann::ordered_json;

constexpr int k_max_schema_depth = 64;

// Keywords that constrain values in ways the grammar does not express.
constexpr const char* k_unsupported[] = {
    "pattern", "format", "patternProperties", "propertyNames", "minProperties", "maxProperties",
    "dependentRequired", "dependentSchemas", "dependencies", "if", "then", "else", "not",
    "contains", "minContains", "maxContains", "prefixItems", "unevaluatedProperties",
    "unevaluatedItems", "multipleOf", "$dynamicRef", "$recursiveRef", "additionalItems"};

// Keywords that say nothing about validity.
bool is_annotation(const std::string& k) {
  static const std::set<std::string> a = {"title", "description", "default", "examples", "$comment", "$schema",
                                          "$id", "deprecated", "readOnly", "writeOnly", "$anchor",
                                          "contentEncoding", "contentMediaType", "$defs", "definitions"};
  return a.count(k) != 0;
}

std::string at(const std::string& path) { return path.empty() ? "#" : "#" + path; }

std::string pointer_escape(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

error unsupported(const std::string& keyword, const std::string& path, const std::string& why) {
  return make_error(fmt::format("the JSON Schema keyword '{}' (at {}) is not supported{}{}", keyword, at(path),
                                why.empty() ? "" : ": ", why));
}

error invalid(const std::string& path, const std::string& what) {
  return make_error(fmt::format("the JSON Schema is invalid at {}: {}", at(path), what));
}

const char* type_of(const ojson& v) {
  switch (v.type()) {
    case ojson::value_t::null: return "null";
    case ojson::value_t::boolean: return "boolean";
    case ojson::value_t::number_integer:
    case ojson::value_t::number_unsigned: return "integer";
    case ojson::value_t::number_float: return std::floor(v.get<double>()) == v.get<double>() ? "integer" : "number";
    case ojson::value_t::string: return "string";
    case ojson::value_t::array: return "array";
    case ojson::value_t::object: return "object";
    default: return "?";
  }
}

bool value_has_type(const ojson& v, const std::string& type) {
  const std::string t = type_of(v);
  return t == type || (type == "number" && t == "integer");
}

std::vector<std::string> types_of(const ojson& s) {
  std::vector<std::string> out;
  auto it = s.find("type");
  if (it == s.end()) return out;
  if (it->is_string()) out.push_back(it->get<std::string>());
  else if (it->is_array())
    for (const auto& t : *it)
      if (t.is_string()) out.push_back(t.get<std::string>());
  return out;
}

// The kinds of JSON value a schema can produce (for oneOf's disjointness), coarse:
// object, array, string, number (integers included), boolean, null.
std::set<std::string> kinds_of(const ojson& s) {
  static const std::set<std::string> all = {"object", "array", "string", "number", "boolean", "null"};
  if (!s.is_object()) return all;
  std::set<std::string> out;
  auto add_value = [&](const ojson& v) {
    std::string t = type_of(v);
    out.insert(t == "integer" ? "number" : t);
  };
  if (auto c = s.find("const"); c != s.end()) {
    add_value(*c);
    return out;
  }
  if (auto e = s.find("enum"); e != s.end() && e->is_array()) {
    for (const auto& v : *e) add_value(v);
    return out;
  }
  const auto types = types_of(s);
  if (types.empty()) {
    if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required")) return {"object"};
    if (s.contains("items")) return {"array"};
    return all;
  }
  for (const auto& t : types) out.insert(t == "integer" ? "number" : t);
  return out;
}

// The single value a property must have, if the schema pins one (a discriminator).
std::optional<ojson> pinned_value(const ojson& s) {
  if (!s.is_object()) return std::nullopt;
  if (auto c = s.find("const"); c != s.end()) return *c;
  if (auto e = s.find("enum"); e != s.end() && e->is_array() && e->size() == 1) return (*e)[0];
  return std::nullopt;
}

// Two object schemas that pin a required property to different values cannot match one value.
bool discriminated(const ojson& a, const ojson& b) {
  auto props_a = a.find("properties"), props_b = b.find("properties");
  auto req_a = a.find("required"), req_b = b.find("required");
  if (props_a == a.end() || props_b == b.end() || req_a == a.end() || req_b == b.end()) return false;
  if (!props_a->is_object() || !props_b->is_object() || !req_a->is_array() || !req_b->is_array()) return false;
  for (const auto& [key, sa] : props_a->items()) {
    auto sb = props_b->find(key);
    if (sb == props_b->end()) continue;
    const ojson k = key;
    if (std::find(req_a->begin(), req_a->end(), k) == req_a->end()) continue;
    if (std::find(req_b->begin(), req_b->end(), k) == req_b->end()) continue;
    const auto va = pinned_value(sa), vb = pinned_value(*sb);
    if (va && vb && *va != *vb) return true;
  }
  return false;
}

bool disjoint(const ojson& a, const ojson& b) {
  const auto ka = kinds_of(a), kb = kinds_of(b);
  bool overlap = false;
  for (const auto& k : ka) overlap |= kb.count(k) != 0;
  if (!overlap) return true;
  const auto va = pinned_value(a), vb = pinned_value(b);
  if (va && vb) return *va != *vb;
  return ka == std::set<std::string>{"object"} && kb == ka && discriminated(a, b);
}

// A JSON number from a schema keyword, or an error naming it.
result<std::optional<double>> number_keyword(const ojson& s, const char* key, const std::string& path) {
  auto it = s.find(key);
  if (it == s.end()) return std::optional<double>();
  if (!it->is_number()) return invalid(path, fmt::format("'{}' must be a number", key));
  return std::optional<double>(it->get<double>());
}

result<uint32_t> count_keyword(const ojson& s, const char* key, const std::string& path, uint32_t dflt) {
  auto it = s.find(key);
  if (it == s.end()) return dflt;
  if (!it->is_number_integer() && !(it->is_number_float() && std::floor(it->get<double>()) == it->get<double>()))
    return invalid(path, fmt::format("'{}' must be a non-negative integer", key));
  const double v = it->get<double>();
  if (v < 0) return invalid(path, fmt::format("'{}' must be a non-negative integer", key));
  return static_cast<uint32_t>(std::min(v, 1e9));
}

}  // namespace

json_compiler::json_compiler(grammar& g, const ojson& document) : g_(g), doc_(document) {}

uint32_t json_compiler::whitespace() {
  if (ws_ == UINT32_MAX) {
    // One space, or a line break and an indent: what JSON writers put there, and no more, so
    // that a model cannot spend its tokens on blank space.
    ws_char_ = g_.declare_rule("indent character");
    g_.add_alternative(ws_char_, {g_.bytes(byte_set{}.add(' ').add('\t'))});
    ws_ = g_.declare_rule("whitespace");
    g_.add_alternative(ws_, {g_.bytes(byte_set{}.add(' '))});
    g_.add_alternative(ws_, {g_.bytes(byte_set{}.add('\n')), g_.repeat(ws_char_, 0, k_max_whitespace)});
  }
  return ws_;
}

element json_compiler::ws() { return g_.repeat(whitespace(), 0, 1); }

uint32_t json_compiler::char_rule() {
  if (char_ != UINT32_MAX) return char_;
  char_ = g_.declare_rule("string character");
  auto set = [&](uint8_t lo, uint8_t hi) { return g_.bytes(byte_set{}.add(lo, hi)); };
  const element cont = set(0x80, 0xBF);
  // Printable ASCII but '"' and '\'.
  g_.add_alternative(char_, {g_.bytes(byte_set{}.add(0x20, 0x21).add(0x23, 0x5B).add(0x5D, 0x7F))});
  // UTF-8, well formed (no overlongs, no surrogates, at most U+10FFFF).
  g_.add_alternative(char_, {set(0xC2, 0xDF), cont});
  g_.add_alternative(char_, {set(0xE0, 0xE0), set(0xA0, 0xBF), cont});
  g_.add_alternative(char_, {g_.bytes(byte_set{}.add(0xE1, 0xEC).add(0xEE, 0xEF)), cont, cont});
  g_.add_alternative(char_, {set(0xED, 0xED), set(0x80, 0x9F), cont});
  g_.add_alternative(char_, {set(0xF0, 0xF0), set(0x90, 0xBF), cont, cont});
  g_.add_alternative(char_, {set(0xF1, 0xF3), cont, cont, cont});
  g_.add_alternative(char_, {set(0xF4, 0xF4), set(0x80, 0x8F), cont, cont});
  // Escapes; \u without surrogates, so that one escape is one character (minLength holds).
  const element backslash = set('\\', '\\');
  byte_set simple;
  for (char c : std::string_view("\"\\/bfnrt")) simple.add(static_cast<uint8_t>(c));
  g_.add_alternative(char_, {backslash, g_.bytes(simple)});
  const element hex = g_.bytes(byte_set{}.add('0', '9').add('a', 'f').add('A', 'F'));
  const element hex_no_d = g_.bytes(byte_set{}.add('0', '9').add('a', 'c').add('e', 'f').add('A', 'C').add('E', 'F'));
  g_.add_alternative(char_, {backslash, set('u', 'u'), hex_no_d, hex, hex, hex});
  return char_;
}

uint32_t json_compiler::string_rule(uint32_t min_len, uint32_t max_len) {
  if (min_len == 0 && max_len == k_unbounded && any_string_ != UINT32_MAX) return any_string_;
  const uint32_t r = g_.declare_rule(fmt::format("string{{{},{}}}", min_len, max_len));
  const element quote = g_.bytes(byte_set{}.add('"'));
  g_.add_alternative(r, {quote, g_.repeat(char_rule(), min_len, max_len), quote});
  if (min_len == 0 && max_len == k_unbounded) any_string_ = r;
  return r;
}

uint32_t json_compiler::any_value() {
  if (any_ != UINT32_MAX) return any_;
  any_ = g_.declare_rule("any value");
  const uint32_t obj = any_object();
  const uint32_t arr = g_.declare_rule("any array");
  const element open = g_.bytes(byte_set{}.add('[')), close = g_.bytes(byte_set{}.add(']')),
                comma = g_.bytes(byte_set{}.add(','));
  const uint32_t tail = g_.declare_rule("any array tail");
  g_.add_alternative(tail, {comma, ws(), g_.ref(any_)});
  g_.add_alternative(arr, {open, ws(), close});
  g_.add_alternative(arr, {open, ws(), g_.ref(any_), g_.repeat(tail, 0, k_unbounded), ws(), close});
  g_.add_alternative(any_, {g_.ref(obj)});
  g_.add_alternative(any_, {g_.ref(arr)});
  g_.add_alternative(any_, {g_.ref(string_rule(0, k_unbounded))});
  g_.add_alternative(any_, {g_.number(number_spec{})});
  for (const char* lit : {"true", "false", "null"}) {
    std::vector<element> seq;
    g_.append_literal(seq, lit);
    g_.add_alternative(any_, seq);
  }
  return any_;
}

uint32_t json_compiler::any_object() {
  if (any_object_ != UINT32_MAX) return any_object_;
  any_object_ = g_.declare_rule("any object");
  const uint32_t value = any_value();
  const uint32_t key = string_rule(0, k_unbounded);
  const element open = g_.bytes(byte_set{}.add('{')), close = g_.bytes(byte_set{}.add('}')),
                colon = g_.bytes(byte_set{}.add(':')), comma = g_.bytes(byte_set{}.add(','));
  const uint32_t member = g_.declare_rule("any member");
  g_.add_alternative(member, {g_.ref(key), colon, ws(), g_.ref(value)});
  const uint32_t tail = g_.declare_rule("any member tail");
  g_.add_alternative(tail, {comma, ws(), g_.ref(member)});
  g_.add_alternative(any_object_, {open, ws(), close});
  g_.add_alternative(any_object_, {open, ws(), g_.ref(member), g_.repeat(tail, 0, k_unbounded), ws(), close});
  return any_object_;
}

uint32_t json_compiler::literal_value(const ojson& v) {
  return g_.literal_rule(v.dump(-1, ' ', false, ojson::error_handler_t::replace));
}

result<uint32_t> json_compiler::schema_rule(const std::string& path) {
  if (path.empty()) return compile(doc_, "");
  return compile_ref("#" + path, path);
}

result<uint32_t> json_compiler::compile_ref(const std::string& ref, const std::string& path) {
  if (ref.empty() || ref[0] != '#')
    return unsupported("$ref", path, fmt::format("only references inside the schema (\"#/$defs/...\") are; got \"{}\"", ref));
  const std::string pointer = ref.substr(1);
  if (auto it = by_pointer_.find(pointer); it != by_pointer_.end()) return it->second;
  const ojson* target = nullptr;
  try {
    target = &doc_.at(ojson::json_pointer(pointer));
  } catch (const std::exception&) {
    return invalid(path, fmt::format("$ref \"{}\" points at nothing", ref));
  }
  // Declared before it is compiled, so that a recursive schema refers to itself.
  const uint32_t r = g_.declare_rule(fmt::format("$ref {}", ref));
  by_pointer_[pointer] = r;
  TROUPE_TRY(uint32_t body, compile(*target, pointer));
  g_.add_alternative(r, {g_.ref(body)});
  return r;
}

result<uint32_t> json_compiler::compile(const ojson& s, const std::string& path) {
  if (s.is_boolean()) {
    if (s.get<bool>()) return any_value();
    return invalid(path, "the schema false accepts no value, so no output can satisfy it");
  }
  if (!s.is_object()) return invalid(path, "a schema must be an object or a boolean");
  if (++depth_ > k_max_schema_depth) {
    --depth_;
    return invalid(path, fmt::format("the schema nests more than {} levels deep", k_max_schema_depth));
  }
  struct leave {
    int& d;
    ~leave() { --d; }
  } guard{depth_};

  for (const char* k : k_unsupported)
    if (s.contains(k)) return unsupported(k, path, "");
  if (auto u = s.find("uniqueItems"); u != s.end() && u->is_boolean() && u->get<bool>())
    return unsupported("uniqueItems", path, "true is not");
  if (auto it = s.find("items"); it != s.end() && it->is_array())
    return unsupported("items", path, "an array of schemas (tuple form) is not; use a single schema");

  if (auto ref = s.find("$ref"); ref != s.end()) {
    if (!ref->is_string()) return invalid(path, "'$ref' must be a string");
    for (const auto& [k, v] : s.items())
      if (k != "$ref" && !is_annotation(k))
        return unsupported(k, path, "beside '$ref' it is not (put it in the referenced schema)");
    return compile_ref(ref->get<std::string>(), path);
  }
  if (auto all = s.find("allOf"); all != s.end()) {
    if (!all->is_array() || all->size() != 1) return unsupported("allOf", path, "only with a single schema");
    for (const auto& [k, v] : s.items())
      if (k != "allOf" && !is_annotation(k)) return unsupported(k, path, "beside 'allOf' it is not");
    return compile((*all)[0], path + "/allOf/0");
  }
  for (const char* key : {"anyOf", "oneOf"}) {
    auto alts = s.find(key);
    if (alts == s.end()) continue;
    if (!alts->is_array() || alts->empty()) return invalid(path, fmt::format("'{}' must be a non-empty array", key));
    for (const auto& [k, v] : s.items())
      if (k != key && !is_annotation(k))
        return unsupported(k, path, fmt::format("beside '{}' it is not (move it into each branch)", key));
    if (std::string_view(key) == "oneOf")
      for (size_t i = 0; i < alts->size(); ++i)
        for (size_t j = i + 1; j < alts->size(); ++j)
          if (!disjoint((*alts)[i], (*alts)[j]))
            return unsupported("oneOf", path, fmt::format("branches {} and {} may match the same value, so an output "
                                                          "could match both; use anyOf, or tell them apart with "
                                                          "different types or a required property with a const",
                                                          i, j));
    const uint32_t r = g_.declare_rule(fmt::format("{} at {}", key, at(path)));
    for (size_t i = 0; i < alts->size(); ++i) {
      TROUPE_TRY(uint32_t b, compile((*alts)[i], fmt::format("{}/{}/{}", path, key, i)));
      g_.add_alternative(r, {g_.ref(b)});
    }
    return r;
  }

  const auto types = types_of(s);
  if (s.contains("type") && types.empty()) return invalid(path, "'type' must be a string or an array of strings");
  static const std::set<std::string> known = {"string", "number", "integer", "boolean", "null", "object", "array"};
  for (const auto& t : types)
    if (!known.count(t)) return invalid(path, fmt::format("\"{}\" is not a JSON Schema type", t));

  // enum and const: the values themselves, of the allowed types.
  for (const char* key : {"const", "enum"}) {
    auto it = s.find(key);
    if (it == s.end()) continue;
    for (const auto& [k, v] : s.items())
      if (k != key && k != "type" && !is_annotation(k))
        return unsupported(k, path, fmt::format("beside '{}' it is not", key));
    std::vector<const ojson*> values;
    if (std::string_view(key) == "const") {
      values.push_back(&*it);
    } else {
      if (!it->is_array() || it->empty()) return invalid(path, "'enum' must be a non-empty array");
      for (const auto& v : *it) values.push_back(&v);
    }
    const uint32_t r = g_.declare_rule(fmt::format("{} at {}", key, at(path)));
    size_t n = 0;
    for (const ojson* v : values) {
      bool ok = types.empty();
      for (const auto& t : types) ok |= value_has_type(*v, t);
      if (!ok) continue;
      g_.add_alternative(r, {g_.ref(literal_value(*v))});
      ++n;
    }
    if (n == 0) return invalid(path, fmt::format("no value of '{}' has the schema's type", key));
    return r;
  }

  if (types.size() == 1) return compile_type(s, types[0], path);
  if (types.empty()) {
    if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required"))
      return compile_type(s, "object", path);
    if (s.contains("items") || s.contains("minItems") || s.contains("maxItems")) return compile_type(s, "array", path);
    if (s.contains("minLength") || s.contains("maxLength")) return compile_type(s, "string", path);
    if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") ||
        s.contains("exclusiveMaximum"))
      return compile_type(s, "number", path);
    return any_value();
  }
  const uint32_t r = g_.declare_rule(fmt::format("types at {}", at(path)));
  for (const auto& t : types) {
    TROUPE_TRY(uint32_t b, compile_type(s, t, path));
    g_.add_alternative(r, {g_.ref(b)});
  }
  return r;
}

result<uint32_t> json_compiler::compile_type(const ojson& s, const std::string& type, const std::string& path) {
  if (type == "null" || type == "boolean") {
    const uint32_t r = g_.declare_rule(type);
    for (const char* lit : type == "null" ? std::vector<const char*>{"null"} : std::vector<const char*>{"true", "false"}) {
      std::vector<element> seq;
      g_.append_literal(seq, lit);
      g_.add_alternative(r, seq);
    }
    return r;
  }
  if (type == "string") {
    TROUPE_TRY(uint32_t lo, count_keyword(s, "minLength", path, 0));
    TROUPE_TRY(uint32_t hi, count_keyword(s, "maxLength", path, k_unbounded));
    if (hi < lo) return invalid(path, fmt::format("maxLength {} is below minLength {}", hi, lo));
    return string_rule(lo, hi);
  }
  if (type == "number" || type == "integer") {
    number_spec spec;
    spec.integer = type == "integer";
    TROUPE_TRY(auto mn, number_keyword(s, "minimum", path));
    TROUPE_TRY(auto mx, number_keyword(s, "maximum", path));
    spec.min = mn;
    spec.max = mx;
    // exclusiveMinimum: a number (draft 6 on) or true beside minimum (draft 4).
    for (const char* key : {"exclusiveMinimum", "exclusiveMaximum"}) {
      auto it = s.find(key);
      if (it == s.end()) continue;
      const bool is_min = std::string_view(key) == "exclusiveMinimum";
      std::optional<double>& bound = is_min ? spec.min : spec.max;
      bool& excl = is_min ? spec.min_exclusive : spec.max_exclusive;
      if (it->is_boolean()) {
        if (it->get<bool>()) {
          if (!bound) return invalid(path, fmt::format("'{}': true needs '{}'", key, is_min ? "minimum" : "maximum"));
          excl = true;
        }
      } else if (it->is_number()) {
        const double v = it->get<double>();
        if (!bound || (is_min ? v >= *bound : v <= *bound)) {
          bound = v;
          excl = true;
        }
      } else {
        return invalid(path, fmt::format("'{}' must be a number", key));
      }
    }
    // The bounds must leave a value (an integer, for integers).
    const number_check empty = check_number("", spec);
    if (!empty.viable) return invalid(path, "minimum and maximum leave no value");
    const uint32_t r = g_.declare_rule(fmt::format("{} at {}", type, at(path)));
    g_.add_alternative(r, {g_.number(spec)});
    return r;
  }
  if (type == "object") return compile_object(s, path);
  return compile_array(s, path);
}

result<uint32_t> json_compiler::compile_object(const ojson& s, const std::string& path) {
  const element open = g_.bytes(byte_set{}.add('{')), close = g_.bytes(byte_set{}.add('}')),
                colon = g_.bytes(byte_set{}.add(':')), comma = g_.bytes(byte_set{}.add(','));
  const ojson* props = nullptr;
  if (auto it = s.find("properties"); it != s.end()) {
    if (!it->is_object()) return invalid(path, "'properties' must be an object");
    props = &*it;
  }
  std::vector<std::string> required;
  if (auto it = s.find("required"); it != s.end()) {
    if (!it->is_array()) return invalid(path, "'required' must be an array of property names");
    for (const auto& r : *it) {
      if (!r.is_string()) return invalid(path, "'required' must be an array of property names");
      required.push_back(r.get<std::string>());
    }
  }
  const ojson* extra = nullptr;  // additionalProperties as a schema
  bool extra_allowed = true;
  if (auto it = s.find("additionalProperties"); it != s.end()) {
    if (it->is_boolean()) extra_allowed = it->get<bool>();
    else if (it->is_object()) extra = &*it;
    else return invalid(path, "'additionalProperties' must be a boolean or a schema");
  }

  // Properties in the schema's order, then required names the schema does not describe.
  struct prop {
    std::string name;
    const ojson* schema = nullptr;  // null: any value (or additionalProperties' schema)
    std::string schema_path;
    bool required = false;
  };
  std::vector<prop> list;
  if (props)
    for (const auto& [k, v] : props->items())
      list.push_back({k, &v, path + "/properties/" + pointer_escape(k),
                      std::find(required.begin(), required.end(), k) != required.end()});
  for (const auto& name : required) {
    if (std::any_of(list.begin(), list.end(), [&](const prop& p) { return p.name == name; })) continue;
    if (!extra_allowed)
      return invalid(path, fmt::format("\"{}\" is required but additionalProperties is false and 'properties' does "
                                       "not describe it", name));
    list.push_back({name, extra, path + "/additionalProperties", true});
  }

  const uint32_t r = g_.declare_rule(fmt::format("object at {}", at(path)));
  if (list.empty()) {
    if (!extra_allowed) {
      g_.add_alternative(r, {open, ws(), close});
      return r;
    }
    if (!extra) {
      g_.add_alternative(r, {g_.ref(any_object())});
      return r;
    }
    // A map: any keys, values of one schema.
    TROUPE_TRY(uint32_t value, compile(*extra, path + "/additionalProperties"));
    const uint32_t member = g_.declare_rule(fmt::format("member at {}", at(path)));
    g_.add_alternative(member, {g_.ref(string_rule(0, k_unbounded)), colon, ws(), g_.ref(value)});
    const uint32_t tail = g_.declare_rule(fmt::format("member tail at {}", at(path)));
    g_.add_alternative(tail, {comma, ws(), g_.ref(member)});
    g_.add_alternative(r, {open, ws(), close});
    g_.add_alternative(r, {open, ws(), g_.ref(member), g_.repeat(tail, 0, k_unbounded), ws(), close});
    return r;
  }

  // `"key": value` per property; whitespace only after '{', ',' and ':' and before '}'.
  const size_t n = list.size();
  std::vector<uint32_t> kv(n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t value = 0;
    if (list[i].schema) {
      TROUPE_TRY(uint32_t v, compile(*list[i].schema, list[i].schema_path));
      value = v;
    } else {
      value = any_value();
    }
    kv[i] = g_.declare_rule(fmt::format("property {} at {}", list[i].name, at(path)));
    std::vector<element> seq;
    g_.append_literal(seq, ojson(list[i].name).dump(-1, ' ', false, ojson::error_handler_t::replace));
    seq.insert(seq.end(), {colon, ws(), g_.ref(value)});
    g_.add_alternative(kv[i], seq);
  }
  // after[i]: the properties from i on, once one is written (each after a comma).
  std::vector<uint32_t> after(n + 1);
  after[n] = g_.declare_rule("end of properties");
  g_.add_alternative(after[n], {});
  for (size_t i = n; i-- > 0;) {
    after[i] = g_.declare_rule(fmt::format("properties from {} at {}", list[i].name, at(path)));
    g_.add_alternative(after[i], {comma, ws(), g_.ref(kv[i]), g_.ref(after[i + 1])});
    if (!list[i].required) g_.add_alternative(after[i], {g_.ref(after[i + 1])});
  }
  // The first property written is j: every one before it is optional.
  const uint32_t some = g_.declare_rule(fmt::format("properties at {}", at(path)));
  bool all_optional = true;
  for (size_t j = 0; j < n && all_optional; ++j) {
    g_.add_alternative(some, {g_.ref(kv[j]), g_.ref(after[j + 1])});
    all_optional = !list[j].required;
  }
  if (all_optional) g_.add_alternative(r, {open, ws(), close});
  g_.add_alternative(r, {open, ws(), g_.ref(some), ws(), close});
  return r;
}

result<uint32_t> json_compiler::compile_array(const ojson& s, const std::string& path) {
  TROUPE_TRY(uint32_t lo, count_keyword(s, "minItems", path, 0));
  TROUPE_TRY(uint32_t hi, count_keyword(s, "maxItems", path, k_unbounded));
  if (hi < lo) return invalid(path, fmt::format("maxItems {} is below minItems {}", hi, lo));
  uint32_t item = 0;
  if (auto it = s.find("items"); it != s.end()) {
    TROUPE_TRY(uint32_t i, compile(*it, path + "/items"));
    item = i;
  } else {
    item = any_value();
  }
  const element open = g_.bytes(byte_set{}.add('[')), close = g_.bytes(byte_set{}.add(']')),
                comma = g_.bytes(byte_set{}.add(','));
  const uint32_t tail = g_.declare_rule(fmt::format("items tail at {}", at(path)));
  g_.add_alternative(tail, {comma, ws(), g_.ref(item)});
  const uint32_t r = g_.declare_rule(fmt::format("array at {}", at(path)));
  if (lo == 0) g_.add_alternative(r, {open, ws(), close});
  if (hi >= 1)
    g_.add_alternative(r, {open, ws(), g_.ref(item),
                           g_.repeat(tail, lo > 0 ? lo - 1 : 0, hi == k_unbounded ? k_unbounded : hi - 1), ws(), close});
  return r;
}

result<grammar> compile_json_schema(const ojson& schema) {
  grammar g;
  json_compiler c(g, schema);
  TROUPE_TRY(uint32_t root, c.schema_rule(""));
  g.set_root(root);
  if (auto e = g.check()) return make_error("the schema compiles to an unusable grammar: " + *e);
  return g;
}

grammar any_json_object_grammar() {
  grammar g;
  const ojson empty = ojson::object();
  json_compiler c(g, empty);
  g.set_root(c.any_object());
  return g;
}

}  // namespace troupe::structured
