// Proves the JSON Schema compiler: what each keyword lets through and stops, the keywords it
// refuses by name, and oneOf's disjointness check. (That random outputs validate under an
// independent validator is proven by structured_validate, with Python's jsonschema.)
#include "runtime/structured/json_schema.hpp"

#include <gtest/gtest.h>

namespace troupe::structured {
namespace {

using ojson = nlohmann::ordered_json;

grammar compile(const char* schema) {
  auto g = compile_json_schema(ojson::parse(schema));
  EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.message());
  return g.ok() ? std::move(g).value() : grammar{};
}

bool matches(const grammar& g, std::string_view text) {
  matcher m(g);
  return m.advance(text) && m.can_end();
}

std::string error_of(const char* schema) {
  auto g = compile_json_schema(ojson::parse(schema));
  return g.ok() ? "" : g.message();
}

TEST(json_schema, object_properties_in_order_required_and_optional) {
  const grammar g = compile(R"({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"},
                                 "c": {"type": "boolean"}}, "required": ["a", "c"], "additionalProperties": false})");
  EXPECT_TRUE(matches(g, R"({"a": 1, "c": true})"));
  EXPECT_TRUE(matches(g, R"({"a":1,"b":"x","c":false})"));
  EXPECT_TRUE(matches(g, "{\n  \"a\": -3,\n  \"b\": \"\",\n  \"c\": true\n}"));
  EXPECT_FALSE(matches(g, R"({"a": 1})"));             // c is required
  EXPECT_FALSE(matches(g, R"({"c": true, "a": 1})"));  // schema order
  EXPECT_FALSE(matches(g, R"({"a": 1.5, "c": true})"));
  EXPECT_FALSE(matches(g, R"({"a": 1, "c": true, "d": 1})"));
  EXPECT_FALSE(matches(g, R"({"a": 1,, "c": true})"));
  // Whitespace where writers put it, and bounded: no space before ':' or ',', one line break.
  EXPECT_TRUE(matches(g, "{\n\t\"a\":1,\n\t\"c\": true\n}"));
  EXPECT_FALSE(matches(g, R"({"a" : 1, "c": true})"));
  EXPECT_FALSE(matches(g, R"({"a": 1 , "c": true})"));
  EXPECT_FALSE(matches(g, "{\n\n\"a\": 1, \"c\": true}"));
  EXPECT_FALSE(matches(g, "{\"a\":  1, \"c\": true}"));
  EXPECT_FALSE(matches(g, "{\n" + std::string(k_max_whitespace + 1, ' ') + "\"a\": 1, \"c\": true}"));
}

TEST(json_schema, every_type_and_lists_of_types) {
  EXPECT_TRUE(matches(compile(R"({"type": "null"})"), "null"));
  EXPECT_TRUE(matches(compile(R"({"type": "boolean"})"), "false"));
  EXPECT_TRUE(matches(compile(R"({"type": "number"})"), "-1.5e3"));
  EXPECT_FALSE(matches(compile(R"({"type": "integer"})"), "1.0"));
  EXPECT_TRUE(matches(compile(R"({"type": "array"})"), R"([1, "a", {"b": null}, []])"));
  EXPECT_TRUE(matches(compile(R"({"type": "object"})"), R"({"x": [1, {"y": "z"}]})"));
  const grammar g = compile(R"({"type": ["string", "null"]})");
  EXPECT_TRUE(matches(g, "null"));
  EXPECT_TRUE(matches(g, R"("ok")"));
  EXPECT_FALSE(matches(g, "1"));
}

TEST(json_schema, strings_lengths_escapes_and_utf8) {
  const grammar g = compile(R"({"type": "string", "minLength": 2, "maxLength": 3})");
  EXPECT_FALSE(matches(g, R"("a")"));
  EXPECT_TRUE(matches(g, R"("ab")"));
  EXPECT_TRUE(matches(g, "\"\xc3\xa9t\xc3\xa9\""));  // three characters, five bytes
  EXPECT_TRUE(matches(g, R"("a\"\n")"));
  EXPECT_FALSE(matches(g, R"("abcd")"));
  const grammar any = compile(R"({"type": "string"})");
  EXPECT_FALSE(matches(any, "\"a\nb\""));       // raw control character
  EXPECT_FALSE(matches(any, "\"\xc3\""));      // broken UTF-8
  EXPECT_FALSE(matches(any, "\"\xed\xa0\x80\""));  // a UTF-8-encoded surrogate
  EXPECT_TRUE(matches(any, R"("\u00e9")"));
  EXPECT_FALSE(matches(any, R"("\ud83d\ude00")"));  // surrogate escapes: one character, two escapes
  EXPECT_FALSE(matches(any, R"("\x")"));
}

TEST(json_schema, numbers_with_bounds) {
  const grammar g = compile(R"({"type": "integer", "minimum": 1, "maximum": 12})");
  for (int i = -2; i <= 20; ++i) EXPECT_EQ(matches(g, std::to_string(i)), i >= 1 && i <= 12) << i;
  const grammar x = compile(R"({"type": "number", "exclusiveMinimum": 0, "maximum": 1})");
  EXPECT_FALSE(matches(x, "0"));
  EXPECT_FALSE(matches(x, "0.0"));
  EXPECT_TRUE(matches(x, "0.001"));
  EXPECT_TRUE(matches(x, "1"));
  EXPECT_FALSE(matches(x, "1.01"));
  EXPECT_FALSE(matches(x, "1e-3"));  // no exponents under bounds
  EXPECT_NE(error_of(R"({"type": "integer", "minimum": 1.2, "maximum": 1.8})").find("no value"), std::string::npos);
}

TEST(json_schema, arrays_items_and_counts) {
  const grammar g = compile(R"({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3})");
  EXPECT_FALSE(matches(g, "[]"));
  EXPECT_TRUE(matches(g, "[1]"));
  EXPECT_TRUE(matches(g, "[1, 2, 3]"));
  EXPECT_FALSE(matches(g, "[1, 2, 3, 4]"));
  EXPECT_FALSE(matches(g, R"([1, "2"])"));
  EXPECT_FALSE(matches(g, "[1,]"));
  EXPECT_TRUE(matches(compile(R"({"type": "array", "maxItems": 0})"), "[ ]"));
}

TEST(json_schema, enum_const_any_of_and_refs) {
  const grammar e = compile(R"({"enum": ["red", "green", 3, null, {"a": [1]}]})");
  for (const char* ok : {R"("red")", R"("green")", "3", "null", R"({"a":[1]})"}) EXPECT_TRUE(matches(e, ok)) << ok;
  EXPECT_FALSE(matches(e, R"("blue")"));
  EXPECT_FALSE(matches(e, R"({"a": [1]})"));  // enum values are written compactly
  const grammar typed = compile(R"({"type": "string", "enum": ["a", 1]})");
  EXPECT_FALSE(matches(typed, "1"));  // of the enum, only values of the type
  EXPECT_TRUE(matches(compile(R"({"const": "x"})"), R"("x")"));
  const grammar any = compile(R"({"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 1}]})");
  EXPECT_TRUE(matches(any, "5"));
  EXPECT_TRUE(matches(any, R"("a")"));
  EXPECT_FALSE(matches(any, R"("ab")"));
  // A recursive schema through $defs.
  const grammar tree = compile(R"({"$ref": "#/$defs/node", "$defs": {"node": {"type": "object",
      "properties": {"v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
      "required": ["v"], "additionalProperties": false}}})");
  EXPECT_TRUE(matches(tree, R"({"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": []}]})"));
  EXPECT_FALSE(matches(tree, R"({"v": 1, "kids": [{"w": 2}]})"));
  const grammar root = compile(R"({"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
      "required": ["next"], "additionalProperties": false})");
  EXPECT_TRUE(matches(root, R"({"next": {"next": null}})"));
}

TEST(json_schema, maps_and_required_names_beyond_properties) {
  const grammar m = compile(R"({"type": "object", "additionalProperties": {"type": "integer"}})");
  EXPECT_TRUE(matches(m, R"({"x": 1, "y": 2})"));
  EXPECT_FALSE(matches(m, R"({"x": "1"})"));
  const grammar r = compile(R"({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a", "b"]})");
  EXPECT_TRUE(matches(r, R"({"a": 1, "b": [true]})"));
  EXPECT_NE(error_of(R"({"type": "object", "required": ["b"], "additionalProperties": false})").find("\"b\" is required"),
            std::string::npos);
}

TEST(json_schema, refuses_what_it_cannot_honour_by_name) {
  EXPECT_NE(error_of(R"({"type": "string", "pattern": "^a+$"})").find("'pattern'"), std::string::npos);
  EXPECT_NE(error_of(R"({"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}}})")
                .find("'format' (at #/properties/when)"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"type": "array", "uniqueItems": true})").find("'uniqueItems'"), std::string::npos);
  EXPECT_NE(error_of(R"({"type": "number", "multipleOf": 2})").find("'multipleOf'"), std::string::npos);
  EXPECT_NE(error_of(R"({"allOf": [{"type": "string"}, {"maxLength": 2}]})").find("'allOf'"), std::string::npos);
  EXPECT_NE(error_of(R"({"$ref": "https://example.com/s.json"})").find("'$ref'"), std::string::npos);
  EXPECT_NE(error_of(R"({"$ref": "#/$defs/missing"})").find("points at nothing"), std::string::npos);
  EXPECT_NE(error_of(R"({"type": "strin"})").find("not a JSON Schema type"), std::string::npos);
  EXPECT_NE(error_of("false").find("accepts no value"), std::string::npos);
  // Annotations and unknown keywords change nothing.
  EXPECT_EQ(error_of(R"({"type": "string", "title": "T", "description": "d", "default": "x", "x-extra": 1})"), "");
}

TEST(json_schema, one_of_must_be_disjoint) {
  EXPECT_EQ(error_of(R"({"oneOf": [{"type": "string"}, {"type": "integer"}]})"), "");
  EXPECT_EQ(error_of(R"({"oneOf": [{"const": "a"}, {"const": "b"}]})"), "");
  EXPECT_EQ(error_of(R"({"oneOf": [
      {"type": "object", "properties": {"kind": {"const": "cat"}, "lives": {"type": "integer"}}, "required": ["kind"]},
      {"type": "object", "properties": {"kind": {"const": "dog"}}, "required": ["kind"]}]})"),
            "");
  EXPECT_NE(error_of(R"({"oneOf": [{"type": "number"}, {"type": "integer"}]})").find("'oneOf'"), std::string::npos);
  EXPECT_NE(error_of(R"({"oneOf": [{"type": "object"}, {"type": "object", "required": ["a"]}]})").find("use anyOf"),
            std::string::npos);
}

TEST(json_schema, any_object_grammar_takes_objects_only) {
  const grammar g = any_json_object_grammar();
  EXPECT_TRUE(matches(g, R"({})"));
  EXPECT_TRUE(matches(g, R"({"a": [1, 2.5, "x", true, null, {"b": {}}]})"));
  EXPECT_FALSE(matches(g, "[1]"));
  EXPECT_FALSE(matches(g, R"("x")"));
  EXPECT_FALSE(matches(g, R"({"a": 1} )"));  // nothing after the value
}

}  // namespace
}  // namespace troupe::structured
