// jinja_ast: the parsed form of a chat template, built once by the parser and walked by the
// evaluator for every render.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/text/jinja_value.hpp"

namespace troupe::jinja {

class evaluator;
struct call_args;
using filter_fn = value (*)(evaluator&, const value& input, call_args& args);
using test_fn = bool (*)(evaluator&, const value& input, call_args& args);

enum class expr_kind : uint8_t {
  literal,
  name,
  list,
  tuple,
  dict,
  getattr,
  getitem,
  slice,
  call,
  filter,
  test,
  not_,
  neg,
  pos,
  binary,
  compare,
  and_,
  or_,
  concat,
  cond,
  block_input,  // the body of a {% filter %} or {% set x | f %} block, fed to its filters
};
enum class binop : uint8_t { add, sub, mul, div, floordiv, mod, pow };
enum class cmpop : uint8_t { eq, ne, lt, le, gt, ge, in, not_in };

struct expr;
using expr_ptr = std::unique_ptr<expr>;

struct keyword_arg {
  std::string name;
  expr_ptr value;
};

// One node type for all expressions; `args` holds the operands:
//   list/tuple: items; dict: k0, v0, k1, v1...; getattr: object (attribute in `name`);
//   getitem: object, index; slice: start, stop, step (each may be null); call: callee, args...;
//   filter/test: input, args...; not/neg/pos: operand; binary/and/or: left, right;
//   compare: first, then one operand per entry of `cmp`; concat: parts;
//   cond: value, test, else (else may be null).
struct expr {
  expr_kind kind = expr_kind::literal;
  int line = 0;
  value literal;
  bool fresh_copy = false;  // a folded literal holding lists: each evaluation gets its own copy
  int name_id = -1;
  std::string name;
  std::vector<expr_ptr> args;
  std::vector<keyword_arg> kwargs;
  expr_ptr dyn_args;    // f(*x)
  expr_ptr dyn_kwargs;  // f(**x)
  binop op = binop::add;
  std::vector<cmpop> cmp;
  filter_fn filter = nullptr;  // resolved by name after parsing; null: fails when evaluated
  test_fn test = nullptr;
};

// An assignment target: a name, a tuple of targets (unpacking) or namespace.attr.
struct target {
  enum class kind : uint8_t { name, tuple, attr } type = kind::name;
  int name_id = -1;
  std::string name;
  std::string attr;
  std::vector<target> items;
};

enum class stmt_kind : uint8_t {
  data,
  output,
  if_,
  for_,
  set,
  set_block,
  macro,
  call_block,
  filter_block,
  with,
  scope,  // a body rendered in its own scope ({% generation %} of transformers)
  break_,
  continue_,
};

struct stmt;
using stmt_ptr = std::unique_ptr<stmt>;
using stmt_list = std::vector<stmt_ptr>;

struct if_branch {
  expr_ptr test;
  stmt_list body;
};

struct stmt {
  stmt_kind kind = stmt_kind::data;
  int line = 0;
  std::string text;                 // data
  std::vector<expr_ptr> exprs;      // output: expressions; set/for: the value; with: values
  std::vector<if_branch> branches;  // if / elif
  stmt_list body;                   // for/macro/call/filter/set-block/with/scope body
  stmt_list else_body;              // if's else, for's else
  target tgt;                       // set, set_block, for
  std::vector<target> with_targets;
  expr_ptr loop_filter;             // for x in y if cond
  expr_ptr filter;                  // set_block / filter_block filter chain; call_block's call
  // macro and call block
  std::string name;
  int name_id = -1;
  std::vector<int> params;
  std::vector<std::string> param_names;
  std::vector<expr_ptr> defaults;   // for the last defaults.size() params
  bool catch_varargs = false;
  bool catch_kwargs = false;
  bool uses_caller = false;
};

// Names are interned per template: scopes key variables by these ids.
struct program {
  stmt_list root;
  std::vector<std::string> names;
};

// Ids interned first in every program.
inline constexpr int id_loop = 0;
inline constexpr int id_caller = 1;
inline constexpr int id_varargs = 2;
inline constexpr int id_kwargs = 3;

}  // namespace troupe::jinja
