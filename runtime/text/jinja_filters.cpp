// jinja2's built-in filters and tests (with transformers' tojson), over jinja values.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "runtime/text/jinja_eval.hpp"
#include "runtime/text/jinja_parser.hpp"
#include "runtime/text/jinja_string.hpp"

namespace troupe::jinja {
namespace {

// soft_str(): str() that keeps Markup.
value soft_str(const value& v) { return v.is_string() ? v : value(to_str(v)); }

bool opt_bool(const value* v, bool dflt) { return v ? truthy(*v) : dflt; }

int64_t opt_int(const value* v, int64_t dflt, const char* what) {
  if (!v) return dflt;
  if (v->is_int() || v->is_bool()) return v->get_int();
  fail(std::string(what) + ": '" + type_name(*v) + "' object cannot be interpreted as an integer");
}

int64_t length_of(const value& v) {
  switch (v.type()) {
    case kind::string: return static_cast<int64_t>(code_point_count(v.str()));
    case kind::list: return static_cast<int64_t>(v.items().size());
    case kind::dict: return static_cast<int64_t>(v.dict_ref().items.size());
    case kind::undefined: return 0;
    case kind::loop: return static_cast<int64_t>(v.loop_ref().items->size());
    case kind::iterable:
      if (v.iterable_kind() != iter_kind::generator && v.iterable_kind() != iter_kind::reverse_iterator)
        return static_cast<int64_t>(v.items().size());
      fail("object of type '" + type_name(v) + "' has no len()");
    default: fail("object of type '" + type_name(v) + "' has no len()");
  }
}

// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then item 0, with getitem semantics.
value attr_path(evaluator& ev, value item, const value& attribute) {
  if (!attribute.is_string()) return ev.get_item(item, attribute);
  const std::string& path = attribute.str();
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!part.empty() && part.size() < 18 && part.find_first_not_of("0123456789") == std::string::npos) {
      item = ev.get_item(item, value(static_cast<int64_t>(std::stoll(part))));
    } else {
      item = ev.get_item(item, value(part));
    }
    if (dot == std::string::npos) return item;
    start = dot + 1;
  }
}

value lower_if_str(const value& v) { return v.is_string() ? value(py_lower(v.str())) : v; }

// The key jinja2 sorts and compares by: the attribute (if any), lowercased unless case_sensitive.
value sort_key(evaluator& ev, const value& item, const value* attribute, bool case_sensitive,
               const value* dflt = nullptr) {
  value k = attribute && !attribute->is_none() ? attr_path(ev, item, *attribute) : item;
  if (dflt && k.is_undefined()) k = *dflt;
  return case_sensitive ? k : lower_if_str(k);
}

// jinja2's sort filter: sorted() with a key of one value per comma-separated attribute, so
// keys compare as lists (equal items never reach '<', which e.g. None would not support).
std::vector<value> sorted_by_attributes(evaluator& ev, std::vector<value> items, const value* attribute,
                                        bool case_sensitive, bool reverse) {
  std::vector<value> paths;
  if (attribute && attribute->is_string()) {
    for (auto& p : py_split(attribute->str(), std::string(","), -1)) paths.emplace_back(std::move(p));
  } else {
    paths.push_back(attribute ? *attribute : value::none());
  }
  std::vector<std::pair<value, value>> keyed;
  keyed.reserve(items.size());
  for (auto& it : items) {
    std::vector<value> key;
    for (const auto& p : paths) key.push_back(sort_key(ev, it, &p, case_sensitive));
    keyed.emplace_back(value::list(std::move(key)), std::move(it));
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? compare(b.first, a.first, "<") == -1 : compare(a.first, b.first, "<") == -1;
  });
  std::vector<value> out;
  out.reserve(keyed.size());
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return out;
}

// dictsort's key is the bare key or value: sorted() then compares them with '<' directly.
std::vector<value> sorted_by_position(std::vector<value> pairs, size_t pos, bool case_sensitive, bool reverse) {
  std::vector<std::pair<value, value>> keyed;
  keyed.reserve(pairs.size());
  for (auto& p : pairs) {
    value k = p.items()[pos];
    keyed.emplace_back(case_sensitive ? k : lower_if_str(k), std::move(p));
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? compare(b.first, a.first, "<") == -1 : compare(a.first, b.first, "<") == -1;
  });
  std::vector<value> out;
  out.reserve(keyed.size());
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return out;
}

// jinja2's map, select, reject, selectattr, rejectattr, unique, batch and items are generators:
// their bodies run when the result is iterated, so that is where their errors surface. troupe
// runs the body at once and keeps a failure for that moment.
template <class Body>
value generator(const char* name, Body body) {
  std::vector<value> out;
  value g;
  try {
    body(out);
    g = value::iterable(std::move(out), iter_kind::generator);
  } catch (const template_error& e) {
    g = value::failed_generator(std::move(out), e.message);
  }
  g.iterable_ref().origin = name;
  return g;
}

value empty_generator(const char* name) {
  return generator(name, [](std::vector<value>&) {});
}

// ---- filters

value f_abs(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "abs", {});
  if (v.is_int() || v.is_bool()) {
    if (v.get_int() == INT64_MIN) fail("integer overflow");
    return value(static_cast<int64_t>(std::llabs(v.get_int())));
  }
  if (v.is_float()) return value(std::fabs(v.as_double()));
  fail("bad operand type for abs(): '" + type_name(v) + "'");
}

value f_attr(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "attr", {"name"});
  if (!r.get(0)) fail("attr() missing 1 required positional argument: 'name'");
  if (v.is_dict()) {
    if (!r.get(0)->is_string()) return value::undefined("attribute name must be a string");
    if (method_kind(v, r.get(0)->str()) == attr_kind::none)
      return value::undefined("'dict object' has no attribute '" + r.get(0)->str() + "'");
  }
  if (!r.get(0)->is_string()) fail("attribute name must be string, not '" + type_name(*r.get(0)) + "'");
  return ev.get_attr(v, r.get(0)->str());
}

value f_batch(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "batch", {"linecount", "fill_with"});
  return generator("do_batch", [&](std::vector<value>& out) {
    int64_t n = opt_int(r.get(0), 0, "batch");
    if (n <= 0) fail("batch size must be positive");
    std::vector<value> cur;
    for (auto& item : iterate(v)) {
      if (static_cast<int64_t>(cur.size()) == n) {
        out.push_back(value::list(std::move(cur)));
        cur.clear();
      }
      cur.push_back(std::move(item));
    }
    if (!cur.empty()) {
      if (r.get(1) && !r.get(1)->is_none())
        while (static_cast<int64_t>(cur.size()) < n) cur.push_back(*r.get(1));
      out.push_back(value::list(std::move(cur)));
    }
    ev.check_items(out.size());
  });
}

value str_call(evaluator& ev, const value& v, std::string_view method, call_args& a) {
  return call_method(ev, soft_str(v), method, a);
}

value f_capitalize(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "capitalize", {});
  return str_call(ev, v, "capitalize", a);
}
value f_lower(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "lower", {});
  return str_call(ev, v, "lower", a);
}
value f_upper(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "upper", {});
  return str_call(ev, v, "upper", a);
}

value f_center(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "center", {"width"});
  call_args ca;
  ca.pos.push_back(r.get(0) ? *r.get(0) : value(int64_t(80)));
  return str_call(ev, v, "center", ca);
}

value f_length(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "length", {});
  return value(length_of(v));
}

value f_default(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "default", {"default_value", "boolean"});
  const bool boolean = opt_bool(r.get(1), false);
  if (v.is_undefined() || (boolean && !truthy(v))) return r.get(0) ? *r.get(0) : value("");
  return v;
}

value f_dictsort(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "dictsort", {"case_sensitive", "by", "reverse"});
  if (!v.is_dict()) fail("You can only sort by either \"key\" or \"value\"");
  const bool case_sensitive = opt_bool(r.get(0), false);
  std::string by = r.get(1) ? to_str(*r.get(1)) : "key";
  if (by != "key" && by != "value") fail("You can only sort by either \"key\" or \"value\"");
  std::vector<value> items;
  for (const auto& [k, val] : v.dict_ref().items) items.push_back(value::list({k, val}, true));
  return value::list(sorted_by_position(std::move(items), by == "key" ? 0 : 1, case_sensitive, opt_bool(r.get(2), false)));
}

value f_escape(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "escape", {});
  return markup_escape(v);
}

value f_forceescape(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "forceescape", {});
  return value(html_escape(to_str(v)), true);
}

value f_first(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "first", {});
  if (v.is_list()) return v.items().empty() ? value::undefined("No first item, sequence was empty.") : v.items()[0];
  // next(iter(generator)) takes one item: a failed generator still yields what it produced.
  if (v.is_iterable_object() && !v.iterable_ref().error.empty() && !v.items().empty()) return v.items()[0];
  if (v.is_string() && v.str().empty()) return value::undefined("No first item, sequence was empty.");
  if (v.is_string()) {
    size_t i = 0;
    utf8_next(v.str(), i);
    return value(v.str().substr(0, i), v.is_markup());
  }
  auto items = iterate(v);
  (void)ev;
  return items.empty() ? value::undefined("No first item, sequence was empty.") : items[0];
}

value f_last(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "last", {});
  if (v.is_iterable_object() &&
      (v.iterable_kind() == iter_kind::generator || v.iterable_kind() == iter_kind::reverse_iterator))
    fail("'" + type_name(v) + "' object is not reversible");
  auto items = v.is_list() || v.is_iterable_object() ? v.items() : iterate(v);
  return items.empty() ? value::undefined("No last item, sequence was empty.") : items.back();
}

bool parse_float_text(std::string s, double& out) {
  s = py_strip(s, std::nullopt, true, true);
  std::string t;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_' && i > 0 && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i - 1])) &&
        std::isdigit(static_cast<unsigned char>(s[i + 1])))
      continue;
    t += s[i];
  }
  if (t.empty()) return false;
  std::string low = py_lower(t);
  std::string body = (low[0] == '+' || low[0] == '-') ? low.substr(1) : low;
  if (body == "inf" || body == "infinity" || body == "nan") {
    out = body == "nan" ? NAN : (low[0] == '-' ? -INFINITY : INFINITY);
    return true;
  }
  if (body.find_first_not_of("0123456789.e+-") != std::string::npos) return false;
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return end && *end == '\0';
}

value f_float(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "float", {"default"});
  if (v.is_undefined()) ev.undefined_error(v);  // float(Undefined) raises, and jinja2 lets it
  value dflt = r.get(0) ? *r.get(0) : value(0.0);
  if (v.is_number()) return value(v.as_double());
  if (v.is_string()) {
    double d;
    if (parse_float_text(v.str(), d)) return value(d);
  }
  return dflt;
}

bool parse_int_text(const std::string& text, int base, int64_t& out) {
  std::string s = py_strip(text, std::nullopt, true, true);
  std::string t;
  for (char c : s)
    if (c != '_') t += c;
  if (t.empty()) return false;
  size_t i = 0;
  bool neg = false;
  if (t[0] == '+' || t[0] == '-') {
    neg = t[0] == '-';
    i = 1;
  }
  if (base == 0 || base == 16 || base == 8 || base == 2) {
    if (t.size() > i + 1 && t[i] == '0') {
      char p = static_cast<char>(t[i + 1] | 0x20);
      int b = p == 'x' ? 16 : (p == 'o' ? 8 : (p == 'b' ? 2 : 0));
      if (b && (base == 0 || base == b)) {
        base = b;
        i += 2;
      }
    }
    if (base == 0) base = 10;
  }
  if (i >= t.size()) return false;
  uint64_t acc = 0;
  for (; i < t.size(); ++i) {
    char c = static_cast<char>(t[i] | 0x20);
    int d = (c >= '0' && c <= '9') ? c - '0' : ((c >= 'a' && c <= 'z') ? c - 'a' + 10 : 99);
    if (d >= base) return false;
    if (__builtin_mul_overflow(acc, static_cast<uint64_t>(base), &acc) ||
        __builtin_add_overflow(acc, static_cast<uint64_t>(d), &acc) || acc > static_cast<uint64_t>(INT64_MAX))
      return false;
  }
  out = neg ? -static_cast<int64_t>(acc) : static_cast<int64_t>(acc);
  return true;
}

value f_int(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "int", {"default", "base"});
  if (v.is_undefined()) ev.undefined_error(v);  // int(Undefined) raises, and jinja2 lets it
  value dflt = r.get(0) ? *r.get(0) : value(int64_t(0));
  const int64_t base = opt_int(r.get(1), 10, "int");
  if (v.is_int() || v.is_bool()) return value(v.get_int());
  if (v.is_float()) {
    double d = v.as_double();
    if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return dflt;
    return value(static_cast<int64_t>(d));
  }
  if (v.is_string()) {
    int64_t out;
    if (base >= 0 && base <= 36 && base != 1 && parse_int_text(v.str(), static_cast<int>(base), out)) return value(out);
    double d;
    if (parse_float_text(v.str(), d) && std::isfinite(d) && std::fabs(d) < 9.2e18) return value(static_cast<int64_t>(d));
  }
  return dflt;
}

value f_format(evaluator& ev, const value& v, call_args& a) {
  value args;
  if (!a.kw.empty() && !a.pos.empty()) fail("can't handle positional and keyword arguments at the same time");
  if (!a.kw.empty()) {
    auto d = std::make_shared<dict_data>();
    for (const auto& [k, val] : a.kw) d->set(value(k), val);
    args = value::dict(std::move(d));
  } else {
    args = value::list(a.pos, true);
  }
  std::string out = percent_format(soft_str(v), args);
  ev.check_string(out.size());
  return value(std::move(out), v.is_markup());
}

value f_indent(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "indent", {"width", "first", "blank"});
  std::string indention;
  if (r.get(0) && r.get(0)->is_string()) {
    indention = r.get(0)->str();
  } else {
    int64_t w = opt_int(r.get(0), 4, "indent");
    if (w > (int64_t(1) << 20)) fail("indent width too large");
    indention.assign(static_cast<size_t>(std::max<int64_t>(0, w)), ' ');
  }
  const bool first = opt_bool(r.get(1), false);
  const bool blank = opt_bool(r.get(2), false);
  if (v.is_undefined()) ev.undefined_error(v);
  if (!v.is_string()) fail("unsupported operand type(s) for +=: '" + type_name(v) + "' and 'str'");
  std::string s = v.str() + "\n";  // jinja2's quirk for splitlines
  auto lines = py_splitlines(s, false);
  std::string out;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) out += "\n" + indention;
      out += lines[i];
      ev.check_string(out.size());
    }
  } else {
    out = lines.empty() ? std::string() : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += indention;
      out += lines[i];
      ev.check_string(out.size());
    }
  }
  if (first) out = indention + out;
  return value(std::move(out), v.is_markup());
}

value f_join(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "join", {"d", "attribute"});
  std::string sep = r.get(0) ? to_str(*r.get(0)) : "";
  std::string out;
  bool first = true;
  for (auto& item : iterate(v)) {
    value x = r.get(1) && !r.get(1)->is_none() ? attr_path(ev, item, *r.get(1)) : item;
    if (!first) out += sep;
    first = false;
    append_str(out, x);
    ev.check_string(out.size());
  }
  return value(std::move(out));
}

value f_list(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "list", {});
  auto items = iterate(v);
  ev.check_items(items.size());
  return value::list(std::move(items));
}

value f_items(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "items", {});
  return generator("do_items", [&](std::vector<value>& out) {
    if (v.is_undefined()) return;
    if (!v.is_dict()) fail("Can only get item pairs from a mapping.");
    for (const auto& [k, val] : v.dict_ref().items) out.push_back(value::list({k, val}, true));
  });
}

value f_map(evaluator& ev, const value& v, call_args& a) {
  if (!truthy(v)) return empty_generator("sync_do_map");  // jinja2: `if value:`
  return generator("sync_do_map", [&](std::vector<value>& out) {
    const value* attribute = nullptr;
    const value* dflt = nullptr;
    for (const auto& [k, val] : a.kw) {
      if (k == "attribute") attribute = &val;
      else if (k == "default") dflt = &val;
    }
    if (attribute) {
      if (a.kw.size() > (dflt ? 2u : 1u)) fail("Unexpected keyword argument");
      if (!a.pos.empty()) fail("map() got unexpected positional arguments with 'attribute'");
      for (const auto& item : iterate(v)) {
        value x = attr_path(ev, item, *attribute);
        if (dflt && x.is_undefined()) x = *dflt;
        out.push_back(std::move(x));
      }
      return;
    }
    if (a.pos.empty()) fail("map requires a filter argument");
    if (!a.pos[0].is_string()) fail("map: the filter name must be a string");
    const std::string name = a.pos[0].str();
    call_args rest;
    rest.pos.assign(a.pos.begin() + 1, a.pos.end());
    rest.kw = a.kw;
    for (const auto& item : iterate(v)) {
      call_args copy = rest;
      out.push_back(ev.apply_filter(name, item, copy));
    }
  });
}

value min_max(evaluator& ev, const value& v, call_args& a, bool want_max) {
  arg_reader r(a, want_max ? "max" : "min", {"case_sensitive", "attribute"});
  const bool cs = opt_bool(r.get(0), false);
  auto items = iterate(v);
  if (items.empty()) return value::undefined(std::string("No aggregated item, sequence was empty."));
  size_t best = 0;
  value best_key = sort_key(ev, items[0], r.get(1), cs);
  for (size_t i = 1; i < items.size(); ++i) {
    value k = sort_key(ev, items[i], r.get(1), cs);
    int c = compare(k, best_key, want_max ? ">" : "<");
    if (want_max ? c == 1 : c == -1) {
      best = i;
      best_key = k;
    }
  }
  return items[best];
}
value f_min(evaluator& ev, const value& v, call_args& a) { return min_max(ev, v, a, false); }
value f_max(evaluator& ev, const value& v, call_args& a) { return min_max(ev, v, a, true); }

value select_impl(evaluator& ev, const value& v, call_args& a, bool by_attr, bool keep) {
  if (!truthy(v)) return empty_generator("select_or_reject");  // jinja2: `if value:`
  return generator("select_or_reject", [&](std::vector<value>& out) {
    size_t first_arg = 0;
    const value* attribute = nullptr;
    if (by_attr) {
      if (a.pos.empty()) fail("Missing parameter for attribute name");
      attribute = &a.pos[0];
      first_arg = 1;
    }
    std::string test_name;
    call_args test_args;
    if (a.pos.size() > first_arg) {
      if (!a.pos[first_arg].is_string()) fail("the test name must be a string");
      test_name = a.pos[first_arg].str();
      test_args.pos.assign(a.pos.begin() + static_cast<long>(first_arg) + 1, a.pos.end());
      test_args.kw = a.kw;
    }
    for (auto& item : iterate(v)) {
      value x = attribute ? attr_path(ev, item, *attribute) : item;
      bool ok;
      if (test_name.empty()) {
        ok = truthy(x);
      } else {
        call_args copy = test_args;
        ok = ev.apply_test(test_name, x, copy);
      }
      if (ok == keep) out.push_back(std::move(item));
    }
  });
}

value f_select(evaluator& ev, const value& v, call_args& a) { return select_impl(ev, v, a, false, true); }
value f_reject(evaluator& ev, const value& v, call_args& a) { return select_impl(ev, v, a, false, false); }
value f_selectattr(evaluator& ev, const value& v, call_args& a) { return select_impl(ev, v, a, true, true); }
value f_rejectattr(evaluator& ev, const value& v, call_args& a) { return select_impl(ev, v, a, true, false); }

value f_replace(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "replace", {"old", "new", "count"});
  if (!r.get(0) || !r.get(1)) fail("replace() missing required arguments 'old' and 'new'");
  call_args ca;
  ca.pos.push_back(soft_str(*r.get(0)));
  ca.pos.push_back(soft_str(*r.get(1)));
  if (r.get(2) && !r.get(2)->is_none()) ca.pos.push_back(*r.get(2));
  return str_call(ev, v, "replace", ca);
}

value f_reverse(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "reverse", {});
  if (v.is_string()) {
    std::u32string u = utf8_decode(v.str());
    std::reverse(u.begin(), u.end());
    return value(utf8_encode(u), v.is_markup());
  }
  // reversed() where Python has it (an iterator); a generator is listed and reversed instead.
  // Undefined has __len__ and __getitem__, so reversed() accepts it (and yields nothing).
  const bool reversible = v.is_list() || v.is_dict() || v.is_undefined() ||
                          (v.is_iterable_object() && v.iterable_kind() != iter_kind::generator &&
                           v.iterable_kind() != iter_kind::reverse_iterator);
  auto items = iterate(v);
  std::reverse(items.begin(), items.end());
  if (reversible) {
    value it = value::iterable(std::move(items), iter_kind::reverse_iterator);
    it.iterable_ref().origin = v.is_dict()                                                 ? "dict_reversekeyiterator"
                               : v.is_iterable_object() && v.iterable_kind() == iter_kind::range ? "range_iterator"
                               : v.is_list() && !v.is_tuple()                             ? "list_reverseiterator"
                                                                                          : "reversed";
    return it;
  }
  return value::list(std::move(items));
}

// Python's round(x, n) for floats: correctly rounded, ties to even (printf rounds the exact
// binary value the same way).
double py_round(double x, int64_t n) {
  if (!std::isfinite(x)) return x;
  if (n > 300) return x;
  if (n < -300) return 0.0 * x;
  char buf[512];
  if (n >= 0) {
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(n), x);
    return std::strtod(buf, nullptr);
  }
  double p = std::pow(10.0, static_cast<double>(-n));
  double y = x / p;
  double r = std::nearbyint(y);
  return r * p;
}

value f_round(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "round", {"precision", "method"});
  const int64_t precision = opt_int(r.get(0), 0, "round");
  std::string method = r.get(1) ? to_str(*r.get(1)) : "common";
  if (method != "common" && method != "ceil" && method != "floor") fail("method must be common, ceil or floor");
  if (!v.is_number()) fail("type " + type_name(v) + " doesn't define __round__ method");
  if (method == "common") {
    if (v.is_int() || v.is_bool()) {
      if (precision >= 0) return value(v.get_int());
      return value(static_cast<int64_t>(py_round(static_cast<double>(v.get_int()), precision)));
    }
    return value(py_round(v.as_double(), precision));
  }
  double p = std::pow(10.0, static_cast<double>(precision));
  double x = v.as_double() * p;
  x = method == "ceil" ? std::ceil(x) : std::floor(x);
  return value(x / p);
}

value f_safe(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "safe", {});
  return value(to_str(v), true);
}

value f_sort(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "sort", {"reverse", "case_sensitive", "attribute"});
  return value::list(sorted_by_attributes(ev, iterate(v), r.get(2), opt_bool(r.get(1), false), opt_bool(r.get(0), false)));
}

value f_string(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "string", {});
  return soft_str(v);
}

value f_sum(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "sum", {"attribute", "start"});
  value total = r.get(1) ? *r.get(1) : value(int64_t(0));
  for (auto& item : iterate(v)) {
    value x = r.get(0) && !r.get(0)->is_none() ? attr_path(ev, item, *r.get(0)) : item;
    if (x.is_undefined()) ev.undefined_error(x);
    if ((total.is_int() || total.is_bool()) && (x.is_int() || x.is_bool())) {
      int64_t s;
      if (__builtin_add_overflow(total.get_int(), x.get_int(), &s)) fail("integer overflow");
      total = value(s);
    } else if (total.is_number() && x.is_number()) {
      total = value(total.as_double() + x.as_double());
    } else if (total.is_list() && x.is_list()) {
      std::vector<value> items = total.items();
      items.insert(items.end(), x.items().begin(), x.items().end());
      ev.check_items(items.size());
      total = value::list(std::move(items));
    } else {
      fail("unsupported operand type(s) for +: '" + type_name(total) + "' and '" + type_name(x) + "'");
    }
  }
  return total;
}

value f_title(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "title", {});
  // jinja2 splits on runs of whitespace, '-', '(', '{', '[' and '<', then capitalizes each piece.
  std::string s = to_str(v);
  std::string out;
  size_t i = 0;
  auto is_sep = [](char32_t c) { return is_py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<'; };
  while (i < s.size()) {
    size_t j = i;
    char32_t c = utf8_next(s, j);
    if (is_sep(c)) {
      out += s.substr(i, j - i);
      i = j;
      continue;
    }
    size_t e = j;
    while (e < s.size()) {
      size_t k = e;
      if (is_sep(utf8_next(s, k))) break;
      e = k;
    }
    out += py_upper_char(c);
    out += py_lower(std::string_view(s).substr(j, e - j));
    i = e;
  }
  return value(std::move(out), v.is_markup());
}

value f_tojson(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  json_options o;
  o.ensure_ascii = opt_bool(r.get(0), false);
  if (const value* ind = r.get(1); ind && !ind->is_none()) {
    o.has_indent = true;
    if (ind->is_string()) {
      o.indent = ind->str();
    } else if (ind->is_int() || ind->is_bool()) {
      if (ind->get_int() > 1024) fail("tojson indent too large");
      o.indent.assign(static_cast<size_t>(std::max<int64_t>(0, ind->get_int())), ' ');
    } else {
      fail("tojson: indent must be an int or a string");
    }
  }
  if (const value* sep = r.get(2); sep && !sep->is_none()) {
    if (!sep->is_list() || sep->items().size() != 2 || !sep->items()[0].is_string() || !sep->items()[1].is_string())
      fail("tojson: separators must be a (item_separator, key_separator) pair of strings");
    o.has_separators = true;
    o.item_separator = sep->items()[0].str();
    o.key_separator = sep->items()[1].str();
  }
  o.sort_keys = opt_bool(r.get(3), false);
  std::string out = to_json(v, o);
  ev.check_string(out.size());
  return value(std::move(out));
}

value f_trim(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "trim", {"chars"});
  call_args ca;
  if (r.get(0)) ca.pos.push_back(*r.get(0));
  return str_call(ev, v, "strip", ca);
}

value f_truncate(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "truncate", {"length", "killwords", "end", "leeway"});
  const int64_t length = opt_int(r.get(0), 255, "truncate");
  const bool killwords = opt_bool(r.get(1), false);
  const std::string end = r.get(2) ? to_str(*r.get(2)) : "...";
  const int64_t leeway = r.get(3) && !r.get(3)->is_none() ? opt_int(r.get(3), 5, "truncate") : 5;
  const auto end_len = static_cast<int64_t>(code_point_count(end));
  if (length < end_len) fail("expected length >= " + std::to_string(end_len) + ", got " + std::to_string(length));
  if (leeway < 0) fail("expected leeway >= 0, got " + std::to_string(leeway));
  // jinja2 takes len() of the value as it is: a short list comes back unchanged.
  if (!v.is_string()) {
    if (length_of(v) <= length + leeway) return v;
    fail("'" + type_name(v) + "' object has no attribute 'rsplit'");
  }
  const std::string& s = v.str();
  if (static_cast<int64_t>(code_point_count(s)) <= length + leeway) return v;
  std::string head = s.substr(0, byte_offset(s, static_cast<size_t>(length - end_len)));
  if (killwords) return value(head + end);
  size_t sp = head.rfind(' ');
  return value((sp == std::string::npos ? head : head.substr(0, sp)) + end);
}

value f_unique(evaluator& ev, const value& v, call_args& a) {
  arg_reader r(a, "unique", {"case_sensitive", "attribute"});
  return generator("do_unique", [&](std::vector<value>& out) {
    const bool cs = opt_bool(r.get(0), false);
    std::vector<value> seen;
    for (auto& item : iterate(v)) {
      value k = sort_key(ev, item, r.get(1), cs);
      if ((k.is_list() && !k.is_tuple()) || k.is_dict()) fail("unhashable type: '" + type_name(k) + "'");
      bool dup = false;
      for (const auto& s : seen) {
        if (equals(s, k)) {
          dup = true;
          break;
        }
      }
      if (dup) continue;
      seen.push_back(std::move(k));
      out.push_back(std::move(item));
    }
  });
}

value f_wordcount(evaluator&, const value& v, call_args& a) {
  arg_reader r(a, "wordcount", {});
  // len(re.findall(r"\w+", s)): runs of letters, digits and underscores.
  std::string s = to_str(v);
  int64_t n = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    char32_t c = utf8_next(s, i);
    bool w = c == '_' || is_digit_cp(c) || is_alpha_cp(c);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return value(n);
}

struct filter_entry {
  std::string_view name;
  filter_fn fn;
};

constexpr filter_entry filters[] = {
    {"abs", f_abs},
    {"attr", f_attr},
    {"batch", f_batch},
    {"capitalize", f_capitalize},
    {"center", f_center},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"first", f_first},
    {"float", f_float},
    {"forceescape", f_forceescape},
    {"format", f_format},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_lower},
    {"map", f_map},
    {"max", f_max},
    {"min", f_min},
    {"reject", f_reject},
    {"rejectattr", f_rejectattr},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"round", f_round},
    {"safe", f_safe},
    {"select", f_select},
    {"selectattr", f_selectattr},
    {"sort", f_sort},
    {"string", f_string},
    {"sum", f_sum},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"truncate", f_truncate},
    {"unique", f_unique},
    {"upper", f_upper},
    {"wordcount", f_wordcount},
};

// ---- tests

void no_args(const call_args& a, const char* test) {
  if (!a.pos.empty() || !a.kw.empty())
    fail(std::string("test_") + test + "() takes 1 positional argument but " + std::to_string(a.pos.size() + 1) +
         " were given");
}

bool t_defined(evaluator&, const value& v, call_args& a) {
  no_args(a, "defined");
  return !v.is_undefined();
}
bool t_undefined(evaluator&, const value& v, call_args& a) {
  no_args(a, "undefined");
  return v.is_undefined();
}
bool t_none(evaluator&, const value& v, call_args& a) {
  no_args(a, "none");
  return v.is_none();
}
bool t_boolean(evaluator&, const value& v, call_args& a) {
  no_args(a, "boolean");
  return v.is_bool();
}
bool t_true(evaluator&, const value& v, call_args& a) {
  no_args(a, "true");
  return v.is_bool() && v.get_bool();
}
bool t_false(evaluator&, const value& v, call_args& a) {
  no_args(a, "false");
  return v.is_bool() && !v.get_bool();
}
bool t_integer(evaluator&, const value& v, call_args& a) {
  no_args(a, "integer");
  return v.is_int();
}
bool t_float(evaluator&, const value& v, call_args& a) {
  no_args(a, "float");
  return v.is_float();
}
bool t_number(evaluator&, const value& v, call_args& a) {
  no_args(a, "number");
  return v.is_number();
}
bool t_string(evaluator&, const value& v, call_args& a) {
  no_args(a, "string");
  return v.is_string();
}
bool t_mapping(evaluator&, const value& v, call_args& a) {
  no_args(a, "mapping");
  return v.is_dict();
}
bool t_iterable(evaluator&, const value& v, call_args& a) {
  no_args(a, "iterable");
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined() || v.is_loop() || v.is_iterable_object();
}
bool t_sequence(evaluator&, const value& v, call_args& a) {
  no_args(a, "sequence");
  return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined() ||
         (v.is_iterable_object() && v.iterable_kind() == iter_kind::range);
}
bool t_callable(evaluator&, const value& v, call_args& a) {
  no_args(a, "callable");
  return v.is_callable() || v.is_loop() || v.is_undefined();
}
bool t_escaped(evaluator&, const value& v, call_args& a) {
  no_args(a, "escaped");
  return v.is_markup();
}

const value& one_arg(const call_args& a, const char* test) {
  arg_reader r(a, test, {"other"});
  if (!r.get(0)) fail(std::string(test) + "() missing 1 required positional argument");
  return *r.get(0);
}

int64_t int_of(evaluator& ev, const value& v) {
  if (v.is_undefined()) ev.undefined_error(v);
  if (v.is_int() || v.is_bool()) return v.get_int();
  fail("unsupported operand type(s) for %: '" + type_name(v) + "' and 'int'");
}

bool t_odd(evaluator& ev, const value& v, call_args& a) {
  no_args(a, "odd");
  if (v.is_float()) return std::fmod(std::fabs(v.as_double()), 2.0) == 1.0;
  return (int_of(ev, v) % 2 + 2) % 2 == 1;
}
bool t_even(evaluator& ev, const value& v, call_args& a) {
  no_args(a, "even");
  if (v.is_float()) return std::fmod(v.as_double(), 2.0) == 0.0;
  return int_of(ev, v) % 2 == 0;
}
bool t_divisibleby(evaluator& ev, const value& v, call_args& a) {
  const value& n = one_arg(a, "divisibleby");
  if (v.is_float() || n.is_float()) {
    if (n.as_double() == 0.0) fail("float modulo");
    return std::fmod(v.as_double(), n.as_double()) == 0.0;
  }
  int64_t d = int_of(ev, n);
  if (d == 0) fail("integer division or modulo by zero");
  if (d == -1) return true;
  return int_of(ev, v) % d == 0;
}
bool t_eq(evaluator&, const value& v, call_args& a) { return equals(v, one_arg(a, "eq")); }
bool t_ne(evaluator&, const value& v, call_args& a) { return !equals(v, one_arg(a, "ne")); }
bool t_lt(evaluator&, const value& v, call_args& a) { return compare(v, one_arg(a, "lt"), "<") == -1; }
bool t_le(evaluator&, const value& v, call_args& a) {
  const int c = compare(v, one_arg(a, "le"), "<=");
  return c == -1 || c == 0;
}
bool t_gt(evaluator&, const value& v, call_args& a) { return compare(v, one_arg(a, "gt"), ">") == 1; }
bool t_ge(evaluator&, const value& v, call_args& a) {
  const int c = compare(v, one_arg(a, "ge"), ">=");
  return c == 1 || c == 0;
}
bool t_in(evaluator&, const value& v, call_args& a) { return contains(one_arg(a, "in"), v); }
bool t_sameas(evaluator&, const value& v, call_args& a) {
  const value& o = one_arg(a, "sameas");
  if (v.type() != o.type()) return false;
  switch (v.type()) {
    case kind::undefined:
    case kind::none: return true;
    case kind::boolean:
    case kind::integer:
    case kind::floating: return equals(v, o);
    default: return v.identity() == o.identity();
  }
}
bool t_lower(evaluator&, const value& v, call_args& a) {
  no_args(a, "lower");
  return py_islower(to_str(v));
}
bool t_upper(evaluator&, const value& v, call_args& a) {
  no_args(a, "upper");
  return py_isupper(to_str(v));
}
// `x is filter` looks x up in a dict of filters, which needs a hashable x.
bool t_filter(evaluator&, const value& v, call_args& a) {
  check_hashable(v);
  no_args(a, "filter");
  return v.is_string() && jinja2_has_filter(v.str());
}
bool t_test(evaluator&, const value& v, call_args& a) {
  check_hashable(v);
  no_args(a, "test");
  return v.is_string() && jinja2_has_test(v.str());
}

struct test_entry {
  std::string_view name;
  test_fn fn;
};

constexpr test_entry tests[] = {
    {"!=", t_ne},
    {"<", t_lt},
    {"<=", t_le},
    {"==", t_eq},
    {">", t_gt},
    {">=", t_ge},
    {"boolean", t_boolean},
    {"callable", t_callable},
    {"defined", t_defined},
    {"divisibleby", t_divisibleby},
    {"eq", t_eq},
    {"equalto", t_eq},
    {"escaped", t_escaped},
    {"even", t_even},
    {"false", t_false},
    {"filter", t_filter},
    {"float", t_float},
    {"ge", t_ge},
    {"greaterthan", t_gt},
    {"gt", t_gt},
    {"in", t_in},
    {"integer", t_integer},
    {"iterable", t_iterable},
    {"le", t_le},
    {"lessthan", t_lt},
    {"lower", t_lower},
    {"lt", t_lt},
    {"mapping", t_mapping},
    {"ne", t_ne},
    {"none", t_none},
    {"number", t_number},
    {"odd", t_odd},
    {"sameas", t_sameas},
    {"sequence", t_sequence},
    {"string", t_string},
    {"test", t_test},
    {"true", t_true},
    {"undefined", t_undefined},
    {"upper", t_upper},
};

}  // namespace

filter_fn find_filter(std::string_view name) {
  for (const auto& f : filters)
    if (f.name == name) return f.fn;
  return nullptr;
}

test_fn find_test(std::string_view name) {
  for (const auto& t : tests)
    if (t.name == name) return t.fn;
  return nullptr;
}

bool jinja2_has_filter(std::string_view name) {
  static constexpr std::string_view missing[] = {"filesizeformat", "groupby", "pprint", "random", "slice",
                                                 "striptags", "urlencode", "urlize", "wordwrap", "xmlattr"};
  if (find_filter(name)) return true;
  return std::find(std::begin(missing), std::end(missing), name) != std::end(missing);
}

bool jinja2_has_test(std::string_view name) { return find_test(name) != nullptr; }

}  // namespace troupe::jinja
