#include "runtime/text/jinja_value.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "runtime/text/jinja_string.hpp"

namespace troupe::jinja {

void fail(std::string message, int line) { throw template_error{std::move(message), line}; }

void fail_too_long() { fail("template builds a string longer than " + std::to_string(max_string_bytes) + " bytes"); }

namespace {
thread_local string_budget* current_budget = nullptr;
}  // namespace

string_budget::string_budget(uint64_t bytes) : left_(bytes), outer_(current_budget) { current_budget = this; }
string_budget::~string_budget() { current_budget = outer_; }

void string_budget::charge(size_t bytes) {
  string_budget* b = current_budget;
  if (!b) return;
  if (bytes > b->left_) fail("template builds more than its budget of string bytes (a runaway loop?)");
  b->left_ -= bytes;
}

namespace {

const std::string& empty_string() {
  static const std::string e;
  return e;
}

}  // namespace

void check_hashable(const value& key) {
  if ((key.is_list() && !key.is_tuple()) || key.is_dict()) fail("unhashable type: '" + type_name(key) + "'");
  if (key.is_tuple())
    for (const auto& e : key.items()) check_hashable(e);
}

value::value(std::string s, bool markup) : kind_(kind::string), flag_(markup) {
  if (s.size() > 64) string_budget::charge(s.size());  // short strings cost little
  if (!s.empty()) p_ = std::make_shared<std::string>(std::move(s));
}

value value::undefined(std::string message, bool security) {
  value v;
  v.p_ = std::make_shared<undefined_info>(undefined_info{std::move(message), security});
  return v;
}

value value::list(std::vector<value> items, bool tuple) {
  value v;
  v.kind_ = kind::list;
  v.flag_ = tuple;
  v.p_ = std::make_shared<list_data>(std::move(items));
  return v;
}

value value::iterable(std::vector<value> items, iter_kind k) {
  value v;
  v.kind_ = kind::iterable;
  v.p_ = std::make_shared<list_data>(std::move(items), k, false);
  return v;
}

list_data& value::iterable_ref() const { return *static_cast<list_data*>(p_.get()); }
value value::failed_generator(std::vector<value> items, std::string error) {
  value v = iterable(std::move(items), iter_kind::generator);
  v.iterable_ref().error = std::move(error);
  return v;
}

value value::range(int64_t start, int64_t stop, int64_t step, std::vector<value> items) {
  value v = iterable(std::move(items), iter_kind::range);
  list_data& d = v.iterable_ref();
  d.start = start;
  d.stop = stop;
  d.step = step;
  return v;
}

iter_kind value::iterable_kind() const { return static_cast<const list_data*>(p_.get())->iterable; }

value value::dict(std::shared_ptr<dict_data> d) {
  value v;
  v.kind_ = kind::dict;
  v.p_ = std::move(d);
  return v;
}

value value::dict() { return dict(std::make_shared<dict_data>()); }

value value::ns(std::shared_ptr<ns_data> n) {
  value v;
  v.kind_ = kind::ns;
  v.p_ = std::move(n);
  return v;
}

value value::callable(std::shared_ptr<callable_data> c) {
  value v;
  v.kind_ = kind::callable;
  v.p_ = std::move(c);
  return v;
}

value value::loop(std::shared_ptr<loop_data> l) {
  value v;
  v.kind_ = kind::loop;
  v.p_ = std::move(l);
  return v;
}

namespace {

template <class Json>
value convert_json(const Json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::object: {
      auto d = std::make_shared<dict_data>();
      d->items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) d->items.emplace_back(value(it.key()), convert_json(it.value()));
      return value::dict(std::move(d));
    }
    case nlohmann::json::value_t::array: {
      std::vector<value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(convert_json(e));
      return value::list(std::move(items));
    }
    case nlohmann::json::value_t::string: return value(j.template get_ref<const std::string&>());
    case nlohmann::json::value_t::boolean: return value(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return value(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      auto u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return value(static_cast<double>(u));
      return value(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float: return value(j.template get<double>());
    default: return value::none();
  }
}

}  // namespace

value value::from_json(const nlohmann::json& j) { return convert_json(j); }
value value::from_json(const nlohmann::ordered_json& j) { return convert_json(j); }

double value::as_double() const {
  switch (kind_) {
    case kind::boolean: return u_.b ? 1.0 : 0.0;
    case kind::integer: return static_cast<double>(u_.i);
    case kind::floating: return u_.f;
    default: return 0.0;
  }
}

const std::string& value::str() const {
  return p_ ? *static_cast<const std::string*>(p_.get()) : empty_string();
}
const std::vector<value>& value::items() const { return static_cast<const list_data*>(p_.get())->items; }
std::vector<value>& value::mutable_items() const { return static_cast<list_data*>(p_.get())->items; }
const dict_data& value::dict_ref() const { return *static_cast<const dict_data*>(p_.get()); }
ns_data& value::ns_ref() const { return *static_cast<ns_data*>(p_.get()); }
const callable_data& value::callable_ref() const { return *static_cast<const callable_data*>(p_.get()); }
loop_data& value::loop_ref() const { return *static_cast<loop_data*>(p_.get()); }
const undefined_info* value::undefined_ref() const {
  return kind_ == kind::undefined ? static_cast<const undefined_info*>(p_.get()) : nullptr;
}

void release(std::vector<value>& children) {
  constexpr int max_nested_destruction = 64;
  static thread_local int depth = 0;
  static thread_local std::vector<value> pending;
  if (depth >= max_nested_destruction) {
    for (auto& c : children) pending.push_back(std::move(c));
    children.clear();  // only moved-from values left: no recursion
    return;
  }
  ++depth;
  children.clear();
  if (depth == 1) {
    while (!pending.empty()) {
      value v = std::move(pending.back());
      pending.pop_back();
    }  // v is destroyed here, one level deep; what it postpones lands in `pending`
  }
  --depth;
}

void release(value& child) {
  std::vector<value> one;
  one.push_back(std::move(child));
  release(one);
}

dict_data::~dict_data() {
  std::vector<value> children;
  children.reserve(items.size() * 2);
  for (auto& [k, v] : items) {
    children.push_back(std::move(k));
    children.push_back(std::move(v));
  }
  items.clear();
  release(children);
}

ns_data::~ns_data() {
  std::vector<value> children;
  children.reserve(attrs.size());
  for (auto& kv : attrs) children.push_back(std::move(kv.second));
  attrs.clear();
  release(children);
}

const value* dict_data::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k.is_string() && k.str() == key) return &v;
  return nullptr;
}

const value* dict_data::find(const value& key) const {
  if (key.is_string()) return find(std::string_view(key.str()));
  check_hashable(key);
  for (const auto& [k, v] : items)
    if (equals(k, key)) return &v;
  return nullptr;
}

void dict_data::set(value key, value v) {
  check_hashable(key);
  for (auto& [k, old] : items) {
    if (equals(k, key)) {
      old = std::move(v);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(v));
}

const value* ns_data::find(std::string_view name) const {
  for (const auto& [k, v] : attrs)
    if (k == name) return &v;
  return nullptr;
}

void ns_data::set(std::string_view name, value v) {
  for (auto& [k, old] : attrs) {
    if (k == name) {
      old = std::move(v);
      return;
    }
  }
  attrs.emplace_back(std::string(name), std::move(v));
}

bool truthy(const value& v) {
  switch (v.type()) {
    case kind::undefined:
    case kind::none: return false;
    case kind::boolean: return v.get_bool();
    case kind::integer: return v.get_int() != 0;
    case kind::floating: return v.as_double() != 0.0;
    case kind::string: return !v.str().empty();
    case kind::list: return !v.items().empty();
    case kind::dict: return !v.dict_ref().items.empty();
    case kind::iterable:
      return v.iterable_kind() == iter_kind::generator || v.iterable_kind() == iter_kind::reverse_iterator ||
             !v.items().empty();
    default: return true;
  }
}

std::string type_name(const value& v) {
  switch (v.type()) {
    case kind::undefined: return "Undefined";
    case kind::none: return "NoneType";
    case kind::boolean: return "bool";
    case kind::integer: return "int";
    case kind::floating: return "float";
    case kind::string: return v.is_markup() ? "Markup" : "str";
    case kind::list: return v.is_tuple() ? "tuple" : "list";
    case kind::dict: return "dict";
    case kind::ns: return "Namespace";
    case kind::callable: return "function";
    case kind::loop: return "LoopContext";
    case kind::iterable:
      switch (v.iterable_kind()) {
        case iter_kind::generator: return "generator";
        case iter_kind::reverse_iterator: return "list_reverseiterator";
        case iter_kind::dict_items: return "dict_items";
        case iter_kind::dict_keys: return "dict_keys";
        case iter_kind::dict_values: return "dict_values";
        case iter_kind::range: return "range";
      }
      return "iterator";
  }
  return "object";
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));
  // sci is [-]d[.ddd]e[+-]xx: split into sign, digits and exponent.
  bool neg = sci[0] == '-';
  if (neg) sci.remove_prefix(1);
  size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e))
    if (c != '.') digits += c;
  int exp = 0;
  std::from_chars(sci.data() + e + 1 + (sci[e + 1] == '+' ? 1 : 0), sci.data() + sci.size(), exp);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out = neg ? "-" : "";
  if (exp < -4 || exp >= 16) {
    out += digits[0];
    if (digits.size() > 1) {
      out += '.';
      out += digits.substr(1);
    }
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    out += eb;
  } else if (exp < 0) {
    out += "0.";
    out.append(static_cast<size_t>(-exp - 1), '0');
    out += digits;
  } else {
    const auto int_len = static_cast<size_t>(exp + 1);
    if (digits.size() <= int_len) {
      out += digits;
      out.append(int_len - digits.size(), '0');
      out += ".0";
    } else {
      out += digits.substr(0, int_len);
      out += '.';
      out += digits.substr(int_len);
    }
  }
  return out;
}

namespace {

// Python gives up on reprs and comparisons nested this deep (RecursionError); so does troupe,
// before the C++ stack does.
constexpr int max_depth = 500;

// repr() with Python's guards: a namespace that contains itself prints as {...}.
class printer {
 public:
  explicit printer(std::string& out) : out_(out), start_(out.size()) {}

  void str(const value& v) {
    if (++depth_ > max_depth) fail("maximum recursion depth exceeded while getting the repr of an object");
    switch (v.type()) {
      case kind::undefined: break;
      case kind::none: out_ += "None"; break;
      case kind::boolean: out_ += v.get_bool() ? "True" : "False"; break;
      case kind::integer: out_ += std::to_string(v.get_int()); break;
      case kind::floating: out_ += float_repr(v.as_double()); break;
      case kind::string: out_ += v.str(); break;
      case kind::list: seq(v); break;
      case kind::dict: dict(v.dict_ref().items); break;
      case kind::ns: ns(v); break;
      case kind::callable: out_ += callable_repr(v); break;
      case kind::iterable: iterable(v); break;
      case kind::loop: {
        const auto& l = v.loop_ref();
        out_ += "<LoopContext " + std::to_string(l.index0 + 1) + "/" + std::to_string(l.items->size()) + ">";
        break;
      }
    }
    --depth_;
  }

  void repr(const value& v) {
    if (v.is_undefined()) {
      out_ += "Undefined";
    } else if (v.is_markup()) {
      out_ += "Markup(" + py_str_repr(v.str()) + ")";
    } else if (v.is_string()) {
      out_ += py_str_repr(v.str());
    } else {
      str(v);
    }
  }

 private:
  void seq(const value& v) {
    const auto& items = v.items();
    out_ += v.is_tuple() ? '(' : '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out_ += ", ";
      repr(items[i]);
      check_size();
    }
    if (v.is_tuple() && items.size() == 1) out_ += ',';
    out_ += v.is_tuple() ? ')' : ']';
  }

  void dict(const std::vector<std::pair<value, value>>& items) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, val] : items) {
      if (!first) out_ += ", ";
      first = false;
      repr(k);
      out_ += ": ";
      repr(val);
      check_size();
    }
    out_ += '}';
  }

  void ns(const value& v) {
    const ns_data* n = &v.ns_ref();
    out_ += "<Namespace ";
    if (std::find(active_.begin(), active_.end(), n) != active_.end()) {
      out_ += "{...}>";
      return;
    }
    active_.push_back(n);
    out_ += '{';
    bool first = true;
    for (const auto& [k, val] : n->attrs) {
      if (!first) out_ += ", ";
      first = false;
      out_ += py_str_repr(k);
      out_ += ": ";
      repr(val);
    }
    out_ += "}>";
    active_.pop_back();
  }

  void iterable(const value& v) {
    const iter_kind k = v.iterable_kind();
    if (k == iter_kind::generator || k == iter_kind::reverse_iterator) {
      // Python prints the object's address here; troupe prints a fixed one.
      const char* origin = v.iterable_ref().origin;
      if (k == iter_kind::generator) out_ += std::string("<generator object ") + (origin ? origin : "genexpr");
      else out_ += std::string("<") + (origin ? origin : "list_reverseiterator") + " object";
      out_ += " at 0x7f0000000000>";
      return;
    }
    if (k == iter_kind::range) {
      const list_data& r = v.iterable_ref();
      out_ += "range(" + std::to_string(r.start) + ", " + std::to_string(r.stop);
      if (r.step != 1) out_ += ", " + std::to_string(r.step);
      out_ += ')';
      return;
    }
    out_ += type_name(v) + "([";
    const auto& items = v.items();
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out_ += ", ";
      repr(items[i]);
    }
    out_ += "])";
  }

  // A list can hold the same long string many times: check the size as it grows.
  void check_size() const {
    if (out_.size() - start_ > max_string_bytes) fail_too_long();
  }

  std::string& out_;
  size_t start_;
  int depth_ = 0;
  std::vector<const ns_data*> active_;
};

bool equals_at(const value& a, const value& b, int depth) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.get_int() == b.get_int();
  }
  if (a.type() != b.type()) return false;
  if (depth > max_depth) fail("maximum recursion depth exceeded in comparison");
  switch (a.type()) {
    case kind::undefined:
    case kind::none: return true;
    case kind::string: return a.str() == b.str();
    case kind::list: {
      if (a.is_tuple() != b.is_tuple()) return false;
      const auto& x = a.items();
      const auto& y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals_at(x[i], y[i], depth + 1)) return false;
      return true;
    }
    case kind::dict: {
      const auto& x = a.dict_ref().items;
      const auto& y = b.dict_ref();
      if (x.size() != y.items.size()) return false;
      for (const auto& [k, v] : x) {
        const value* other = y.find(k);
        if (!other || !equals_at(v, *other, depth + 1)) return false;
      }
      return true;
    }
    case kind::iterable:
      // Ranges compare as the sequences they produce; other iterators by identity.
      if (a.iterable_kind() == iter_kind::range && b.iterable_kind() == iter_kind::range) {
        const auto& x = a.items();
        const auto& y = b.items();
        if (x.size() != y.size()) return false;
        for (size_t i = 0; i < x.size(); ++i)
          if (!equals_at(x[i], y[i], depth + 1)) return false;
        return true;
      }
      return a.identity() == b.identity();
    default: return a.identity() == b.identity();
  }
}

int compare_at(const value& a, const value& b, std::string_view op, int depth) {
  if (a.is_undefined() || b.is_undefined()) {
    const value& u = a.is_undefined() ? a : b;
    const auto* info = u.undefined_ref();
    fail(info ? info->message : "value is undefined");
  }
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      double x = a.as_double(), y = b.as_double();
      if (std::isnan(x) || std::isnan(y)) return unordered;
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    int64_t x = a.get_int(), y = b.get_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    int c = a.str().compare(b.str());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    if (depth > max_depth) fail("maximum recursion depth exceeded in comparison");
    const auto& x = a.items();
    const auto& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (equals_at(x[i], y[i], depth + 1)) continue;
      return compare_at(x[i], y[i], op, depth + 1);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  fail("'" + std::string(op) + "' not supported between instances of '" + type_name(a) + "' and '" +
       type_name(b) + "'");
}

}  // namespace

void append_str(std::string& out, const value& v) { printer(out).str(v); }

bool contains_list(const value& v) {
  if (v.is_list()) {
    if (!v.is_tuple()) return true;
    for (const auto& e : v.items())
      if (contains_list(e)) return true;
  } else if (v.is_dict()) {
    for (const auto& kv : v.dict_ref().items)
      if (contains_list(kv.second)) return true;
  }
  return false;
}

value fresh_copy(const value& v) {
  if (v.is_list()) {
    std::vector<value> items;
    items.reserve(v.items().size());
    for (const auto& e : v.items()) items.push_back(fresh_copy(e));
    return value::list(std::move(items), v.is_tuple());
  }
  if (v.is_dict()) {
    auto d = std::make_shared<dict_data>();
    d->items.reserve(v.dict_ref().items.size());
    for (const auto& [k, e] : v.dict_ref().items) d->items.emplace_back(k, fresh_copy(e));
    return value::dict(std::move(d));
  }
  return v;
}

bool has_safe_repr(const value& v) {
  switch (v.type()) {
    case kind::none:
    case kind::boolean:
    case kind::integer:
    case kind::floating:
    case kind::string: return true;
    case kind::list:
      for (const auto& e : v.items())
        if (!has_safe_repr(e)) return false;
      return true;
    case kind::dict:
      for (const auto& [k, e] : v.dict_ref().items)
        if (!has_safe_repr(k) || !has_safe_repr(e)) return false;
      return true;
    case kind::iterable: return v.iterable_kind() == iter_kind::range;
    default: return false;
  }
}

std::string to_str(const value& v) {
  if (v.is_string()) return v.str();
  std::string out;
  printer(out).str(v);
  return out;
}

std::string to_repr(const value& v) {
  std::string out;
  printer(out).repr(v);
  return out;
}

bool equals(const value& a, const value& b) { return equals_at(a, b, 0); }

int compare(const value& a, const value& b, std::string_view op) { return compare_at(a, b, op, 0); }

namespace {

void json_key(std::string& out, const value& k, const json_options& o) {
  switch (k.type()) {
    case kind::string: json_quote(out, k.str(), o.ensure_ascii); return;
    case kind::integer: out += '"' + std::to_string(k.get_int()) + '"'; return;
    case kind::boolean: out += k.get_bool() ? "\"true\"" : "\"false\""; return;
    case kind::none: out += "\"null\""; return;
    case kind::floating: out += '"' + float_repr(k.as_double()) + '"'; return;
    default: fail("keys must be str, int, float, bool or None, not " + type_name(k));
  }
}

void json_float(std::string& out, double d) {
  if (std::isnan(d)) out += "NaN";
  else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
  else out += float_repr(d);
}

void json_dump(std::string& out, const value& v, const json_options& o, int level, int depth) {
  if (depth > 512) fail("tojson: value nested too deeply");
  const std::string item_sep = o.has_separators ? o.item_separator : (o.has_indent ? "," : ", ");
  const std::string key_sep = o.has_separators ? o.key_separator : ": ";
  auto newline = [&](int lvl) {
    if (out.size() > max_string_bytes) fail_too_long();  // checked as it grows: items repeat
    if (!o.has_indent) return;
    out += '\n';
    for (int i = 0; i < lvl; ++i) out += o.indent;
  };
  switch (v.type()) {
    case kind::none: out += "null"; return;
    case kind::boolean: out += v.get_bool() ? "true" : "false"; return;
    case kind::integer: out += std::to_string(v.get_int()); return;
    case kind::floating: json_float(out, v.as_double()); return;
    case kind::string: json_quote(out, v.str(), o.ensure_ascii); return;
    case kind::list: {
      const auto& items = v.items();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_sep;
        newline(level + 1);
        json_dump(out, items[i], o, level + 1, depth + 1);
        if (out.size() > max_string_bytes) fail_too_long();
      }
      newline(level);
      out += ']';
      return;
    }
    case kind::dict: {
      const auto& d = v.dict_ref().items;
      if (d.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<value, value>*> order;
      order.reserve(d.size());
      for (const auto& kv : d) order.push_back(&kv);
      if (o.sort_keys) {
        std::stable_sort(order.begin(), order.end(),
                         [](const auto* x, const auto* y) { return compare(x->first, y->first, "<") == -1; });
      }
      out += '{';
      bool first = true;
      for (const auto* kv : order) {
        if (!first) out += item_sep;
        first = false;
        newline(level + 1);
        json_key(out, kv->first, o);
        out += key_sep;
        json_dump(out, kv->second, o, level + 1, depth + 1);
      }
      newline(level);
      out += '}';
      return;
    }
    default: fail("Object of type " + type_name(v) + " is not JSON serializable");
  }
}

}  // namespace

std::string to_json(const value& v, const json_options& options) {
  std::string out;
  json_dump(out, v, options, 0, 0);
  return out;
}

void to_nlohmann(const value& v, nlohmann::json& out) {
  switch (v.type()) {
    case kind::boolean: out = v.get_bool(); return;
    case kind::integer: out = v.get_int(); return;
    case kind::floating: out = v.as_double(); return;
    case kind::string: out = v.str(); return;
    case kind::list:
    case kind::iterable: {
      out = nlohmann::json::array();
      for (const auto& e : v.items()) {
        nlohmann::json j;
        to_nlohmann(e, j);
        out.push_back(std::move(j));
      }
      return;
    }
    case kind::dict: {
      out = nlohmann::json::object();
      for (const auto& [k, e] : v.dict_ref().items) to_nlohmann(e, out[to_str(k)]);
      return;
    }
    default: out = nullptr;
  }
}

}  // namespace troupe::jinja
