// Proves the YAML and JSON readers: YAML 1.2 core types for unquoted scalars, positions,
// duplicate keys, and limits that stop hostile input (deep nesting, alias bombs, size).
#include "config/node.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>

namespace troupe::config {
namespace {

TEST(node, yaml_plain_scalars_get_core_schema_types) {
  struct scalar_case {
    const char* yaml;
    node_kind kind;
  };
  const scalar_case cases[] = {
      {"3", node_kind::integer},      {"-3", node_kind::integer},     {"+5", node_kind::integer},
      {"0x1f", node_kind::integer},   {"0o17", node_kind::integer},   {"3.5", node_kind::floating},
      {"1e3", node_kind::floating},   {"3.", node_kind::floating},    {".5", node_kind::floating},
      {".inf", node_kind::floating},  {"-.Inf", node_kind::floating}, {".nan", node_kind::floating},
      {"true", node_kind::boolean},   {"True", node_kind::boolean},   {"FALSE", node_kind::boolean},
      {"yes", node_kind::string},     {"on", node_kind::string},      {"1_000", node_kind::string},
      {"~", node_kind::null},         {"null", node_kind::null},      {"", node_kind::null},
      {"\"3\"", node_kind::string},   {"'true'", node_kind::string},  {"\"\"", node_kind::string},
      {"!!str 3", node_kind::string}, {"v2", node_kind::string},      {"1.2.3", node_kind::string},
      {"99999999999999999999", node_kind::floating},
  };
  for (const auto& c : cases) {
    auto n = parse_yaml(std::string("k: ") + c.yaml + "\n");
    ASSERT_TRUE(n.ok()) << c.yaml << format_errors(n.errors);
    const node* v = n.value.find("k");
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->kind, c.kind) << c.yaml;
  }
  auto hex = parse_yaml("k: 0x1f\n");
  EXPECT_EQ(hex.value.find("k")->integer, 31);
  auto oct = parse_yaml("k: 0o17\n");
  EXPECT_EQ(oct.value.find("k")->integer, 15);
}

TEST(node, positions_are_one_based_lines_and_columns) {
  auto n = parse_yaml("a:\n  b: 1\n  c:\n    - x\n");
  ASSERT_TRUE(n.ok());
  const node_member& a = n.value.members[0];
  EXPECT_EQ(a.line, 1);
  EXPECT_EQ(a.column, 1);
  const node_member& c = a.value.members[1];
  EXPECT_EQ(c.key, "c");
  EXPECT_EQ(c.line, 3);
  EXPECT_EQ(c.column, 3);
  EXPECT_EQ(c.value.items[0].line, 4);
  EXPECT_EQ(c.value.items[0].column, 7);
  // A key with no value points at the key.
  auto e = parse_yaml("a:\n  b:\n");
  EXPECT_EQ(e.value.members[0].value.members[0].value.line, 2);
}

TEST(node, structural_errors) {
  struct error_case {
    const char* yaml;
    const char* message;
    int line;
  };
  const error_case cases[] = {
      {"a: 1\nb: 2\na: 3\n", "duplicate key \"a\"", 3},
      {"? [a, b]\n: 1\n", "a map key must be a plain name, not a list or map", 1},
      {"a: 1\n---\nb: 2\n", "expected one YAML document, found more than one", 2},
      {"---\na: 1\n---\nb: 2\n", "expected one YAML document, found more than one", 3},
      {"a: 1\n...\nb: 2\n", "expected one YAML document, found more than one", 3},
  };
  for (const auto& c : cases) {
    auto n = parse_yaml(c.yaml);
    ASSERT_EQ(n.errors.size(), 1u) << c.yaml;
    EXPECT_EQ(n.errors[0].message, c.message) << c.yaml;
    EXPECT_EQ(n.errors[0].line, c.line) << c.yaml;
  }
  // One document with its markers is fine.
  EXPECT_TRUE(parse_yaml("%YAML 1.2\n---\na: 1\n...\n# done\n").ok());
  EXPECT_TRUE(parse_yaml("--- # the config\na: 1\n").ok());
  // yaml-cpp 0.7's LoadAll loops forever on a lone ",": the reader must not (fuzzer find).
  EXPECT_TRUE(parse_yaml(",").ok());
  auto syntax = parse_yaml("a: [1, 2\nb: 3\n");
  ASSERT_EQ(syntax.errors.size(), 1u);
  EXPECT_EQ(syntax.errors[0].message.rfind("YAML syntax error: ", 0), 0u);
}

std::string nested_flow(int depth) { return "k: " + std::string(depth, '[') + std::string(depth, ']') + "\n"; }
std::string nested_block(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += std::string(2 * i, ' ') + "k" + std::to_string(i) + ":\n";
  return s;
}
std::string nested_dashes(int depth) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += "- ";
  return s + "x\n";
}

TEST(node, nesting_is_limited_before_yaml_cpp_recurses) {
  EXPECT_TRUE(parse_yaml(nested_flow(40)).ok());
  EXPECT_TRUE(parse_yaml(nested_block(40)).ok());
  EXPECT_TRUE(parse_yaml(nested_dashes(40)).ok());
  for (const std::string& deep : {nested_flow(100000), nested_block(600), nested_dashes(50000),
                                  std::string(100000, '{')}) {
    auto n = parse_yaml(deep);
    ASSERT_EQ(n.errors.size(), 1u);
    EXPECT_EQ(n.errors[0].message.rfind("the YAML document nests deeper than 64 levels", 0), 0u)
        << n.errors[0].message;
  }
}

TEST(node, depth_estimate_never_undercounts_generated_documents) {
  // Random documents mixing block maps, block lists and flow lists, each with a known depth.
  std::mt19937 rng(7);
  for (int iter = 0; iter < 300; ++iter) {
    std::string text;
    int real = 0;
    std::function<void(int, int)> block = [&](int indent, int depth) {
      real = std::max(real, depth);
      int n = 1 + static_cast<int>(rng() % 3);
      for (int i = 0; i < n; ++i) {
        std::string pad(static_cast<size_t>(indent), ' ');
        switch (rng() % 4) {
          case 0: text += pad + "k" + std::to_string(i) + ": 'v [ #'\n"; break;
          case 1:
            if (depth < 30) {
              text += pad + "m" + std::to_string(i) + ":\n";
              block(indent + 1 + static_cast<int>(rng() % 3), depth + 1);
            }
            break;
          case 2: {
            int f = 1 + static_cast<int>(rng() % 6);
            text += pad + "f" + std::to_string(i) + ": " + std::string(static_cast<size_t>(f), '[') +
                    "\"]]\"" + std::string(static_cast<size_t>(f), ']') + "\n";
            real = std::max(real, depth + f + 1);
            break;
          }
          default: {
            int d = 1 + static_cast<int>(rng() % 4);
            text += pad + "s" + std::to_string(i) + ":\n" + pad + " ";
            for (int j = 0; j < d; ++j) text += "- ";
            text += "x\n";
            real = std::max(real, depth + d + 1);
          }
        }
      }
    };
    block(0, 1);
    auto parsed = parse_yaml(text, {1 << 20, 1000, 100000});
    ASSERT_TRUE(parsed.ok()) << text << format_errors(parsed.errors);
    EXPECT_GE(estimate_yaml_depth(text), real) << text;
  }
}

TEST(node, alias_expansion_is_bounded) {
  // Each level refers to the previous one ten times: 10^7 values once expanded.
  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 7; ++i) {
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) bomb += (j ? ", *a" : "*a") + std::to_string(i - 1);
    bomb += "]\n";
  }
  auto n = parse_yaml(bomb);
  ASSERT_EQ(n.errors.size(), 1u);
  EXPECT_EQ(n.errors[0].message,
            "the YAML document expands to more than 100000 values (aliases included)");
  // Small aliases are fine.
  auto ok = parse_yaml("a: &x {b: 1}\nc: *x\n");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.value.find("c")->find("b")->integer, 1);
}

TEST(node, yaml_must_be_utf8) {
  // Fuzzer find: keys differing only in ill-formed bytes could not be written back apart.
  auto n = parse_yaml("a: 1\nb\xff: 2\n");
  ASSERT_EQ(n.errors.size(), 1u);
  EXPECT_EQ(n.errors[0].message, "the YAML document is not valid UTF-8");
  EXPECT_EQ(n.errors[0].line, 2);
  EXPECT_EQ(n.errors[0].column, 2);
  EXPECT_TRUE(parse_yaml("name: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82\n").ok());
  for (const char* bad : {"\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"})
    EXPECT_NE(utf8_error_offset(bad), std::string_view::npos) << bad;
  EXPECT_EQ(to_valid_utf8("a\xff" "b"), "a\xef\xbf\xbd" "b");
}

TEST(node, size_is_limited) {
  std::string big(2 << 20, ' ');
  EXPECT_FALSE(parse_yaml(big).ok());
  EXPECT_FALSE(parse_json(big).ok());
}

TEST(node, json_types_duplicates_and_limits) {
  auto j = parse_json(R"({"a": 1, "b": 1.5, "c": "x", "d": true, "e": null, "f": [1],
                          "g": 18446744073709551615})");
  ASSERT_TRUE(j.ok()) << format_errors(j.errors);
  EXPECT_EQ(j.value.find("a")->kind, node_kind::integer);
  EXPECT_EQ(j.value.find("b")->kind, node_kind::floating);
  EXPECT_EQ(j.value.find("c")->kind, node_kind::string);
  EXPECT_FALSE(j.value.find("c")->yaml_plain);
  EXPECT_EQ(j.value.find("d")->kind, node_kind::boolean);
  EXPECT_EQ(j.value.find("e")->kind, node_kind::null);
  EXPECT_EQ(j.value.find("f")->items.size(), 1u);
  EXPECT_EQ(j.value.find("g")->kind, node_kind::floating);  // beyond int64

  auto dup = parse_json(R"({"a": {"b": 1, "b": 2}})");
  ASSERT_EQ(dup.errors.size(), 1u);
  EXPECT_EQ(dup.errors[0].message, "JSON input: duplicate key \"b\"");

  auto bad = parse_json("{\n  \"a\": }");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_EQ(bad.errors[0].message.rfind("JSON syntax error: ", 0), 0u);
  EXPECT_EQ(bad.errors[0].line, 2);

  EXPECT_TRUE(parse_json(std::string(60, '[') + std::string(60, ']')).ok());
  auto deep = parse_json(std::string(100000, '['));
  ASSERT_EQ(deep.errors.size(), 1u);
  EXPECT_EQ(deep.errors[0].message, "JSON input nests deeper than 64 levels");
}

TEST(node, emit_and_to_json_keep_the_meaning) {
  const std::string yaml =
      "a: \"3\"\nb: 3\nc: [x, \"true\", ~]\nd:\n  e: 'it''s'\n  f: 1.5\n  g: \"\"\n";
  auto n = parse_yaml(yaml);
  ASSERT_TRUE(n.ok());
  auto again = parse_yaml(emit_yaml(n.value));
  ASSERT_TRUE(again.ok()) << emit_yaml(n.value);
  EXPECT_TRUE(same_tree(n.value, again.value)) << emit_yaml(n.value);
  EXPECT_EQ(to_json_text(n.value),
            R"({"a":"3","b":3,"c":["x","true",null],"d":{"e":"it's","f":1.5,"g":""}})");
}

}  // namespace
}  // namespace troupe::config
