#include "runtime/text/jinja_eval.hpp"

#include <cmath>
#include <limits>

#include "runtime/text/jinja_parser.hpp"
#include "runtime/text/jinja_string.hpp"

namespace troupe::jinja {

// ---- arguments and scopes

arg_reader::arg_reader(const call_args& args, std::string_view fn, std::initializer_list<std::string_view> params)
    : bound_(params.size(), nullptr) {
  if (args.pos.size() > params.size()) {
    fail(std::string(fn) + "() takes at most " + std::to_string(params.size()) + " argument(s) (" +
         std::to_string(args.pos.size()) + " given)");
  }
  for (size_t i = 0; i < args.pos.size(); ++i) bound_[i] = &args.pos[i];
  for (const auto& [k, v] : args.kw) {
    size_t i = 0;
    for (auto p : params) {
      if (p == k) break;
      ++i;
    }
    if (i == params.size()) fail(std::string(fn) + "() got an unexpected keyword argument '" + k + "'");
    if (bound_[i]) fail(std::string(fn) + "() got multiple values for argument '" + k + "'");
    bound_[i] = &v;
  }
}

const value* scope::find(int id) const {
  for (const auto& [k, v] : vars)
    if (k == id) return &v;
  return nullptr;
}

void scope::set(int id, value v) {
  for (auto& [k, old] : vars) {
    if (k == id) {
      old = std::move(v);
      return;
    }
  }
  vars.emplace_back(id, std::move(v));
}

// ---- helpers on values

std::vector<value> iterate(const value& v) {
  switch (v.type()) {
    case kind::list: return v.items();
    case kind::iterable: {
      list_data& data = v.iterable_ref();
      const bool once = v.iterable_kind() == iter_kind::generator || v.iterable_kind() == iter_kind::reverse_iterator;
      if (!once) return data.items;
      if (data.consumed) return {};
      data.consumed = true;
      if (!data.error.empty()) fail(data.error);
      return data.items;
    }
    case kind::dict: {
      std::vector<value> keys;
      keys.reserve(v.dict_ref().items.size());
      for (const auto& kv : v.dict_ref().items) keys.push_back(kv.first);
      return keys;
    }
    case kind::string: {
      std::vector<value> chars;
      const std::string& s = v.str();
      for (size_t i = 0; i < s.size();) {
        size_t j = i;
        utf8_next(s, j);
        chars.emplace_back(s.substr(i, j - i), v.is_markup());
        i = j;
      }
      return chars;
    }
    case kind::undefined: return {};
    default: fail("'" + type_name(v) + "' object is not iterable");
  }
}

bool contains(const value& container, const value& item) {
  switch (container.type()) {
    case kind::string:
      if (!item.is_string()) fail("'in <string>' requires string as left operand, not " + type_name(item));
      return container.str().find(item.str()) != std::string::npos;
    case kind::list:
      for (const auto& e : container.items())
        if (equals(e, item)) return true;
      return false;
    case kind::dict: return container.dict_ref().find(item) != nullptr;
    case kind::iterable:
      for (const auto& e : iterate(container))
        if (equals(e, item)) return true;
      return false;
    case kind::undefined: return false;
    default: fail("argument of type '" + type_name(container) + "' is not iterable");
  }
}

namespace {

int64_t slice_index(const value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.get_int();
  fail(std::string("slice ") + what + " must be an integer or None, not " + type_name(v));
}

// Python's slice.indices(): clamps start/stop for a sequence of length n.
void slice_bounds(int64_t n, const value& start, const value& stop, int64_t step, int64_t& lo, int64_t& hi) {
  auto adjust = [&](const value& v, int64_t dflt, int64_t lower, int64_t upper) {
    if (v.is_none()) return dflt;
    int64_t i = slice_index(v, "indices");
    if (i < 0) {
      i += n;
      if (i < lower) i = lower;
    } else if (i > upper) {
      i = upper;
    }
    return i;
  };
  if (step > 0) {
    lo = adjust(start, 0, 0, n);
    hi = adjust(stop, n, 0, n);
  } else {
    lo = adjust(start, n - 1, -1, n - 1);
    hi = adjust(stop, -1, -1, n - 1);
  }
}

}  // namespace

value slice(evaluator& ev, const value& container, const value& start, const value& stop, const value& step_v) {
  if (container.is_undefined()) ev.undefined_error(container);
  // Slices bypass jinja2's getitem: Python's own subscription raises for what cannot be sliced.
  const bool is_range = container.is_iterable_object() && container.iterable_kind() == iter_kind::range;
  if (container.is_dict()) fail("unhashable type: 'slice'");
  if (!container.is_string() && !container.is_list() && !is_range)
    fail("'" + type_name(container) + "' object is not subscriptable");
  int64_t step = 1;
  if (!step_v.is_none()) step = slice_index(step_v, "indices");
  if (step == 0) fail("slice step cannot be zero");
  if (is_range) {
    const list_data& r = container.iterable_ref();
    const auto& items = r.items;
    int64_t lo, hi;
    slice_bounds(static_cast<int64_t>(items.size()), start, stop, step, lo, hi);
    std::vector<value> out;
    if (step > 0) {
      for (int64_t i = lo; i < hi; i += step) out.push_back(items[static_cast<size_t>(i)]);
    } else {
      for (int64_t i = lo; i > hi; i += step) out.push_back(items[static_cast<size_t>(i)]);
    }
    return value::range(r.start + lo * r.step, r.start + hi * r.step, r.step * step, std::move(out));
  }
  if (container.is_string() && is_ascii(container.str())) {
    const std::string& s = container.str();
    int64_t lo, hi;
    slice_bounds(static_cast<int64_t>(s.size()), start, stop, step, lo, hi);
    std::string out;
    if (step > 0) {
      for (int64_t i = lo; i < hi; i += step) out += s[static_cast<size_t>(i)];
    } else {
      for (int64_t i = lo; i > hi; i += step) out += s[static_cast<size_t>(i)];
    }
    return value(std::move(out), container.is_markup());
  }
  if (container.is_string()) {
    std::u32string u = utf8_decode(container.str());
    int64_t lo, hi;
    slice_bounds(static_cast<int64_t>(u.size()), start, stop, step, lo, hi);
    std::u32string out;
    if (step > 0) {
      for (int64_t i = lo; i < hi; i += step) out += u[static_cast<size_t>(i)];
    } else {
      for (int64_t i = lo; i > hi; i += step) out += u[static_cast<size_t>(i)];
    }
    return value(utf8_encode(out), container.is_markup());
  }
  const auto& items = container.items();
  int64_t lo, hi;
  slice_bounds(static_cast<int64_t>(items.size()), start, stop, step, lo, hi);
  std::vector<value> out;
  if (step > 0) {
    for (int64_t i = lo; i < hi; i += step) out.push_back(items[static_cast<size_t>(i)]);
  } else {
    for (int64_t i = lo; i > hi; i += step) out.push_back(items[static_cast<size_t>(i)]);
  }
  return value::list(std::move(out), container.is_tuple());
}

namespace {

[[noreturn]] void unsupported_operands(const char* op, const value& a, const value& b) {
  fail(std::string("unsupported operand type(s) for ") + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
}

bool is_intlike(const value& v) { return v.is_int() || v.is_bool(); }

[[noreturn]] void int_overflow() { fail("integer overflow (troupe's templates use 64-bit integers)"); }

value checked_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) int_overflow();
  return value(r);
}
value checked_sub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) int_overflow();
  return value(r);
}
value checked_mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) int_overflow();
  return value(r);
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

double py_fmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0.0 && ((m < 0) != (b < 0))) m += b;
  if (m == 0.0) m = std::copysign(0.0, b);
  return m;
}

}  // namespace

std::string callable_repr(const value& v) {
  const callable_data& c = v.callable_ref();
  constexpr const char* address = " at 0x7f0000000000>";  // Python prints the object's address
  switch (c.kind) {
    case callable_data::type::macro:
      if (c.macro->kind == stmt_kind::call_block) return "<Macro anonymous>";  // a call block's caller
      return "<Macro '" + c.name + "'>";
    case callable_data::type::method:
      if (c.self.is_loop()) return "<bound method LoopContext." + c.name + " of " + to_str(c.self) + ">";
      return "<built-in method " + c.name + " of " + type_name(c.self) + " object" + address;
    case callable_data::type::builtin:
      if (c.name == "range" || c.name == "dict") return "<class '" + c.name + "'>";
      if (c.name == "namespace") return "<class 'jinja2.utils.Namespace'>";
      if (c.name == "joiner") return "<class 'jinja2.utils.Joiner'>";
      if (c.name == "cycler") return "<class 'jinja2.utils.Cycler'>";
      if (c.name == "<joiner>") return std::string("<jinja2.utils.Joiner object") + address;
      return "<function " + c.name + address;
  }
  return "<function>";
}

// ---- the evaluator

namespace {

struct not_constant {};

}  // namespace

std::optional<value> fold_constant(const program& prog, const expr& e) {
  evaluator ev(prog, limits{});
  ev.const_mode_ = true;
  string_budget budget(limits{}.max_string_work / 4);
  try {
    return ev.eval(e);
  } catch (const template_error&) {
    return std::nullopt;  // jinja2 leaves it for run time, where it fails the same way
  } catch (const not_constant&) {
    return std::nullopt;
  }
}

evaluator::evaluator(const program& prog, const limits& lim) : prog_(prog), limits_(lim) {}

void evaluator::bind_globals() {
  globals_.resize(prog_.names.size());
  const program& prog = prog_;
  for (size_t id = 0; id < prog.names.size(); ++id) {
    if (!is_global_function(prog.names[id])) continue;
    auto f = std::make_shared<callable_data>();
    f->kind = callable_data::type::builtin;
    f->name = prog.names[id];
    globals_[id] = value::callable(std::move(f));
  }
}

evaluator::~evaluator() {
  for (auto& w : namespaces_)
    if (auto ns = w.lock()) ns->attrs.clear();
}

void evaluator::track(const std::shared_ptr<ns_data>& ns) {
  namespaces_.push_back(ns);
  if (namespaces_.size() >= namespaces_compacted_) {
    std::erase_if(namespaces_, [](const std::weak_ptr<ns_data>& w) { return w.expired(); });
    namespaces_compacted_ = std::max<size_t>(16, namespaces_.size() * 2);
  }
}

void evaluator::check_string(size_t bytes) const {
  if (bytes > limits_.max_output) fail("template output exceeds " + std::to_string(limits_.max_output) + " bytes");
}

void evaluator::check_items(size_t n) const {
  if (n > limits_.max_items) fail("template builds a list of more than " + std::to_string(limits_.max_items) + " items");
}

void evaluator::step() {
  if (++steps_ > limits_.max_steps) fail("template runs more than " + std::to_string(limits_.max_steps) + " loop iterations and calls");
}

void evaluator::undefined_error(const value& v) const {
  const undefined_info* info = v.undefined_ref();
  fail(info ? info->message : "value is undefined");
}

std::string evaluator::render(std::vector<std::pair<int, value>> vars) {
  string_budget budget(limits_.max_string_work);
  bind_globals();
  auto context = std::make_shared<scope>();
  context->vars = std::move(vars);
  scope_ = std::make_shared<scope>();
  scope_->parent = std::move(context);
  std::string out;
  out_ = &out;
  exec(prog_.root);
  out_ = nullptr;
  scope_.reset();
  return out;
}

value evaluator::lookup(int id, const std::string& name) const {
  for (const scope* s = scope_.get(); s; s = s->parent.get()) {
    if (const value* v = s->find(id)) return *v;
  }
  if (static_cast<size_t>(id) < globals_.size() && !globals_[id].is_undefined()) return globals_[id];
  return value::undefined("'" + name + "' is undefined");
}

void evaluator::write(const value& v) {
  append_str(*out_, v);
  check_string(out_->size());
}

std::string evaluator::capture(const stmt_list& body, std::shared_ptr<scope> sc, flow& f) {
  std::string buf;
  std::string* saved_out = out_;
  auto saved_scope = scope_;
  out_ = &buf;
  if (sc) scope_ = std::move(sc);
  try {
    f = exec(body);
  } catch (...) {
    out_ = saved_out;
    scope_ = std::move(saved_scope);
    throw;
  }
  out_ = saved_out;
  scope_ = std::move(saved_scope);
  return buf;
}

evaluator::flow evaluator::exec(const stmt_list& body) {
  for (const auto& s : body) {
    flow f = exec_stmt(*s);
    if (f != flow::normal) return f;
  }
  return flow::normal;
}

evaluator::flow evaluator::exec_stmt(const stmt& s) {
  try {
    switch (s.kind) {
      case stmt_kind::data:
        out_->append(s.text);
        check_string(out_->size());
        return flow::normal;
      case stmt_kind::output:
        for (const auto& e : s.exprs) write(eval(*e));
        return flow::normal;
      case stmt_kind::if_:
        for (const auto& br : s.branches) {
          if (truthy(eval(*br.test))) return exec(br.body);
        }
        return exec(s.else_body);
      case stmt_kind::for_: return exec_for(s);
      case stmt_kind::set: exec_set(s); return flow::normal;
      case stmt_kind::set_block: {
        auto inner = std::make_shared<scope>();
        inner->parent = scope_;
        flow f;
        value v(capture(s.body, inner, f));
        if (f != flow::normal) return f;
        if (s.filter) {
          value saved = std::move(block_input_);
          block_input_ = std::move(v);
          v = eval(*s.filter);
          block_input_ = std::move(saved);
        }
        assign(s.tgt, v, *scope_);
        return flow::normal;
      }
      case stmt_kind::macro: {
        auto m = std::make_shared<callable_data>();
        m->kind = callable_data::type::macro;
        m->name = s.name;
        m->macro = &s;
        m->closure = scope_;
        scope_->set(s.name_id, value::callable(std::move(m)));
        return flow::normal;
      }
      case stmt_kind::call_block: {
        auto c = std::make_shared<callable_data>();
        c->kind = callable_data::type::macro;
        c->name = "caller";
        c->macro = &s;
        c->closure = scope_;
        const expr& call_expr = *s.filter;
        value callee = eval(*call_expr.args[0]);
        call_args args;
        eval_args(call_expr, 1, args);
        // As jinja2: `caller` is a keyword argument, which a macro that never names `caller`
        // rejects (or collects into kwargs).
        args.kw.emplace_back("caller", value::callable(std::move(c)));
        write(call(callee, args));
        return flow::normal;
      }
      case stmt_kind::filter_block: {
        auto inner = std::make_shared<scope>();
        inner->parent = scope_;
        flow f;
        std::string text = capture(s.body, inner, f);
        if (f != flow::normal) return f;
        value saved = std::move(block_input_);
        block_input_ = value(std::move(text));
        value v = eval(*s.filter);
        block_input_ = std::move(saved);
        write(v);
        return flow::normal;
      }
      case stmt_kind::with: {
        auto inner = std::make_shared<scope>();
        inner->parent = scope_;
        for (size_t i = 0; i < s.exprs.size(); ++i) assign(s.with_targets[i], eval(*s.exprs[i]), *inner);
        auto saved = scope_;
        scope_ = inner;
        flow f;
        try {
          f = exec(s.body);
        } catch (...) {
          scope_ = std::move(saved);
          throw;
        }
        scope_ = std::move(saved);
        return f;
      }
      case stmt_kind::scope: {
        auto inner = std::make_shared<scope>();
        inner->parent = scope_;
        flow f;
        out_->append(capture(s.body, inner, f));
        check_string(out_->size());
        return flow::normal;
      }
      case stmt_kind::break_: return flow::break_;
      case stmt_kind::continue_: return flow::continue_;
    }
  } catch (template_error& e) {
    if (e.line == 0) e.line = s.line;
    throw;
  }
  return flow::normal;
}

void evaluator::assign(const target& t, const value& v, scope& sc) {
  switch (t.type) {
    case target::kind::name: sc.set(t.name_id, v); return;
    case target::kind::tuple: {
      std::vector<value> items = iterate(v);
      if (items.size() < t.items.size()) {
        fail("not enough values to unpack (expected " + std::to_string(t.items.size()) + ", got " +
             std::to_string(items.size()) + ")");
      }
      if (items.size() > t.items.size())
        fail("too many values to unpack (expected " + std::to_string(t.items.size()) + ")");
      for (size_t i = 0; i < items.size(); ++i) assign(t.items[i], items[i], sc);
      return;
    }
    case target::kind::attr: {
      value ns = lookup(t.name_id, t.name);
      if (!ns.is_ns()) fail("cannot assign attribute on non-namespace object");
      ns.ns_ref().set(t.attr, v);
      return;
    }
  }
}

void evaluator::exec_set(const stmt& s) { assign(s.tgt, eval(*s.exprs[0]), *scope_); }

evaluator::flow evaluator::exec_for(const stmt& s) {
  value iterable = eval(*s.exprs[0]);
  std::shared_ptr<std::vector<value>> items(new std::vector<value>(iterate(iterable)), [](std::vector<value>* v) {
    release(*v);
    delete v;
  });
  auto body_scope = std::make_shared<scope>();
  body_scope->parent = scope_;
  auto saved = scope_;
  struct restore {
    evaluator& ev;
    std::shared_ptr<scope> s;
    ~restore() { ev.scope_ = std::move(s); }
  } restore_scope{*this, saved};

  if (s.loop_filter) {
    std::vector<value> kept;
    scope_ = body_scope;
    for (auto& item : *items) {
      step();
      body_scope->vars.clear();
      assign(s.tgt, item, *body_scope);
      if (truthy(eval(*s.loop_filter))) kept.push_back(std::move(item));
    }
    *items = std::move(kept);
  }
  // jinja2 clears its "run the else block" flag at the end of the loop body, so the else
  // block also runs when every iteration ended in break or continue.
  bool completed_an_iteration = false;
  auto run_else = [&] {
    body_scope->vars.clear();
    scope_ = body_scope;
    return exec(s.else_body);  // break/continue here belong to an enclosing loop
  };
  if (items->empty()) return run_else();
  auto loop = std::make_shared<loop_data>();
  // loop.changed(loop) would make a cycle; the state is of no use once the loop is done.
  struct forget_changed {
    loop_data& l;
    ~forget_changed() { l.last_changed.clear(); }
  } forget{*loop};
  loop->items = items;
  loop->depth = 1;  // jinja2 counts depth only through recursive loops, which troupe rejects
  value loop_value = value::loop(loop);
  scope_ = body_scope;
  for (size_t i = 0; i < items->size(); ++i) {
    step();
    loop->index0 = i;
    body_scope->vars.clear();
    body_scope->vars.emplace_back(id_loop, loop_value);
    assign(s.tgt, (*items)[i], *body_scope);
    flow f = exec(s.body);
    if (f == flow::break_) break;
    if (f == flow::normal) completed_an_iteration = true;
  }
  if (!completed_an_iteration && !s.else_body.empty()) return run_else();
  return flow::normal;
}

// ---- expressions

value evaluator::eval(const expr& e) {
  try {
    switch (e.kind) {
      case expr_kind::literal: return e.fresh_copy ? fresh_copy(e.literal) : e.literal;
      case expr_kind::name:
        if (const_mode_) throw not_constant{};
        return lookup(e.name_id, e.name);
      case expr_kind::list:
      case expr_kind::tuple: {
        std::vector<value> items;
        items.reserve(e.args.size());
        for (const auto& a : e.args) items.push_back(eval(*a));
        return value::list(std::move(items), e.kind == expr_kind::tuple);
      }
      case expr_kind::dict: {
        auto d = std::make_shared<dict_data>();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          value k = eval(*e.args[i]);
          d->set(std::move(k), eval(*e.args[i + 1]));
        }
        return value::dict(std::move(d));
      }
      case expr_kind::getattr: return get_attr(eval(*e.args[0]), e.name);
      case expr_kind::getitem: {
        value obj = eval(*e.args[0]);
        const expr& idx = *e.args[1];
        if (idx.kind == expr_kind::slice) {
          auto part = [&](size_t i) { return idx.args[i] ? eval(*idx.args[i]) : value::none(); };
          value a = part(0), b = part(1), c = part(2);
          // Folding constants, jinja2 slices through its lenient getitem (a failure is
          // Undefined); at run time slices are Python's own and raise.
          if (const_mode_ && !obj.is_undefined()) {  // Undefined[...] raises even there
            try {
              return slice(*this, obj, a, b, c);
            } catch (const template_error&) {
              return value::undefined("'" + type_name(obj) + " object' has no element " + to_repr(obj));
            }
          }
          return slice(*this, obj, a, b, c);
        }
        return get_item(obj, eval(idx));
      }
      case expr_kind::slice: fail("slice outside of a subscript");
      case expr_kind::call: return eval_call(e);
      case expr_kind::filter: return eval_filter(e);
      case expr_kind::test: return value(eval_test(e));
      case expr_kind::not_: return value(!truthy(eval(*e.args[0])));
      case expr_kind::neg:
      case expr_kind::pos: {
        value v = eval(*e.args[0]);
        if (v.is_undefined()) undefined_error(v);
        if (is_intlike(v)) return e.kind == expr_kind::neg ? checked_sub(0, v.get_int()) : value(v.get_int());
        if (v.is_float()) return value(e.kind == expr_kind::neg ? -v.as_double() : v.as_double());
        fail(std::string("bad operand type for unary ") + (e.kind == expr_kind::neg ? "-" : "+") + ": '" +
             type_name(v) + "'");
      }
      case expr_kind::binary: {
        value a = eval(*e.args[0]);
        value b = eval(*e.args[1]);
        return binary(e.op, a, b);
      }
      case expr_kind::compare: return eval_compare(e);
      case expr_kind::and_: {
        value a = eval(*e.args[0]);
        return truthy(a) ? eval(*e.args[1]) : a;
      }
      case expr_kind::or_: {
        value a = eval(*e.args[0]);
        return truthy(a) ? a : eval(*e.args[1]);
      }
      case expr_kind::concat: {
        std::string s;
        for (const auto& a : e.args) {
          append_str(s, eval(*a));
          check_string(s.size());
        }
        return value(std::move(s));
      }
      case expr_kind::cond: {
        if (truthy(eval(*e.args[1]))) return eval(*e.args[0]);
        if (e.args[2]) return eval(*e.args[2]);
        return value::undefined("the inline if-expression evaluated to false and no else section was defined");
      }
      case expr_kind::block_input:
        if (const_mode_) throw not_constant{};
        return block_input_;
    }
  } catch (template_error& err) {
    if (err.line == 0) err.line = e.line;
    throw;
  }
  return value();
}

value evaluator::binary(binop op, const value& a, const value& b) {
  if (a.is_undefined()) undefined_error(a);
  // str % x formats x first, so '%s' % undefined renders "" as in Python.
  if (b.is_undefined() && !(op == binop::mod && a.is_string())) undefined_error(b);
  switch (op) {
    case binop::add:
      if (is_intlike(a) && is_intlike(b)) return checked_add(a.get_int(), b.get_int());
      if (a.is_number() && b.is_number()) return value(a.as_double() + b.as_double());
      if (a.is_string() && b.is_string()) {
        const bool markup = a.is_markup() || b.is_markup();
        std::string s = markup && !a.is_markup() ? html_escape(a.str()) : a.str();
        s += markup && !b.is_markup() ? html_escape(b.str()) : b.str();
        check_string(s.size());
        return value(std::move(s), markup);
      }
      if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
        check_items(a.items().size() + b.items().size());
        std::vector<value> items = a.items();
        items.insert(items.end(), b.items().begin(), b.items().end());
        return value::list(std::move(items), a.is_tuple());
      }
      if (a.is_string() && !a.is_markup())
        fail("can only concatenate str (not \"" + type_name(b) + "\") to str");
      if (a.is_list() && !a.is_tuple())
        fail("can only concatenate list (not \"" + type_name(b) + "\") to list");
      unsupported_operands("+", a, b);
    case binop::sub:
      if (is_intlike(a) && is_intlike(b)) return checked_sub(a.get_int(), b.get_int());
      if (a.is_number() && b.is_number()) return value(a.as_double() - b.as_double());
      unsupported_operands("-", a, b);
    case binop::mul: {
      if (is_intlike(a) && is_intlike(b)) return checked_mul(a.get_int(), b.get_int());
      if (a.is_number() && b.is_number()) return value(a.as_double() * b.as_double());
      const value* seq = (a.is_string() || a.is_list()) ? &a : ((b.is_string() || b.is_list()) ? &b : nullptr);
      const value* count = seq == &a ? &b : &a;
      if (seq && is_intlike(*count)) {
        int64_t n = std::max<int64_t>(0, count->get_int());
        if (seq->is_string()) {
          check_string(static_cast<size_t>(n) * seq->str().size() > limits_.max_output ? limits_.max_output + 1
                                                                                         : static_cast<size_t>(n) * seq->str().size());
          std::string s;
          s.reserve(static_cast<size_t>(n) * seq->str().size());
          for (int64_t i = 0; i < n; ++i) s += seq->str();
          return value(std::move(s), seq->is_markup());
        }
        const size_t len = seq->items().size();
        check_items(len && static_cast<uint64_t>(n) > limits_.max_items ? limits_.max_items + 1 : static_cast<size_t>(n) * len);
        std::vector<value> items;
        for (int64_t i = 0; i < n; ++i) items.insert(items.end(), seq->items().begin(), seq->items().end());
        return value::list(std::move(items), seq->is_tuple());
      }
      if (seq) fail("can't multiply sequence by non-int of type '" + type_name(*count) + "'");
      unsupported_operands("*", a, b);
    }
    case binop::div:
      if (a.is_number() && b.is_number()) {
        if (b.as_double() == 0.0) fail("division by zero");
        return value(a.as_double() / b.as_double());
      }
      unsupported_operands("/", a, b);
    case binop::floordiv:
      if (is_intlike(a) && is_intlike(b)) {
        if (b.get_int() == 0) fail("integer division or modulo by zero");
        if (a.get_int() == std::numeric_limits<int64_t>::min() && b.get_int() == -1) int_overflow();
        return value(floor_div(a.get_int(), b.get_int()));
      }
      if (a.is_number() && b.is_number()) {
        if (b.as_double() == 0.0) fail("float floor division by zero");
        return value(std::floor(a.as_double() / b.as_double()));
      }
      unsupported_operands("//", a, b);
    case binop::mod:
      if (a.is_string()) {
        std::string s = percent_format(a, b);
        check_string(s.size());
        return value(std::move(s), a.is_markup());
      }
      if (is_intlike(a) && is_intlike(b)) {
        if (b.get_int() == 0) fail("integer division or modulo by zero");
        if (b.get_int() == -1) return value(int64_t(0));
        int64_t m = a.get_int() % b.get_int();
        if (m != 0 && ((m < 0) != (b.get_int() < 0))) m += b.get_int();
        return value(m);
      }
      if (a.is_number() && b.is_number()) {
        if (b.as_double() == 0.0) fail("float modulo");
        return value(py_fmod(a.as_double(), b.as_double()));
      }
      unsupported_operands("%", a, b);
    case binop::pow:
      if (is_intlike(a) && is_intlike(b) && b.get_int() >= 0) {
        int64_t r = 1;
        const int64_t base = a.get_int();
        for (int64_t e = b.get_int(); e > 0; --e) {
          if (r == 0 || (r == 1 && base == 1)) break;
          if (base == -1 || base == 1 || base == 0) {
            r = base == 0 ? 0 : (base == 1 ? 1 : ((e % 2 == 0) ? r : -r));
            break;
          }
          if (__builtin_mul_overflow(r, base, &r)) int_overflow();
        }
        return value(r);
      }
      if (a.is_number() && b.is_number()) {
        if (a.as_double() == 0.0 && b.as_double() < 0) fail("0.0 cannot be raised to a negative power");
        double r = std::pow(a.as_double(), b.as_double());
        if (std::isnan(r) && !std::isnan(a.as_double()) && !std::isnan(b.as_double()))
          fail("unsupported: a negative number raised to a fractional power (a complex number)");
        return value(r);
      }
      unsupported_operands("** or pow()", a, b);
  }
  return value();
}

value evaluator::eval_compare(const expr& e) {
  value left = eval(*e.args[0]);
  for (size_t i = 0; i < e.cmp.size(); ++i) {
    value right = eval(*e.args[i + 1]);
    bool r = false;
    switch (e.cmp[i]) {
      case cmpop::eq: r = equals(left, right); break;
      case cmpop::ne: r = !equals(left, right); break;
      case cmpop::lt: r = compare(left, right, "<") == -1; break;
      case cmpop::le: {
        int c = compare(left, right, "<=");
        r = c == -1 || c == 0;
        break;
      }
      case cmpop::gt: r = compare(left, right, ">") == 1; break;
      case cmpop::ge: {
        int c = compare(left, right, ">=");
        r = c == 1 || c == 0;
        break;
      }
      case cmpop::in: r = contains(right, left); break;
      case cmpop::not_in: r = !contains(right, left); break;
    }
    if (!r) return value(false);
    left = std::move(right);
  }
  return value(true);
}

void evaluator::eval_args(const expr& e, size_t first, call_args& out) {
  for (size_t i = first; i < e.args.size(); ++i) out.pos.push_back(eval(*e.args[i]));
  for (const auto& k : e.kwargs) out.kw.emplace_back(k.name, eval(*k.value));
  if (e.dyn_args) {
    value extra = eval(*e.dyn_args);
    for (auto& v : iterate(extra)) out.pos.push_back(std::move(v));
  }
  if (e.dyn_kwargs) {
    value extra = eval(*e.dyn_kwargs);
    if (!extra.is_dict()) fail("argument after ** must be a mapping, not " + type_name(extra));
    for (const auto& [k, v] : extra.dict_ref().items) {
      if (!k.is_string()) fail("keywords must be strings");
      out.kw.emplace_back(k.str(), v);
    }
  }
}

value evaluator::eval_filter(const expr& e) {
  if (const_mode_) {
    // Filters that take the template context never fold (jinja2's pass_context).
    if (!e.filter) throw not_constant{};
    for (const char* f : {"map", "select", "reject", "selectattr", "rejectattr"})
      if (e.name == f) throw not_constant{};
  }
  value input = eval(*e.args[0]);
  call_args args;
  eval_args(e, 1, args);
  if (!e.filter) {
    fail(std::string(jinja2_has_filter(e.name) ? "unsupported" : "unknown") + " filter '" + e.name + "'", e.line);
  }
  return e.filter(*this, input, args);
}

bool evaluator::eval_test(const expr& e) {
  if (const_mode_ && !e.test) throw not_constant{};
  value input = eval(*e.args[0]);
  call_args args;
  eval_args(e, 1, args);
  if (!e.test) fail(std::string(jinja2_has_test(e.name) ? "unsupported" : "unknown") + " test '" + e.name + "'", e.line);
  return e.test(*this, input, args);
}

value evaluator::apply_filter(std::string_view name, const value& input, call_args& args) {
  filter_fn f = find_filter(name);
  if (!f) fail(std::string(jinja2_has_filter(name) ? "unsupported" : "unknown") + " filter '" + std::string(name) + "'");
  return f(*this, input, args);
}

bool evaluator::apply_test(std::string_view name, const value& input, call_args& args) {
  test_fn t = find_test(name);
  if (!t) fail(std::string(jinja2_has_test(name) ? "unsupported" : "unknown") + " test '" + std::string(name) + "'");
  return t(*this, input, args);
}

value evaluator::eval_call(const expr& e) {
  if (const_mode_) throw not_constant{};
  value callee = eval(*e.args[0]);
  call_args args;
  eval_args(e, 1, args);
  return call(callee, args);
}

value evaluator::call(const value& callee, call_args& args) {
  if (callee.is_undefined()) undefined_error(callee);
  if (callee.is_loop()) fail("unsupported: recursive for loops (calling loop())");
  if (!callee.is_callable()) fail("'" + type_name(callee) + "' object is not callable");
  const callable_data& c = callee.callable_ref();
  switch (c.kind) {
    case callable_data::type::macro: {
      value caller;
      for (auto it = args.kw.begin(); it != args.kw.end(); ++it) {
        if (it->first == "caller" && c.macro->uses_caller) {
          caller = it->second;
          args.kw.erase(it);
          break;
        }
      }
      return call_macro(c, args, caller);
    }
    case callable_data::type::method: return call_method(*this, c.self, c.name, args);
    case callable_data::type::builtin: return call_global(*this, c, args);
  }
  return value();
}

value evaluator::call_macro(const callable_data& m, call_args& args, const value& caller) {
  step();
  if (call_depth_ >= limits_.max_call_depth) fail("macro calls nest more than " + std::to_string(limits_.max_call_depth) + " deep");
  const stmt& def = *m.macro;
  const std::string& name = def.kind == stmt_kind::call_block ? std::string("caller") : def.name;
  auto sc = std::make_shared<scope>();
  sc->parent = m.closure.lock();
  if (!sc->parent) fail("unsupported: macro '" + name + "' called after the scope that defined it ended");
  const size_t n_params = def.params.size();
  std::vector<bool> bound(n_params, false);
  if (args.pos.size() > n_params && !def.catch_varargs) {
    fail("macro '" + name + "' takes not more than " + std::to_string(n_params) + " argument(s)");
  }
  for (size_t i = 0; i < args.pos.size() && i < n_params; ++i) {
    sc->set(def.params[i], args.pos[i]);
    bound[i] = true;
  }
  auto kwargs = std::make_shared<dict_data>();
  for (auto& [k, v] : args.kw) {
    size_t i = 0;
    while (i < n_params && def.param_names[i] != k) ++i;
    if (i < n_params) {
      if (bound[i]) fail("macro '" + name + "' got multiple values for argument '" + k + "'");
      sc->set(def.params[i], v);
      bound[i] = true;
    } else if (def.catch_kwargs) {
      kwargs->set(value(k), v);
    } else {
      fail("macro '" + name + "' takes no keyword argument '" + k + "'");
    }
  }
  const size_t first_default = n_params - def.defaults.size();
  auto saved = scope_;
  scope_ = sc;
  ++call_depth_;
  struct restore {
    evaluator& ev;
    std::shared_ptr<scope> s;
    ~restore() {
      ev.scope_ = std::move(s);
      --ev.call_depth_;
    }
  } restore_scope{*this, std::move(saved)};
  for (size_t i = 0; i < n_params; ++i) {
    if (bound[i]) continue;
    if (i >= first_default) sc->set(def.params[i], eval(*def.defaults[i - first_default]));
    else sc->set(def.params[i], value::undefined("parameter '" + def.param_names[i] + "' was not provided"));
  }
  if (def.catch_varargs) {
    std::vector<value> extra;
    for (size_t i = n_params; i < args.pos.size(); ++i) extra.push_back(args.pos[i]);
    sc->set(id_varargs, value::list(std::move(extra), true));
  }
  if (def.catch_kwargs) sc->set(id_kwargs, value::dict(kwargs));
  if (def.uses_caller) {
    sc->set(id_caller, caller.is_undefined() ? value::undefined("No caller defined") : caller);
  }
  std::string* saved_out = out_;
  std::string buf;
  out_ = &buf;
  try {
    exec(def.body);
  } catch (...) {
    out_ = saved_out;
    throw;
  }
  out_ = saved_out;
  return value(std::move(buf));
}

// ---- attribute and item access (the sandbox's getattr / getitem)

value evaluator::get_attr(const value& obj, std::string_view name) {
  switch (obj.type()) {
    case kind::undefined: undefined_error(obj);
    case kind::dict: {
      attr_kind k = method_kind(obj, name);
      if (k == attr_kind::none) {
        if (const value* v = obj.dict_ref().find(name)) return *v;
        return value::undefined("'dict object' has no attribute '" + std::string(name) + "'");
      }
      break;
    }
    case kind::ns: {
      if (const value* v = obj.ns_ref().find(name)) return *v;
      return value::undefined("'Namespace object' has no attribute '" + std::string(name) + "'");
    }
    case kind::loop: {
      const loop_data& l = obj.loop_ref();
      const auto n = static_cast<int64_t>(l.items->size());
      const auto i = static_cast<int64_t>(l.index0);
      if (name == "index") return value(i + 1);
      if (name == "index0") return value(i);
      if (name == "revindex") return value(n - i);
      if (name == "revindex0") return value(n - i - 1);
      if (name == "first") return value(i == 0);
      if (name == "last") return value(i == n - 1);
      if (name == "length") return value(n);
      if (name == "depth") return value(int64_t(l.depth));
      if (name == "depth0") return value(int64_t(l.depth - 1));
      if (name == "previtem") return i > 0 ? (*l.items)[static_cast<size_t>(i - 1)] : value::undefined("there is no previous item");
      if (name == "nextitem") return i + 1 < n ? (*l.items)[static_cast<size_t>(i + 1)] : value::undefined("there is no next item");
      break;
    }
    case kind::iterable:
      if (obj.iterable_kind() == iter_kind::range) {
        const list_data& r = obj.iterable_ref();
        if (name == "start") return value(r.start);
        if (name == "stop") return value(r.stop);
        if (name == "step") return value(r.step);
      }
      break;
    default: break;
  }
  switch (method_kind(obj, name)) {
    case attr_kind::method: {
      auto m = std::make_shared<callable_data>();
      m->kind = callable_data::type::method;
      m->name = std::string(name);
      m->self = obj;
      return value::callable(std::move(m));
    }
    case attr_kind::unsafe:
      return value::undefined("access to attribute '" + std::string(name) + "' of '" + type_name(obj) + "' object is unsafe.", true);
    case attr_kind::none: break;
  }
  return value::undefined("'" + type_name(obj) + " object' has no attribute '" + std::string(name) + "'");
}

value evaluator::get_item(const value& obj, const value& key) {
  switch (obj.type()) {
    case kind::undefined: undefined_error(obj);
    case kind::dict: {
      if ((key.is_list() && !key.is_tuple()) || key.is_dict()) return value::undefined("unhashable key");
      if (const value* v = obj.dict_ref().find(key)) return *v;
      break;
    }
    case kind::iterable:
      if (obj.iterable_kind() != iter_kind::range || !is_intlike(key)) break;
      [[fallthrough]];
    case kind::list:
    case kind::string:
      if (is_intlike(key)) {
        int64_t i = key.get_int();
        if (obj.is_list() || obj.is_iterable_object()) {
          const auto n = static_cast<int64_t>(obj.items().size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return value::undefined("'" + type_name(obj) + " object' has no element " + std::to_string(key.get_int()));
          return obj.items()[static_cast<size_t>(i)];
        }
        const std::string& s = obj.str();
        if (is_ascii(s)) {
          const auto n = static_cast<int64_t>(s.size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return value::undefined("string index out of range");
          return value(std::string(1, s[static_cast<size_t>(i)]), obj.is_markup());
        }
        std::u32string u = utf8_decode(s);
        const auto n = static_cast<int64_t>(u.size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return value::undefined("string index out of range");
        return value(utf8_encode(u.substr(static_cast<size_t>(i), 1)), obj.is_markup());
      }
      break;
    default: break;
  }
  if (key.is_string()) {
    value v = get_attr(obj, key.str());
    return v;
  }
  return value::undefined("'" + type_name(obj) + " object' has no element " + to_repr(key));
}

}  // namespace troupe::jinja
