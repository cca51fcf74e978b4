// jinja_eval: renders a parsed chat template over a context, with jinja2's scoping, Undefined
// and sandbox rules, and with limits so that no template can hang or exhaust memory.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/text/jinja_ast.hpp"
#include "runtime/text/jinja_value.hpp"

namespace troupe::jinja {

// Arguments of a call to a filter, test, method, global or macro.
struct call_args {
  std::vector<value> pos;
  std::vector<std::pair<std::string, value>> kw;
};

// Binds call_args to named parameters as Python does; errors name the function.
class arg_reader {
 public:
  arg_reader(const call_args& args, std::string_view fn, std::initializer_list<std::string_view> params);
  const value* get(size_t i) const { return i < bound_.size() ? bound_[i] : nullptr; }

 private:
  std::vector<const value*> bound_;
};

// A variable scope: the template's top level, one per macro call, one per loop.
struct scope {
  std::shared_ptr<scope> parent;
  std::vector<std::pair<int, value>> vars;
  const value* find(int id) const;
  void set(int id, value v);
};

struct callable_data {
  enum class type : uint8_t { macro, builtin, method } kind = type::builtin;
  std::string name;                // macro, global function or method name
  const stmt* macro = nullptr;     // a macro, or a call block's body (passed as `caller`)
  // Where the macro was defined. Weak: the macro is usually stored in that very scope, and a
  // strong reference would make a cycle that outlives the render.
  std::weak_ptr<scope> closure;
  value self;                      // the object a method is bound to
  mutable bool used = false;       // joiner() state
  callable_data() = default;
  callable_data(const callable_data&) = delete;
  callable_data& operator=(const callable_data&) = delete;
  ~callable_data() { release(self); }
};

// Guards for untrusted templates (the fuzz target renders arbitrary ones).
struct limits {
  size_t max_output = size_t(64) << 20;   // bytes of rendered text and of any one string
  size_t max_items = size_t(4) << 20;     // elements of any one list built by the template
  uint64_t max_steps = 10'000'000;        // loop iterations plus calls, per render
  int max_call_depth = 200;               // nested macro calls
  uint64_t max_string_work = uint64_t(2) << 30;  // bytes of strings built, per render (a time bound)
};

class evaluator {
 public:
  evaluator(const program& prog, const limits& lim);

  // Renders the program; vars are the context's variables (by interned id).
  std::string render(std::vector<std::pair<int, value>> vars);

  value eval(const expr& e);
  value call(const value& callee, call_args& args);
  value get_attr(const value& obj, std::string_view name);
  value get_item(const value& obj, const value& key);
  value apply_filter(std::string_view name, const value& input, call_args& args);
  bool apply_test(std::string_view name, const value& input, call_args& args);
  [[noreturn]] void undefined_error(const value& v) const;

  // Size guards for values the template builds.
  void check_string(size_t bytes) const;
  void check_items(size_t n) const;
  void step();
  // Namespaces and loops are the mutable objects through which a template can build a
  // reference cycle ({% set ns.me = ns %}); the evaluator clears them when the render ends.
  void track(const std::shared_ptr<ns_data>& ns);
  ~evaluator();

  const program& prog() const { return prog_; }

 private:
  enum class flow : uint8_t { normal, break_, continue_ };

  flow exec(const stmt_list& body);
  flow exec_stmt(const stmt& s);
  flow exec_for(const stmt& s);
  void exec_set(const stmt& s);
  void assign(const target& t, const value& v, scope& sc);
  void write(const value& v);
  // Renders body into a string; `f` reports a break or continue that left it early (set and
  // filter blocks run inline in jinja2, so those reach the enclosing loop).
  std::string capture(const stmt_list& body, std::shared_ptr<scope> sc, flow& f);

  value lookup(int id, const std::string& name) const;
  void bind_globals();
  value eval_filter(const expr& e);
  bool eval_test(const expr& e);
  value eval_call(const expr& e);
  void eval_args(const expr& e, size_t first, call_args& out);
  value eval_compare(const expr& e);
  value binary(binop op, const value& a, const value& b);
  value call_macro(const callable_data& m, call_args& args, const value& caller);
  value call_builtin(const callable_data& f, call_args& args);

  const program& prog_;
  limits limits_;
  std::vector<value> globals_;    // by name id: range, dict, namespace, raise_exception, ...
  std::shared_ptr<scope> scope_;  // innermost
  std::string* out_ = nullptr;
  value block_input_;             // the body text a filter block's filters apply to
  bool const_mode_ = false;       // folding constants at parse time (see fold_constant)
  friend std::optional<value> fold_constant(const program& prog, const expr& e);
  std::vector<std::weak_ptr<ns_data>> namespaces_;
  size_t namespaces_compacted_ = 16;  // size at which expired entries are next dropped
  uint64_t steps_ = 0;
  int call_depth_ = 0;
};

// jinja2's optimizer: the value of an expression that needs no variables and no calls
// (Expr.as_const), computed once at parse time, or nothing. Constant slices go through jinja2's
// lenient getitem there, so `1[::-1]` is Undefined when folded and a TypeError when not.
std::optional<value> fold_constant(const program& prog, const expr& e);

// Python's iteration over a value (list items, dict keys, string characters, nothing for
// Undefined); fails for values that are not iterable.
std::vector<value> iterate(const value& v);
// Python's `item in container`.
bool contains(const value& container, const value& item);
// Python's slice container[start:stop:step].
value slice(evaluator& ev, const value& container, const value& start, const value& stop, const value& step);

// Methods of str, dict and list objects, as the sandbox allows them (jinja_methods.cpp).
enum class attr_kind : uint8_t { none, method, unsafe };
attr_kind method_kind(const value& obj, std::string_view name);
value call_method(evaluator& ev, const value& self, std::string_view name, call_args& args);
// The global functions (range, dict, namespace, raise_exception, strftime_now, joiner).
bool is_global_function(std::string_view name);
value call_global(evaluator& ev, const callable_data& f, call_args& args);
// Python's '%' string formatting and str.format.
std::string percent_format(const value& fmt_value, const value& args);
std::string str_format(const std::string& fmt, const call_args& args);
// str(), with Markup kept when the input is Markup.
value markup_escape(const value& v);

}  // namespace troupe::jinja
