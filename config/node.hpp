// node: a YAML or JSON document as one tree with source positions, so that one validator
// serves config.yaml (yaml-cpp) and the Management API's JSON bodies (nlohmann_json).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config_error.hpp"

namespace troupe::config {

enum class node_kind { null, boolean, integer, floating, string, sequence, map };

struct node_member;

// Scalars keep their source text in `text`. A YAML plain (unquoted) scalar gets the type the
// YAML 1.2 core schema gives it ("3" an integer, "true" a boolean, "~" null); quoted YAML
// scalars are strings. JSON values keep their JSON type.
struct node {
  node_kind kind = node_kind::null;
  bool boolean = false;
  int64_t integer = 0;
  double floating = 0;
  std::string text;          // scalars: the string value, or the number/boolean as written
  bool yaml_plain = false;   // an unquoted YAML scalar (its type was inferred from its text)
  std::vector<node> items;   // sequence
  std::vector<node_member> members;  // map, in source order; keys are unique
  int line = 0;    // 1-based; 0 = unknown (JSON, or a node built in code)
  int column = 0;

  bool is_map() const { return kind == node_kind::map; }
  bool is_scalar() const;
  // The member named `key`, or nullptr.
  const node* find(std::string_view key) const;
  // For messages: `"abc" (a string)`, `3.5 (a number)`, `a map`, `a list`, `null`.
  std::string describe() const;
};

struct node_member {
  std::string key;
  int line = 0;  // position of the key
  int column = 0;
  node value;
};

// Limits that keep hostile input (deep nesting, alias bombs, huge files) from exhausting the
// stack or memory. yaml-cpp recurses once per nesting level while parsing, and aliases share
// nodes, so a small document can expand to an exponential tree when copied out.
struct parse_limits {
  size_t max_bytes = 1 << 20;
  int max_depth = 64;
  size_t max_nodes = 100000;
};

// Parses one YAML document, which must be UTF-8. Syntax errors, duplicate keys, non-scalar
// keys, more than one document and exceeded limits are reported as errors with the line
// yaml-cpp gives.
checked<node> parse_yaml(std::string_view text, const parse_limits& limits = {});

// Parses one JSON value (nlohmann's SAX parser, which does not recurse); duplicate keys and
// exceeded limits are errors.
checked<node> parse_json(std::string_view text, const parse_limits& limits = {});

// The offset of the first byte that is not part of well-formed UTF-8 (overlong forms,
// surrogates and code points above U+10FFFF included), or npos.
size_t utf8_error_offset(std::string_view s);
// `s` with each ill-formed byte replaced by U+FFFD: safe to put in JSON.
std::string to_valid_utf8(std::string_view s);

// The kind the YAML 1.2 core schema gives an unquoted scalar with this text (null, boolean,
// integer, floating or string): a string that would read as another kind must be quoted.
node_kind plain_scalar_kind(std::string_view text);

// The node as block-style YAML (yaml-cpp's emitter; strings quoted where needed). Comments
// and the original layout are not kept: the migration uses it only as its fallback.
std::string emit_yaml(const node& n);

// Structural equality: kinds, scalar values, keys in order; positions are ignored.
bool same_tree(const node& a, const node& b);

// The node as compact JSON (YAML scalars by their resolved type), for storing free-form blocks.
std::string to_json_text(const node& n);

// Estimate of how deeply `text` nests, computed before parsing: indentation levels, leading
// "- " and "? " indicators, and open flow brackets (outside quotes and comments). It is a
// cheap early check with a clear message, not the only guard: yaml-cpp 0.7's parser stops by
// itself at 500 levels (DepthGuard), and the tree walk after it is limited to max_depth.
int estimate_yaml_depth(std::string_view text);

}  // namespace troupe::config
