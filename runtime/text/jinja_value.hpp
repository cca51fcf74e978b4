// jinja_value: the values a chat template computes with, behaving as the Python objects that
// jinja2 hands around (None, bool, int, float, str, list, tuple, dict, Namespace, Undefined).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace troupe::jinja {

// Thrown inside the interpreter and turned into an error result at the public boundary.
// line 0 means "not known here": the evaluator fills in the line of the node it was on.
struct template_error {
  std::string message;
  int line = 0;
};
[[noreturn]] void fail(std::string message, int line = 0);

// No string a template builds may exceed this; builders check as they go, before allocating.
inline constexpr size_t max_string_bytes = size_t(64) << 20;
[[noreturn]] void fail_too_long();

// Bytes of string values a render may create in all (a time bound: a loop re-copying a big
// string would otherwise run for hours). Set by the evaluator for the duration of a render.
class string_budget {
 public:
  explicit string_budget(uint64_t bytes);
  ~string_budget();
  string_budget(const string_budget&) = delete;
  string_budget& operator=(const string_budget&) = delete;
  static void charge(size_t bytes);

 private:
  uint64_t left_;
  string_budget* outer_;
};

class value;
struct list_data;
struct dict_data;
struct ns_data;
struct callable_data;
struct loop_data;

// Why a value is undefined, for the error raised when a template uses it (jinja2's hint).
struct undefined_info {
  std::string message;      // "'foo' is undefined", "'dict object' has no attribute 'x'"
  bool security = false;    // the sandbox's unsafe attribute (list.append, dict.pop, ...)
};

enum class kind : uint8_t {
  undefined, none, boolean, integer, floating, string, list, dict, ns, callable, loop,
  iterable,  // a generator, reverse iterator or dict view: iterable, but not a list
};

// What an `iterable` value is in Python. jinja2's map/select/reject/items/unique filters return
// generators, reverse() an iterator and dict.items() a view: they iterate like lists but have
// no len() or indexing, serialize to no JSON, and generators run only once.
enum class iter_kind : uint8_t { generator, reverse_iterator, dict_items, dict_keys, dict_values, range };

class value {
 public:
  value() = default;  // a plain Undefined
  value(bool b) : kind_(kind::boolean) { u_.b = b; }                  // NOLINT: implicit on purpose
  value(int64_t i) : kind_(kind::integer) { u_.i = i; }               // NOLINT
  value(int i) : kind_(kind::integer) { u_.i = i; }                   // NOLINT
  value(double f) : kind_(kind::floating) { u_.f = f; }               // NOLINT
  value(std::string s, bool markup = false);                          // NOLINT
  value(std::string_view s) : value(std::string(s)) {}                // NOLINT
  value(const char* s) : value(std::string(s)) {}                     // NOLINT

  static value none() { value v; v.kind_ = kind::none; return v; }
  static value undefined(std::string message, bool security = false);
  static value list(std::vector<value> items, bool tuple = false);
  static value iterable(std::vector<value> items, iter_kind k);
  // A generator whose producer failed after `items`: iterating it raises `error`, as the
  // lazy Python generator would when it got there.
  static value failed_generator(std::vector<value> items, std::string error);
  static value range(int64_t start, int64_t stop, int64_t step, std::vector<value> items);
  static value dict(std::shared_ptr<dict_data> d);
  static value dict();
  static value ns(std::shared_ptr<ns_data> n);
  static value callable(std::shared_ptr<callable_data> c);
  static value loop(std::shared_ptr<loop_data> l);
  static value from_json(const nlohmann::json& j);
  static value from_json(const nlohmann::ordered_json& j);  // keeps key order, as Python does

  kind type() const { return kind_; }
  bool is_undefined() const { return kind_ == kind::undefined; }
  bool is_none() const { return kind_ == kind::none; }
  bool is_bool() const { return kind_ == kind::boolean; }
  bool is_int() const { return kind_ == kind::integer; }
  bool is_float() const { return kind_ == kind::floating; }
  bool is_number() const { return kind_ == kind::boolean || kind_ == kind::integer || kind_ == kind::floating; }
  bool is_string() const { return kind_ == kind::string; }
  bool is_list() const { return kind_ == kind::list; }   // list or tuple
  bool is_tuple() const { return kind_ == kind::list && flag_; }
  bool is_dict() const { return kind_ == kind::dict; }
  bool is_ns() const { return kind_ == kind::ns; }
  bool is_callable() const { return kind_ == kind::callable; }
  bool is_loop() const { return kind_ == kind::loop; }
  bool is_iterable_object() const { return kind_ == kind::iterable; }
  iter_kind iterable_kind() const;
  bool is_markup() const { return kind_ == kind::string && flag_; }

  bool get_bool() const { return u_.b; }
  int64_t get_int() const { return kind_ == kind::boolean ? int64_t(u_.b) : u_.i; }  // bool is an int
  double as_double() const;  // any number
  const std::string& str() const;
  const std::vector<value>& items() const;  // list, tuple or iterable
  // list.pop() and list.clear(): the only mutations jinja2's ImmutableSandboxedEnvironment
  // lets through (its list of unsafe methods names append, insert, extend, remove, reverse
  // and sort, but not these two), so templates may rely on them.
  std::vector<value>& mutable_items() const;
  const dict_data& dict_ref() const;
  ns_data& ns_ref() const;
  const callable_data& callable_ref() const;
  loop_data& loop_ref() const;
  const undefined_info* undefined_ref() const;  // null for a plain Undefined
  const void* identity() const { return p_.get(); }
  list_data& iterable_ref() const;  // kind::iterable, whose generators record being consumed

 private:
  kind kind_ = kind::undefined;
  bool flag_ = false;  // string: Markup (from |safe); list: tuple
  union {
    bool b;
    int64_t i;
    double f;
  } u_{};
  std::shared_ptr<void> p_;  // string, list_data, dict_data, ns_data, callable_data, loop_data, undefined_info
};

// Destroying a deeply nested value (lists of lists built in a loop, chains of namespaces) would
// recurse once per level; containers hand their children to release(), which postpones levels
// past a fixed depth and destroys them iteratively, as Python's "trashcan" does.
void release(std::vector<value>& children);
void release(value& child);

struct list_data {
  list_data() = default;
  list_data(std::vector<value> i, iter_kind k, bool c) : items(std::move(i)), iterable(k), consumed(c) {}
  explicit list_data(std::vector<value> i) : items(std::move(i)) {}
  list_data(const list_data&) = default;
  ~list_data() { release(items); }
  std::vector<value> items;
  iter_kind iterable = iter_kind::generator;  // for kind::iterable
  bool consumed = false;                      // a generator or iterator already iterated
  const char* origin = nullptr;               // the generator function or iterator type, for repr
  std::string error;                          // a failed generator's exception
  int64_t start = 0, stop = 0, step = 1;      // a range's arguments, for its repr and slices
};

// A Python dict: insertion-ordered, keys compared as Python does (1 == 1.0 == True).
struct dict_data {
  dict_data() = default;
  dict_data(const dict_data&) = default;
  dict_data& operator=(const dict_data&) = default;
  ~dict_data();
  std::vector<std::pair<value, value>> items;
  const value* find(const value& key) const;
  const value* find(std::string_view key) const;
  const value* find(const std::string& key) const { return find(std::string_view(key)); }
  const value* find(const char* key) const { return find(std::string_view(key)); }
  void set(value key, value v);
};

// jinja2's namespace(): the one mutable object a sandboxed template may write to.
struct ns_data {
  ns_data() = default;
  ~ns_data();
  std::vector<std::pair<std::string, value>> attrs;
  const value* find(std::string_view name) const;
  void set(std::string_view name, value v);
};

// The `loop` variable of a for loop; one object per loop, updated in place per iteration.
struct loop_data {
  std::shared_ptr<const std::vector<value>> items;
  size_t index0 = 0;
  int depth = 1;
  std::vector<value> last_changed;  // loop.changed(...)
  bool changed_seen = false;
};

// Python's truth value, str(), repr() and type name.
bool truthy(const value& v);
std::string to_str(const value& v);
void append_str(std::string& out, const value& v);
std::string to_repr(const value& v);
std::string type_name(const value& v);

// Python's ==, and the ordering used by <, sorted() and dictsort: -1, 0, 1, or `unordered`
// when a NaN is involved (every ordering comparison is then false). Fails, as Python raises
// TypeError, for types without an order.
bool equals(const value& a, const value& b);
inline constexpr int unordered = 2;
int compare(const value& a, const value& b, std::string_view op);

// A copy that shares no list with v: folded constants are evaluated afresh each time in jinja2
// (list.pop() must not change the template).
value fresh_copy(const value& v);
bool contains_list(const value& v);

// Python's hash() precondition for dict keys and set members: no lists or dicts, also not
// inside tuples. Fails with Python's TypeError message.
void check_hashable(const value& v);
// repr() of a callable (defined with the evaluator, which owns callable_data).
std::string callable_repr(const value& v);

// jinja2's has_safe_repr: the values its optimizer may fold into a constant at compile time.
bool has_safe_repr(const value& v);

// Python's float repr (shortest round trip: 1.0, 0.1, 1e-05, 1e+16, inf, nan).
std::string float_repr(double d);

// json.dumps(v, ensure_ascii, indent, separators, sort_keys) as transformers' tojson calls it.
struct json_options {
  bool ensure_ascii = false;
  bool has_indent = false;
  std::string indent;  // used when has_indent
  bool has_separators = false;
  std::string item_separator;
  std::string key_separator;
  bool sort_keys = false;
};
std::string to_json(const value& v, const json_options& options);

// Convert to nlohmann::json (for tests and for callers that need the data back).
void to_nlohmann(const value& v, nlohmann::json& out);

}  // namespace troupe::jinja
