// Methods of str, dict and list objects, the global functions, and Python's two string
// formatting languages ('%' and str.format), as templates running in jinja2's sandbox see them.
#include <cmath>
#include <cstdio>
#include <ctime>

#include "runtime/text/jinja_eval.hpp"
#include "runtime/text/jinja_string.hpp"

namespace troupe::jinja {
namespace {

bool one_of(std::string_view name, std::initializer_list<std::string_view> names) {
  for (auto n : names)
    if (n == name) return true;
  return false;
}

const std::string& need_str(const value& v, const char* what) {
  if (!v.is_string()) fail(std::string(what) + " must be str, not " + type_name(v));
  return v.str();
}

std::optional<std::string> opt_str(const value* v, const char* what) {
  if (!v || v->is_none()) return std::nullopt;
  return need_str(*v, what);
}

int64_t need_int(const value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.get_int();
  fail(std::string(what) + ": '" + type_name(v) + "' object cannot be interpreted as an integer");
}

int64_t opt_int(const value* v, int64_t dflt, const char* what) {
  if (!v || v->is_none()) return dflt;
  return need_int(*v, what);
}

value string_list(std::vector<std::string> parts, bool markup) {
  std::vector<value> items;
  items.reserve(parts.size());
  for (auto& p : parts) items.emplace_back(std::move(p), markup);
  return value::list(std::move(items));
}

// Clamps Python's optional start/end arguments (in code points) and returns the byte range.
std::pair<size_t, size_t> sub_range(const std::string& s, const value* start, const value* end) {
  if ((!start || start->is_none()) && (!end || end->is_none())) return {0, s.size()};
  const auto n = static_cast<int64_t>(code_point_count(s));
  auto clamp = [&](const value* v, int64_t dflt) {
    int64_t i = opt_int(v, dflt, "slice indices");
    if (i < 0) i = std::max<int64_t>(0, i + n);
    return std::min(i, n);
  };
  int64_t a = clamp(start, 0), b = clamp(end, n);
  if (b < a) b = a;
  size_t ba = byte_offset(s, static_cast<size_t>(a));
  return {ba, ba + byte_offset(std::string_view(s).substr(ba), static_cast<size_t>(b - a))};
}

bool affix_match(const std::string& s, const value& affix, bool prefix, const value* start, const value* end,
                 const char* fn) {
  auto [a, b] = sub_range(s, start, end);
  std::string_view view = std::string_view(s).substr(a, b - a);
  auto test = [&](const value& x) {
    const std::string& t = x.is_string() ? x.str() : need_str(x, fn);
    if (t.size() > view.size()) return false;
    return prefix ? view.substr(0, t.size()) == t : view.substr(view.size() - t.size()) == t;
  };
  if (affix.is_tuple()) {
    for (const auto& x : affix.items())
      if (test(x)) return true;
    return false;
  }
  if (!affix.is_string()) {
    fail(std::string(fn) + " first arg must be str or a tuple of str, not " + type_name(affix));
  }
  return test(affix);
}

std::string pad(const std::string& s, int64_t width, char32_t fill, char align) {
  const auto len = static_cast<int64_t>(code_point_count(s));
  if (width <= len) return s;
  if (width > (int64_t(1) << 24)) fail("padding width too large");
  std::string f;
  utf8_append(f, fill);
  const int64_t total = width - len;
  int64_t left = align == '<' ? 0 : (align == '>' ? total : total / 2);
  if (align == '^') left = total / 2;
  std::string out;
  for (int64_t i = 0; i < left; ++i) out += f;
  out += s;
  for (int64_t i = 0; i < total - left; ++i) out += f;
  return out;
}

value str_method(evaluator& ev, const value& self, std::string_view name, call_args& args) {
  const std::string& s = self.str();
  const bool mk = self.is_markup();
  auto fn = std::string("str.") + std::string(name);
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    arg_reader r(args, fn, {"chars"});
    return value(py_strip(s, opt_str(r.get(0), "strip arg"), name != "rstrip", name != "lstrip"), mk);
  }
  if (name == "split" || name == "rsplit") {
    arg_reader r(args, fn, {"sep", "maxsplit"});
    auto sep = opt_str(r.get(0), "separator");
    if (sep && sep->empty()) fail("empty separator");
    int64_t maxsplit = opt_int(r.get(1), -1, "maxsplit");
    auto parts = name == "split" ? py_split(s, sep, maxsplit) : py_rsplit(s, sep, maxsplit);
    ev.check_items(parts.size());
    return string_list(std::move(parts), mk);
  }
  if (name == "splitlines") {
    arg_reader r(args, fn, {"keepends"});
    return string_list(py_splitlines(s, r.get(0) && truthy(*r.get(0))), mk);
  }
  if (name == "startswith" || name == "endswith") {
    arg_reader r(args, fn, {"prefix", "start", "end"});
    if (!r.get(0)) fail(fn + "() takes at least 1 argument (0 given)");
    return value(affix_match(s, *r.get(0), name == "startswith", r.get(1), r.get(2), fn.c_str()));
  }
  if (name == "upper") return value(py_upper(s), mk);
  if (name == "lower" || name == "casefold") return value(py_lower(s), mk);
  if (name == "title") return value(py_title(s), mk);
  if (name == "capitalize") return value(py_capitalize(s), mk);
  if (name == "swapcase") return value(py_swapcase(s), mk);
  if (name == "replace") {
    arg_reader r(args, fn, {"old", "new", "count"});
    if (!r.get(0) || !r.get(1)) fail(fn + "() takes at least 2 arguments");
    std::string old_s = need_str(*r.get(0), "replace() argument 1");
    std::string new_s = need_str(*r.get(1), "replace() argument 2");
    if (mk) {
      if (!r.get(0)->is_markup()) old_s = html_escape(old_s);
      if (!r.get(1)->is_markup()) new_s = html_escape(new_s);
    }
    std::string out = py_replace(s, old_s, new_s, opt_int(r.get(2), -1, "count"));
    ev.check_string(out.size());
    return value(std::move(out), mk);
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    arg_reader r(args, fn, {"sub", "start", "end"});
    if (!r.get(0)) fail(fn + "() takes at least 1 argument (0 given)");
    const std::string& sub = need_str(*r.get(0), "must be str");
    auto [a, b] = sub_range(s, r.get(1), r.get(2));
    std::string_view view = std::string_view(s).substr(a, b - a);
    if (name == "count") return value(py_count(view, sub));
    int64_t k = py_find(view, sub, name[0] == 'r');
    if (k < 0 && (name == "index" || name == "rindex")) fail("substring not found");
    if (k >= 0) k += static_cast<int64_t>(code_point_count(std::string_view(s).substr(0, a)));
    return value(k);
  }
  if (name == "format") {
    std::string out = str_format(s, args);
    ev.check_string(out.size());
    return value(std::move(out), mk);
  }
  if (name == "join") {
    arg_reader r(args, fn, {"iterable"});
    if (!r.get(0)) fail("str.join() takes exactly one argument (0 given)");
    std::string out;
    size_t i = 0;
    for (const auto& item : iterate(*r.get(0))) {
      if (!item.is_string()) {
        fail("sequence item " + std::to_string(i) + ": expected str instance, " + type_name(item) + " found");
      }
      if (i++) out += s;
      out += item.str();
      ev.check_string(out.size());
    }
    return value(std::move(out));
  }
  if (name == "isalpha" || name == "isdigit" || name == "isalnum" || name == "isspace" || name == "isdecimal" ||
      name == "isnumeric" || name == "isascii") {
    arg_reader r(args, fn, {});
    if (name == "isascii") return value(is_ascii(s));
    if (s.empty()) return value(false);
    for (size_t i = 0; i < s.size();) {
      char32_t c = utf8_next(s, i);
      bool ok = name == "isalpha" ? is_alpha_cp(c)
                : name == "isspace" ? is_py_space(c)
                : name == "isalnum" ? (is_alpha_cp(c) || is_digit_cp(c))
                                    : is_digit_cp(c);
      if (!ok) return value(false);
    }
    return value(true);
  }
  if (name == "islower") return value(py_islower(s));
  if (name == "isupper") return value(py_isupper(s));
  if (name == "center" || name == "ljust" || name == "rjust") {
    arg_reader r(args, fn, {"width", "fillchar"});
    if (!r.get(0)) fail(fn + "() takes at least 1 argument (0 given)");
    char32_t fill = ' ';
    if (r.get(1)) {
      const std::string& f = need_str(*r.get(1), "fill character");
      if (code_point_count(f) != 1) fail("The fill character must be exactly one character long");
      size_t i = 0;
      fill = utf8_next(f, i);
    }
    const int64_t width = need_int(*r.get(0), fn.c_str());
    if (name == "center") {
      // Python's str.center puts the odd extra character on the left when the width is odd.
      const auto len = static_cast<int64_t>(code_point_count(s));
      const int64_t marg = width - len;
      if (marg <= 0) return value(s, mk);
      int64_t left = marg / 2 + (marg & width & 1);
      std::string f;
      utf8_append(f, fill);
      std::string out;
      for (int64_t i = 0; i < left; ++i) out += f;
      out += s;
      for (int64_t i = 0; i < marg - left; ++i) out += f;
      return value(std::move(out), mk);
    }
    return value(pad(s, width, fill, name == "ljust" ? '<' : '>'), mk);
  }
  if (name == "zfill") {
    arg_reader r(args, fn, {"width"});
    if (!r.get(0)) fail("str.zfill() takes exactly one argument (0 given)");
    const int64_t width = need_int(*r.get(0), "zfill");
    const auto len = static_cast<int64_t>(code_point_count(s));
    if (width <= len) return value(s, mk);
    if (width > (int64_t(1) << 24)) fail("padding width too large");
    std::string out;
    size_t start = 0;
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
      out += s[0];
      start = 1;
    }
    out.append(static_cast<size_t>(width - len), '0');
    out += s.substr(start);
    return value(std::move(out), mk);
  }
  if (name == "partition" || name == "rpartition") {
    arg_reader r(args, fn, {"sep"});
    if (!r.get(0)) fail(fn + "() takes exactly one argument (0 given)");
    const std::string& sep = need_str(*r.get(0), "must be str");
    if (sep.empty()) fail("empty separator");
    size_t k = name == "partition" ? s.find(sep) : s.rfind(sep);
    std::vector<value> parts;
    if (k == std::string::npos) {
      if (name == "partition") parts = {value(s, mk), value("", mk), value("", mk)};
      else parts = {value("", mk), value("", mk), value(s, mk)};
    } else {
      parts = {value(s.substr(0, k), mk), value(sep, mk), value(s.substr(k + sep.size()), mk)};
    }
    return value::list(std::move(parts), true);
  }
  if (name == "removeprefix" || name == "removesuffix") {
    arg_reader r(args, fn, {"affix"});
    if (!r.get(0)) fail(fn + "() takes exactly one argument (0 given)");
    const std::string& a = need_str(*r.get(0), fn.c_str());
    if (name == "removeprefix" && s.compare(0, a.size(), a) == 0) return value(s.substr(a.size()), mk);
    if (name == "removesuffix" && !a.empty() && s.size() >= a.size() && s.compare(s.size() - a.size(), a.size(), a) == 0)
      return value(s.substr(0, s.size() - a.size()), mk);
    return value(s, mk);
  }
  fail("unsupported method '" + std::string(name) + "' of str");
}

value dict_method(const value& self, std::string_view name, call_args& args) {
  const dict_data& d = self.dict_ref();
  auto fn = std::string("dict.") + std::string(name);
  if (name == "get") {
    arg_reader r(args, fn, {"key", "default"});
    if (!r.get(0)) fail("get expected at least 1 argument, got 0");
    if (const value* v = d.find(*r.get(0))) return *v;
    return r.get(1) ? *r.get(1) : value::none();
  }
  arg_reader r(args, fn, {});
  if (name == "items") {
    std::vector<value> items;
    items.reserve(d.items.size());
    for (const auto& [k, v] : d.items) items.push_back(value::list({k, v}, true));
    return value::iterable(std::move(items), iter_kind::dict_items);
  }
  if (name == "keys" || name == "values") {
    std::vector<value> items;
    items.reserve(d.items.size());
    for (const auto& [k, v] : d.items) items.push_back(name == "keys" ? k : v);
    return value::iterable(std::move(items), name == "keys" ? iter_kind::dict_keys : iter_kind::dict_values);
  }
  if (name == "copy") return value::dict(std::make_shared<dict_data>(d));
  fail("unsupported method '" + std::string(name) + "' of dict");
}

value list_method(const value& self, std::string_view name, call_args& args) {
  const auto& items = self.items();
  auto fn = type_name(self) + "." + std::string(name);
  if (name == "count") {
    arg_reader r(args, fn, {"value"});
    if (!r.get(0)) fail(fn + "() takes exactly one argument (0 given)");
    int64_t n = 0;
    for (const auto& e : items)
      if (equals(e, *r.get(0))) ++n;
    return value(n);
  }
  if (name == "index") {
    arg_reader r(args, fn, {"value"});
    if (!r.get(0)) fail(fn + "() takes at least 1 argument (0 given)");
    for (size_t i = 0; i < items.size(); ++i)
      if (equals(items[i], *r.get(0))) return value(static_cast<int64_t>(i));
    fail(to_repr(*r.get(0)) + " is not in list");
  }
  if (name == "copy") {
    arg_reader r(args, fn, {});
    return value::list(items);
  }
  if (name == "pop" && self.is_list() && !self.is_tuple()) {
    arg_reader r(args, fn, {"index"});
    auto& mut = self.mutable_items();
    if (mut.empty()) fail("pop from empty list");
    int64_t i = opt_int(r.get(0), -1, "pop");
    if (i < 0) i += static_cast<int64_t>(mut.size());
    if (i < 0 || i >= static_cast<int64_t>(mut.size())) fail("pop index out of range");
    value v = std::move(mut[static_cast<size_t>(i)]);
    mut.erase(mut.begin() + i);
    return v;
  }
  if (name == "clear" && self.is_list() && !self.is_tuple()) {
    arg_reader r(args, fn, {});
    std::vector<value> old;
    old.swap(self.mutable_items());
    release(old);
    return value::none();
  }
  fail("unsupported method '" + std::string(name) + "' of " + type_name(self));
}

}  // namespace

attr_kind method_kind(const value& obj, std::string_view name) {
  if (!name.empty() && name[0] == '_') return attr_kind::none;
  switch (obj.type()) {
    case kind::string:
      return one_of(name, {"capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find",
                           "format", "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit",
                           "isidentifier", "islower", "isnumeric", "isprintable", "isspace", "istitle", "isupper",
                           "join", "ljust", "lower", "lstrip", "maketrans", "partition", "removeprefix",
                           "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip",
                           "split", "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper",
                           "zfill"})
                 ? attr_kind::method
                 : attr_kind::none;
    case kind::dict:
      if (one_of(name, {"clear", "pop", "popitem", "setdefault", "update"})) return attr_kind::unsafe;
      return one_of(name, {"copy", "fromkeys", "get", "items", "keys", "values"}) ? attr_kind::method : attr_kind::none;
    case kind::list:
      if (obj.is_tuple()) return one_of(name, {"count", "index"}) ? attr_kind::method : attr_kind::none;
      if (one_of(name, {"append", "extend", "insert", "remove", "reverse", "sort"})) return attr_kind::unsafe;
      return one_of(name, {"clear", "copy", "count", "index", "pop"}) ? attr_kind::method : attr_kind::none;
    case kind::loop: return one_of(name, {"cycle", "changed"}) ? attr_kind::method : attr_kind::none;
    case kind::iterable:
      return obj.iterable_kind() == iter_kind::range && one_of(name, {"count", "index"}) ? attr_kind::method
                                                                                        : attr_kind::none;
    default: return attr_kind::none;
  }
}

value call_method(evaluator& ev, const value& self, std::string_view name, call_args& args) {
  switch (self.type()) {
    case kind::string: return str_method(ev, self, name, args);
    case kind::dict: return dict_method(self, name, args);
    case kind::list:
    case kind::iterable: return list_method(self, name, args);
    case kind::loop: {
      if (!args.kw.empty()) fail("loop." + std::string(name) + "() takes no keyword arguments");
      loop_data& l = self.loop_ref();
      if (name == "cycle") {
        if (args.pos.empty()) fail("no items for cycling given");
        return args.pos[l.index0 % args.pos.size()];
      }
      bool same = l.changed_seen && l.last_changed.size() == args.pos.size();
      for (size_t i = 0; same && i < args.pos.size(); ++i) same = equals(l.last_changed[i], args.pos[i]);
      if (same) return value(false);
      l.last_changed = args.pos;
      l.changed_seen = true;
      return value(true);
    }
    default: fail("'" + type_name(self) + "' object has no method '" + std::string(name) + "'");
  }
}

bool is_global_function(std::string_view name) {
  return one_of(name, {"range", "dict", "namespace", "raise_exception", "strftime_now", "joiner", "cycler", "lipsum"});
}

value call_global(evaluator& ev, const callable_data& f, call_args& args) {
  const std::string& name = f.name;
  if (name == "range") {
    if (!args.kw.empty()) fail("range() takes no keyword arguments");
    if (args.pos.empty() || args.pos.size() > 3) fail("range expected 1 to 3 arguments, got " + std::to_string(args.pos.size()));
    int64_t start = 0, stop, step = 1;
    if (args.pos.size() == 1) {
      stop = need_int(args.pos[0], "range");
    } else {
      start = need_int(args.pos[0], "range");
      stop = need_int(args.pos[1], "range");
      if (args.pos.size() == 3) step = need_int(args.pos[2], "range");
    }
    if (step == 0) fail("range() arg 3 must not be zero");
    // Count in long double: the operands are 64-bit, the count only needs comparing to the cap.
    long double n = 0;
    if (step > 0 && stop > start) n = std::ceil((static_cast<long double>(stop) - start) / step);
    if (step < 0 && stop < start) n = std::ceil((static_cast<long double>(start) - stop) / -static_cast<long double>(step));
    if (n > 100000) fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    std::vector<value> items;
    items.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < static_cast<int64_t>(n); ++i) items.emplace_back(start + i * step);
    return value::range(start, stop, step, std::move(items));
  }
  if (name == "dict" || name == "namespace") {
    if (args.pos.size() > 1) fail(name + " expected at most 1 argument, got " + std::to_string(args.pos.size()));
    auto d = std::make_shared<dict_data>();
    if (!args.pos.empty()) {
      const value& src = args.pos[0];
      if (src.is_dict()) {
        *d = src.dict_ref();
      } else {
        for (const auto& pair : iterate(src)) {
          std::vector<value> kv = iterate(pair);
          if (kv.size() != 2) fail("dictionary update sequence element has length " + std::to_string(kv.size()) + "; 2 is required");
          d->set(kv[0], kv[1]);
        }
      }
    }
    for (const auto& [k, v] : args.kw) d->set(value(k), v);
    if (name == "dict") return value::dict(std::move(d));
    // Not make_shared: the evaluator's weak reference would keep the whole object allocated.
    std::shared_ptr<ns_data> ns(new ns_data);
    for (const auto& [k, v] : d->items) {
      if (!k.is_string()) fail("keywords must be strings");
      ns->set(k.str(), v);
    }
    ev.track(ns);
    return value::ns(std::move(ns));
  }
  if (name == "raise_exception") {
    arg_reader r(args, name, {"message"});
    fail(r.get(0) ? to_str(*r.get(0)) : std::string("raise_exception() called"));
  }
  if (name == "strftime_now") {
    arg_reader r(args, name, {"format"});
    if (!r.get(0)) fail("strftime_now() missing 1 required positional argument: 'format'");
    const std::string& fmt = need_str(*r.get(0), "strftime() argument 1");
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    std::string out(256 + fmt.size() * 8, '\0');
    size_t n = fmt.empty() ? 0 : std::strftime(out.data(), out.size(), fmt.c_str(), &tm);
    out.resize(n);
    return value(std::move(out));
  }
  if (name == "joiner") {
    arg_reader r(args, name, {"sep"});
    auto j = std::make_shared<callable_data>();
    j->kind = callable_data::type::builtin;
    j->name = "<joiner>";
    j->self = r.get(0) ? *r.get(0) : value(", ");
    return value::callable(std::move(j));
  }
  if (name == "<joiner>") {
    arg_reader r(args, "joiner", {});
    if (!f.used) {
      f.used = true;
      return value("");
    }
    return f.self;
  }
  fail("unsupported function '" + name + "'");
}

value markup_escape(const value& v) {
  if (v.is_markup()) return v;
  return value(html_escape(to_str(v)), true);
}

// ---- Python's format specification mini-language, for str.format and '%'

namespace {

struct spec {
  char32_t fill = ' ';
  char align = 0;  // < > ^ =
  char sign = '-';
  bool alt = false;
  bool zero = false;
  int64_t width = -1;
  char grouping = 0;
  int64_t precision = -1;
  char type = 0;
};

spec parse_spec(std::string_view s) {
  spec sp;
  size_t i = 0;
  auto is_align = [](char c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  // [[fill]align]
  size_t j = 0;
  char32_t first = s.empty() ? 0 : utf8_next(s, j);
  if (j < s.size() && is_align(s[j])) {
    sp.fill = first;
    sp.align = s[j];
    i = j + 1;
  } else if (!s.empty() && is_align(s[0])) {
    sp.align = s[0];
    i = 1;
  }
  if (i < s.size() && (s[i] == '+' || s[i] == '-' || s[i] == ' ')) sp.sign = s[i++];
  if (i < s.size() && s[i] == '#') {
    sp.alt = true;
    ++i;
  }
  if (i < s.size() && s[i] == '0') {
    sp.zero = true;
    ++i;
  }
  auto number = [&]() {
    int64_t n = 0;
    size_t start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      n = n * 10 + (s[i] - '0');
      if (n > (int64_t(1) << 24)) fail("format width too large");
      ++i;
    }
    return i == start ? int64_t(-1) : n;
  };
  sp.width = number();
  if (i < s.size() && (s[i] == ',' || s[i] == '_')) sp.grouping = s[i++];
  if (i < s.size() && s[i] == '.') {
    ++i;
    sp.precision = number();
    if (sp.precision < 0) fail("Format specifier missing precision");
  }
  if (i < s.size()) sp.type = s[i++];
  if (i != s.size()) fail("Invalid format specifier '" + std::string(s) + "'");
  return sp;
}

std::string group_digits(const std::string& digits, char sep) {
  std::string out;
  const size_t n = digits.size();
  for (size_t i = 0; i < n; ++i) {
    if (i && (n - i) % 3 == 0) out += sep;
    out += digits[i];
  }
  return out;
}

std::string finish_number(std::string sign, std::string body, const spec& sp) {
  char align = sp.align ? sp.align : '>';
  char32_t fill = sp.fill;
  if (sp.zero && !sp.align) {
    align = '=';
    fill = '0';
  }
  const auto len = static_cast<int64_t>(sign.size() + code_point_count(body));
  if (sp.width <= len) return sign + body;
  if (align == '=') {
    std::string f;
    utf8_append(f, fill);
    std::string out = sign;
    for (int64_t k = 0; k < sp.width - len; ++k) out += f;
    return out + body;
  }
  return pad(sign + body, sp.width, fill, align);
}

std::string format_float(double d, const spec& sp) {
  std::string sign = std::signbit(d) && !std::isnan(d) ? "-" : (sp.sign == '+' ? "+" : (sp.sign == ' ' ? " " : ""));
  double a = std::fabs(d);
  std::string body;
  char t = sp.type;
  if (std::isinf(a) || std::isnan(a)) {
    body = std::isnan(a) ? "nan" : "inf";
    if (t == 'F' || t == 'E' || t == 'G') body = std::isnan(a) ? "NAN" : "INF";
    if (t == '%') body += '%';
  } else if (t == 0 && sp.precision < 0) {
    body = float_repr(a);
  } else {
    int prec = sp.precision < 0 ? 6 : static_cast<int>(std::min<int64_t>(sp.precision, 200));
    char buf[512];
    if (t == '%') {
      std::snprintf(buf, sizeof buf, "%.*f", prec, a * 100);
      body = std::string(buf) + "%";
    } else if (t == 'f' || t == 'F') {
      if (a >= 1e300) fail("float too large to format");
      std::snprintf(buf, sizeof buf, "%.*f", prec, a);
      body = buf;
    } else if (t == 'e' || t == 'E') {
      std::snprintf(buf, sizeof buf, t == 'e' ? "%.*e" : "%.*E", prec, a);
      body = buf;
    } else if (t == 'g' || t == 'G' || t == 0) {
      if (prec == 0) prec = 1;
      std::snprintf(buf, sizeof buf, t == 'G' ? "%.*G" : "%.*g", prec, a);
      body = buf;
      if (t == 0 && body.find_first_of(".e") == std::string::npos) body += ".0";
      if (sp.alt && body.find('.') == std::string::npos) body += '.';
    } else {
      fail(std::string("Unknown format code '") + t + "' for object of type 'float'");
    }
  }
  if (sp.grouping && body.size()) {
    size_t end = body.find_first_not_of("0123456789");
    if (end == std::string::npos) end = body.size();
    body = group_digits(body.substr(0, end), sp.grouping) + body.substr(end);
  }
  return finish_number(sign, body, sp);
}

std::string format_int(int64_t v, const spec& sp) {
  char t = sp.type ? sp.type : 'd';
  if (t == 'e' || t == 'E' || t == 'f' || t == 'F' || t == 'g' || t == 'G' || t == '%')
    return format_float(static_cast<double>(v), sp);
  if (t == 'c') {
    std::string s;
    utf8_append(s, static_cast<char32_t>(v));
    return pad(s, sp.width, sp.fill, sp.align ? sp.align : '<');
  }
  const bool neg = v < 0;
  uint64_t a = neg ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  int base = t == 'x' || t == 'X' ? 16 : (t == 'o' ? 8 : (t == 'b' ? 2 : 10));
  if (t != 'd' && t != 'n' && base == 10) fail(std::string("Unknown format code '") + t + "' for object of type 'int'");
  std::string digits;
  do {
    int d = static_cast<int>(a % static_cast<unsigned>(base));
    digits.insert(digits.begin(), static_cast<char>(d < 10 ? '0' + d : (t == 'X' ? 'A' : 'a') + d - 10));
    a /= static_cast<unsigned>(base);
  } while (a);
  if (sp.grouping) digits = group_digits(digits, sp.grouping);
  std::string prefix;
  if (sp.alt && base != 10) prefix = std::string("0") + (t == 'X' ? 'X' : t);
  std::string sign = neg ? "-" : (sp.sign == '+' ? "+" : (sp.sign == ' ' ? " " : ""));
  return finish_number(sign + prefix, digits, sp);
}

// format(v, spec) for one replacement field.
std::string format_value(const value& v, std::string_view spec_text) {
  if (spec_text.empty()) return to_str(v);
  spec sp = parse_spec(spec_text);
  if (v.is_int() || v.is_bool()) return format_int(v.get_int(), sp);
  if (v.is_float()) return format_float(v.as_double(), sp);
  if (v.is_string()) {
    if (sp.type && sp.type != 's') fail(std::string("Unknown format code '") + sp.type + "' for object of type 'str'");
    if (sp.sign != '-') fail("Sign not allowed in string format specifier");
    std::string s = v.str();
    if (sp.precision >= 0) s = s.substr(0, byte_offset(s, static_cast<size_t>(sp.precision)));
    return pad(s, sp.width, sp.fill, sp.align ? sp.align : '<');
  }
  fail("unsupported format string passed to " + type_name(v) + ".__format__");
}

}  // namespace

std::string str_format(const std::string& fmt, const call_args& args) {
  std::string out;
  size_t auto_index = 0;
  int numbering = 0;  // 0 unknown, 1 automatic, 2 manual
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      fail("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    // A replacement field: {name[.attr|[key]]...[!conv][:spec]}; nested fields are not supported.
    size_t depth = 1, j = i + 1;
    for (; j < fmt.size() && depth; ++j) {
      if (fmt[j] == '{') ++depth;
      else if (fmt[j] == '}') --depth;
    }
    if (depth) fail("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, j - i - 2);
    i = j - 1;
    std::string spec_text, conv;
    size_t colon = field.find(':');
    if (colon != std::string::npos) {
      spec_text = field.substr(colon + 1);
      field.resize(colon);
    }
    if (spec_text.find('{') != std::string::npos) fail("unsupported: nested replacement fields in str.format");
    size_t bang = field.find('!');
    if (bang != std::string::npos) {
      conv = field.substr(bang + 1);
      field.resize(bang);
    }
    size_t name_end = field.find_first_of(".[");
    std::string head = field.substr(0, name_end);
    value v;
    if (head.empty()) {
      if (numbering == 2) fail("cannot switch from manual field specification to automatic field numbering");
      numbering = 1;
      if (auto_index >= args.pos.size()) fail("Replacement index " + std::to_string(auto_index) + " out of range for positional args tuple");
      v = args.pos[auto_index++];
    } else if (head.find_first_not_of("0123456789") == std::string::npos) {
      if (numbering == 1) fail("cannot switch from automatic field numbering to manual field specification");
      numbering = 2;
      size_t k = head.size() > 9 ? SIZE_MAX : std::stoul(head);
      if (k >= args.pos.size()) fail("Replacement index " + head + " out of range for positional args tuple");
      v = args.pos[k];
    } else {
      bool found = false;
      for (const auto& [k, val] : args.kw) {
        if (k == head) {
          v = val;
          found = true;
        }
      }
      if (!found) fail("KeyError: '" + head + "'");
    }
    // .attr and [key] lookups
    size_t p = name_end == std::string::npos ? field.size() : name_end;
    while (p < field.size()) {
      if (field[p] == '.') {
        size_t e = field.find_first_of(".[", p + 1);
        if (e == std::string::npos) e = field.size();
        std::string attr = field.substr(p + 1, e - p - 1);
        const value* found = v.is_dict() ? v.dict_ref().find(attr) : (v.is_ns() ? v.ns_ref().find(attr) : nullptr);
        if (!found) fail("'" + type_name(v) + "' object has no attribute '" + attr + "'");
        v = *found;
        p = e;
      } else if (field[p] == '[') {
        size_t e = field.find(']', p);
        if (e == std::string::npos) fail("Missing ']' in format string");
        std::string key = field.substr(p + 1, e - p - 1);
        if (v.is_list() && !key.empty() && key.find_first_not_of("0123456789") == std::string::npos && key.size() < 10) {
          size_t k = std::stoul(key);
          if (k >= v.items().size()) fail("list index out of range");
          v = v.items()[k];
        } else if (v.is_dict()) {
          const value* found = v.dict_ref().find(key);
          if (!found) fail("KeyError: '" + key + "'");
          v = *found;
        } else {
          fail("'" + type_name(v) + "' object is not subscriptable");
        }
        p = e + 1;
      } else {
        fail("Only '.' or '[' may follow ']' in format field specifier");
      }
    }
    if (conv == "r" || conv == "a") v = value(to_repr(v));
    else if (conv == "s") v = value(to_str(v));
    else if (!conv.empty()) fail("Unknown conversion specifier " + conv);
    if (v.is_undefined() && !spec_text.empty()) fail("unsupported format string passed to Undefined.__format__");
    out += format_value(v, spec_text);
    if (out.size() > max_string_bytes) fail_too_long();
  }
  return out;
}

std::string percent_format(const value& fmt_value, const value& args) {
  const std::string& fmt = fmt_value.str();
  const bool markup = fmt_value.is_markup();
  std::vector<value> pos;
  const value* mapping = nullptr;
  // Python treats any non-tuple argument with __getitem__ (dict, list, range, Undefined) as a
  // mapping: it never complains that arguments were left unconverted.
  const bool mapping_like = args.is_dict() || (args.is_list() && !args.is_tuple()) || args.is_undefined() ||
                            (args.is_iterable_object() && args.iterable_kind() == iter_kind::range);
  if (args.is_tuple()) pos = args.items();
  else pos.push_back(args);
  if (args.is_dict()) mapping = &args;
  size_t next_arg = 0;
  std::string out;
  auto escape_if = [&](std::string s) { return markup ? html_escape(s) : s; };
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    ++i;
    if (i >= fmt.size()) fail("incomplete format");
    const value* arg = nullptr;
    if (fmt[i] == '(') {
      size_t e = fmt.find(')', i);
      if (e == std::string::npos) fail("incomplete format key");
      if (!mapping) fail(mapping_like ? "format requires a mapping with string keys" : "format requires a mapping");
      std::string key = fmt.substr(i + 1, e - i - 1);
      arg = mapping->dict_ref().find(key);
      if (!arg) fail("KeyError: '" + key + "'");
      i = e + 1;
    }
    spec sp;
    sp.align = '>';
    for (; i < fmt.size(); ++i) {
      char f = fmt[i];
      if (f == '-') sp.align = '<';
      else if (f == '+') sp.sign = '+';
      else if (f == ' ') { if (sp.sign != '+') sp.sign = ' '; }
      else if (f == '#') sp.alt = true;
      else if (f == '0') sp.zero = true;
      else break;
    }
    auto number = [&]() {
      if (i < fmt.size() && fmt[i] == '*') fail("unsupported: '*' width in % formatting");
      int64_t n = -1;
      while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') {
        n = (n < 0 ? 0 : n) * 10 + (fmt[i] - '0');
        if (n > (int64_t(1) << 24)) fail("format width too large");
        ++i;
      }
      return n;
    };
    sp.width = number();
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      sp.precision = number();
      if (sp.precision < 0) sp.precision = 0;
    }
    while (i < fmt.size() && (fmt[i] == 'h' || fmt[i] == 'l' || fmt[i] == 'L')) ++i;
    if (i >= fmt.size()) fail("incomplete format");
    if (out.size() > max_string_bytes) fail_too_long();
    const char t = fmt[i];
    if (t == '%') {
      out += '%';
      continue;
    }
    if (!arg) {
      if (next_arg >= pos.size()) fail("not enough arguments for format string");
      arg = &pos[next_arg++];
    }
    if (sp.zero && sp.align == '<') sp.zero = false;
    switch (t) {
      case 's':
      case 'r':
      case 'a': {
        std::string s = t == 's' ? to_str(*arg) : to_repr(*arg);
        if (sp.precision >= 0) s = s.substr(0, byte_offset(s, static_cast<size_t>(sp.precision)));
        out += escape_if(pad(s, sp.width, ' ', sp.align));
        break;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        int64_t n;
        if (arg->is_int() || arg->is_bool()) n = arg->get_int();
        else if (arg->is_float()) {
          if (!std::isfinite(arg->as_double()) || std::fabs(arg->as_double()) > 9e18) fail("cannot convert float to integer");
          n = static_cast<int64_t>(arg->as_double());
        } else fail(std::string("%") + t + " format: a real number is required, not " + type_name(*arg));
        spec s2 = sp;
        s2.type = (t == 'i' || t == 'u') ? 'd' : t;
        if (!sp.zero) s2.fill = ' ';
        s2.align = sp.zero ? 0 : sp.align;
        std::string body = format_int(n, s2);
        if (sp.precision > 0) {
          // precision on integers pads the digits with zeros
          std::string digits = std::to_string(n < 0 ? -n : n);
          while (static_cast<int64_t>(digits.size()) < sp.precision) digits.insert(digits.begin(), '0');
          spec s3 = s2;
          s3.precision = -1;
          body = finish_number(n < 0 ? "-" : (sp.sign == '+' ? "+" : ""), digits, s3);
        }
        out += body;
        break;
      }
      case 'e':
      case 'E':
      case 'f':
      case 'F':
      case 'g':
      case 'G': {
        if (!arg->is_number()) fail(std::string("must be real number, not ") + type_name(*arg));
        spec s2 = sp;
        s2.type = t;
        if (s2.precision < 0) s2.precision = 6;
        s2.align = sp.zero ? 0 : sp.align;
        out += format_float(arg->as_double(), s2);
        break;
      }
      case 'c': {
        std::string s;
        if (arg->is_int()) utf8_append(s, static_cast<char32_t>(arg->get_int()));
        else if (arg->is_string() && code_point_count(arg->str()) == 1) s = arg->str();
        else fail("%c requires int or char");
        out += escape_if(pad(s, sp.width, ' ', sp.align));
        break;
      }
      default: fail(std::string("unsupported format character '") + t + "'");
    }
  }
  if (!mapping_like && next_arg < pos.size()) fail("not all arguments converted during string formatting");
  return out;
}

}  // namespace troupe::jinja
