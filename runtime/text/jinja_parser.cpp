#include "runtime/text/jinja_parser.hpp"

#include <unordered_map>

#include "runtime/text/jinja_eval.hpp"
#include "runtime/text/jinja_lexer.hpp"

namespace troupe::jinja {
namespace {

// Deep nesting would overflow the C++ stack in the parser and the evaluator; real templates
// nest a few levels.
constexpr int max_nesting = 200;

const token& eof_token() {
  static const token t{tok::eof, 0, {}, 0, 0.0};
  return t;
}

std::string describe(const token& t) {
  switch (t.type) {
    case tok::data: return "template data";
    case tok::var_begin: return "begin of print statement";
    case tok::var_end: return "end of print statement";
    case tok::block_begin: return "begin of statement block";
    case tok::block_end: return "end of statement block";
    case tok::name: return t.text;
    case tok::string: return "string";
    case tok::integer: return "integer";
    case tok::floating: return "float";
    case tok::op: return t.text;
    case tok::eof: return "end of template";
  }
  return "token";
}

class parser {
 public:
  parser(std::vector<token> tokens, program& prog) : toks_(std::move(tokens)), prog_(prog) {
    for (const char* n : {"loop", "caller", "varargs", "kwargs"}) intern(n);
  }

  stmt_list parse_template() {
    stmt_list body = subparse({});
    if (cur().type != tok::eof) fail_here("unexpected '" + describe(cur()) + "'");
    return body;
  }

 private:
  // ---- token stream
  const token& cur() const { return i_ < toks_.size() ? toks_[i_] : eof_token(); }
  const token& look() const { return i_ + 1 < toks_.size() ? toks_[i_ + 1] : eof_token(); }
  const token& next() {
    const token& t = cur();
    if (i_ < toks_.size()) ++i_;
    return t;
  }
  bool is_op(std::string_view op) const { return cur().type == tok::op && cur().text == op; }
  bool is_name(std::string_view n) const { return cur().type == tok::name && cur().text == n; }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  [[noreturn]] void fail_here(const std::string& msg) const { fail(msg, cur().line ? cur().line : last_line()); }
  int last_line() const { return toks_.empty() ? 1 : toks_.back().line; }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) fail_here("expected '" + std::string(op) + "', got '" + describe(cur()) + "'");
  }
  void expect_type(tok t, const char* what) {
    if (cur().type != t) {
      if (cur().type == tok::eof) fail_here(std::string("unexpected end of template, expected ") + what);
      fail_here(std::string("expected ") + what + ", got '" + describe(cur()) + "'");
    }
    next();
  }
  const token& expect_name() {
    if (cur().type != tok::name) fail_here("expected a name, got '" + describe(cur()) + "'");
    return next();
  }
  void expect_name(std::string_view n) {
    if (!skip_name(n)) fail_here("expected '" + std::string(n) + "', got '" + describe(cur()) + "'");
  }

  int intern(const std::string& name) {
    auto [it, inserted] = ids_.try_emplace(name, static_cast<int>(prog_.names.size()));
    if (inserted) prog_.names.push_back(name);
    return it->second;
  }

  struct depth_guard {
    explicit depth_guard(parser& p) : p_(p) {
      if (++p_.depth_ > max_nesting) p_.fail_here("template nests too deeply");
    }
    ~depth_guard() { --p_.depth_; }
    parser& p_;
  };

  static expr_ptr node(expr_kind k, int line) {
    auto e = std::make_unique<expr>();
    e->kind = k;
    e->line = line;
    return e;
  }

  // ---- statements
  stmt_list subparse(std::initializer_list<std::string_view> end_tokens) {
    depth_guard guard(*this);
    stmt_list body;
    while (cur().type != tok::eof) {
      const token& t = cur();
      if (t.type == tok::data) {
        auto s = std::make_unique<stmt>();
        s->kind = stmt_kind::data;
        s->line = t.line;
        s->text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.type == tok::var_begin) {
        auto s = std::make_unique<stmt>();
        s->kind = stmt_kind::output;
        s->line = t.line;
        next();
        s->exprs.push_back(parse_tuple(false, true, {}, false));
        expect_type(tok::var_end, "end of print statement");
        body.push_back(std::move(s));
      } else if (t.type == tok::block_begin) {
        next();
        if (cur().type == tok::name) {
          for (auto e : end_tokens)
            if (cur().text == e) return body;
        }
        body.push_back(parse_statement());
        expect_type(tok::block_end, "end of statement block");
      } else {
        fail_here("unexpected '" + describe(t) + "'");
      }
    }
    return body;
  }

  // Body up to one of end_tokens; leaves the end token current unless drop_needle.
  stmt_list parse_statements(std::initializer_list<std::string_view> end_tokens, const char* tag, bool drop_needle) {
    skip_op(":");
    expect_type(tok::block_end, "end of statement block");
    stmt_list body = subparse(end_tokens);
    if (cur().type == tok::eof) {
      std::string looking;
      for (auto e : end_tokens) looking += (looking.empty() ? "'" : " or '") + std::string(e) + "'";
      fail(std::string("unexpected end of template: '") + tag + "' is not closed, expected " + looking, last_line());
    }
    if (drop_needle) next();
    return body;
  }

  stmt_ptr parse_statement() {
    const token& t = cur();
    if (t.type != tok::name) fail_here("tag name expected");
    const std::string& n = t.text;
    if (n == "for") return parse_for();
    if (n == "if") return parse_if();
    if (n == "set") return parse_set();
    if (n == "macro") return parse_macro();
    if (n == "call") return parse_call_block();
    if (n == "filter") return parse_filter_block();
    if (n == "with") return parse_with();
    if (n == "print") return parse_print();
    if (n == "break" || n == "continue") {
      if (loop_depth_ == 0) fail_here("'" + n + "' outside loop");
      auto s = std::make_unique<stmt>();
      s->kind = n == "break" ? stmt_kind::break_ : stmt_kind::continue_;
      s->line = next().line;
      return s;
    }
    if (n == "generation") {
      // transformers' AssistantTracker tag: renders its body (as a call block does).
      auto s = std::make_unique<stmt>();
      s->kind = stmt_kind::scope;
      s->line = next().line;
      int saved = loop_depth_;
      loop_depth_ = 0;
      s->body = parse_statements({"endgeneration"}, "generation", true);
      loop_depth_ = saved;
      return s;
    }
    if (n == "block" || n == "extends" || n == "include" || n == "import" || n == "from" || n == "autoescape")
      fail_here("unsupported tag '" + n + "'");
    fail_here("unknown tag '" + n + "'");
  }

  target parse_target_primary() {
    if (skip_op("(")) {
      target t = parse_target_tuple({}, true);
      expect_op(")");
      return t;
    }
    const token& nt = expect_name();
    if (nt.text == "true" || nt.text == "false" || nt.text == "none" || nt.text == "True" || nt.text == "False" ||
        nt.text == "None")
      fail("can't assign to 'const'", nt.line);
    target t;
    t.type = target::kind::name;
    t.name = nt.text;
    t.name_id = intern(nt.text);
    return t;
  }

  // parse_tuple(simplified=True) for assignment targets.
  target parse_target_tuple(std::initializer_list<std::string_view> extra_end, bool parens) {
    std::vector<target> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (tuple_end(extra_end)) break;
      items.push_back(parse_target_primary());
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (items.empty()) fail_here(parens ? "can't assign to an empty tuple" : "expected an assignment target");
      return std::move(items[0]);
    }
    target t;
    t.type = target::kind::tuple;
    t.items = std::move(items);
    return t;
  }

  target parse_assign_target(bool with_namespace, std::initializer_list<std::string_view> extra_end) {
    if (with_namespace && cur().type == tok::name && look().type == tok::op && look().text == ".") {
      target t;
      t.type = target::kind::attr;
      t.name = next().text;
      t.name_id = intern(t.name);
      next();
      t.attr = expect_name().text;
      return t;
    }
    return parse_target_tuple(extra_end, false);
  }

  stmt_ptr parse_for() {
    auto s = std::make_unique<stmt>();
    s->kind = stmt_kind::for_;
    s->line = next().line;
    s->tgt = parse_assign_target(false, {"in"});
    expect_name("in");
    s->exprs.push_back(parse_tuple(false, false, {"recursive"}, false));
    if (skip_name("if")) s->loop_filter = parse_expression(true);
    if (is_name("recursive")) fail_here("unsupported: recursive for loops");
    ++loop_depth_;
    s->body = parse_statements({"endfor", "else"}, "for", false);
    --loop_depth_;
    if (next().text == "else") s->else_body = parse_statements({"endfor"}, "for", true);
    return s;
  }

  stmt_ptr parse_if() {
    auto s = std::make_unique<stmt>();
    s->kind = stmt_kind::if_;
    s->line = next().line;
    while (true) {
      if_branch b;
      b.test = parse_tuple(false, false, {}, false);
      b.body = parse_statements({"elif", "else", "endif"}, "if", false);
      s->branches.push_back(std::move(b));
      const token& t = next();
      if (t.text == "elif") continue;
      if (t.text == "else") s->else_body = parse_statements({"endif"}, "if", true);
      break;
    }
    return s;
  }

  stmt_ptr parse_set() {
    auto s = std::make_unique<stmt>();
    s->line = next().line;
    s->tgt = parse_assign_target(true, {});
    if (skip_op("=")) {
      s->kind = stmt_kind::set;
      s->exprs.push_back(parse_tuple(false, true, {}, false));
      return s;
    }
    s->kind = stmt_kind::set_block;
    if (is_op("|")) s->filter = parse_filter_chain(node(expr_kind::block_input, s->line), false);
    s->body = parse_statements({"endset"}, "set", true);
    return s;
  }

  void parse_signature(stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      const token& nt = expect_name();
      s.param_names.push_back(nt.text);
      s.params.push_back(intern(nt.text));
      if (skip_op("=")) {
        s.defaults.push_back(parse_expression(true));
      } else if (!s.defaults.empty()) {
        fail_here("non-default argument follows default argument");
      }
    }
    expect_op(")");
  }

  stmt_ptr parse_macro() {
    auto s = std::make_unique<stmt>();
    s->kind = stmt_kind::macro;
    s->line = next().line;
    s->name = expect_name().text;
    s->name_id = intern(s->name);
    parse_signature(*s);
    parse_macro_body(*s, "endmacro", "macro");
    return s;
  }

  void parse_macro_body(stmt& s, const char* end, const char* tag) {
    int saved = loop_depth_;
    loop_depth_ = 0;
    macros_.push_back(&s);
    s.body = parse_statements({end}, tag, true);
    macros_.pop_back();
    loop_depth_ = saved;
  }

  stmt_ptr parse_call_block() {
    auto s = std::make_unique<stmt>();
    s->kind = stmt_kind::call_block;
    s->line = next().line;
    s->name = "caller";
    if (is_op("(")) parse_signature(*s);
    s->filter = parse_expression(true);
    if (s->filter->kind != expr_kind::call) fail("expected call", s->line);
    parse_macro_body(*s, "endcall", "call");
    return s;
  }

  stmt_ptr parse_filter_block() {
    auto s = std::make_unique<stmt>();
    s->kind = stmt_kind::filter_block;
    s->line = next().line;
    s->filter = parse_filter_chain(node(expr_kind::block_input, s->line), true);
    s->body = parse_statements({"endfilter"}, "filter", true);
    return s;
  }

  stmt_ptr parse_with() {
    auto s = std::make_unique<stmt>();
    s->kind = stmt_kind::with;
    s->line = next().line;
    while (cur().type != tok::block_end) {
      if (!s->with_targets.empty()) expect_op(",");
      s->with_targets.push_back(parse_assign_target(false, {}));
      expect_op("=");
      s->exprs.push_back(parse_expression(true));
    }
    s->body = parse_statements({"endwith"}, "with", true);
    return s;
  }

  stmt_ptr parse_print() {
    auto s = std::make_unique<stmt>();
    s->kind = stmt_kind::output;
    s->line = next().line;
    while (cur().type != tok::block_end) {
      if (!s->exprs.empty()) expect_op(",");
      s->exprs.push_back(parse_expression(true));
    }
    return s;
  }

  // ---- expressions
  expr_ptr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  expr_ptr parse_condexpr() {
    depth_guard guard(*this);
    int line = cur().line;
    expr_ptr e1 = parse_or();
    while (skip_name("if")) {
      expr_ptr e2 = parse_or();
      expr_ptr e3;
      if (skip_name("else")) e3 = parse_condexpr();
      auto c = node(expr_kind::cond, line);
      c->args.push_back(std::move(e1));
      c->args.push_back(std::move(e2));
      c->args.push_back(std::move(e3));
      e1 = std::move(c);
      line = cur().line;
    }
    return e1;
  }

  expr_ptr binary_node(expr_kind k, int line, expr_ptr l, expr_ptr r) {
    auto e = node(k, line);
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return e;
  }

  expr_ptr parse_or() {
    int line = cur().line;
    expr_ptr left = parse_and();
    while (skip_name("or")) {
      left = binary_node(expr_kind::or_, line, std::move(left), parse_and());
      line = cur().line;
    }
    return left;
  }

  expr_ptr parse_and() {
    int line = cur().line;
    expr_ptr left = parse_not();
    while (skip_name("and")) {
      left = binary_node(expr_kind::and_, line, std::move(left), parse_not());
      line = cur().line;
    }
    return left;
  }

  expr_ptr parse_not() {
    if (is_name("not")) {
      depth_guard guard(*this);
      auto e = node(expr_kind::not_, next().line);
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  expr_ptr parse_compare() {
    int line = cur().line;
    expr_ptr first = parse_math1();
    auto e = node(expr_kind::compare, line);
    while (true) {
      cmpop op;
      if (is_op("==")) op = cmpop::eq;
      else if (is_op("!=")) op = cmpop::ne;
      else if (is_op("<")) op = cmpop::lt;
      else if (is_op("<=")) op = cmpop::le;
      else if (is_op(">")) op = cmpop::gt;
      else if (is_op(">=")) op = cmpop::ge;
      else if (is_name("in")) op = cmpop::in;
      else if (is_name("not") && look().type == tok::name && look().text == "in") {
        next();
        op = cmpop::not_in;
      } else {
        break;
      }
      next();
      e->cmp.push_back(op);
      e->args.push_back(parse_math1());
      line = cur().line;
    }
    if (e->cmp.empty()) return first;
    e->args.insert(e->args.begin(), std::move(first));
    return e;
  }

  expr_ptr math_node(binop op, int line, expr_ptr l, expr_ptr r) {
    auto e = binary_node(expr_kind::binary, line, std::move(l), std::move(r));
    e->op = op;
    return e;
  }

  expr_ptr parse_math1() {
    int line = cur().line;
    expr_ptr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      binop op = next().text == "+" ? binop::add : binop::sub;
      left = math_node(op, line, std::move(left), parse_concat());
      line = cur().line;
    }
    return left;
  }

  expr_ptr parse_concat() {
    int line = cur().line;
    expr_ptr first = parse_math2();
    if (!is_op("~")) return first;
    auto e = node(expr_kind::concat, line);
    e->args.push_back(std::move(first));
    while (skip_op("~")) e->args.push_back(parse_math2());
    return e;
  }

  expr_ptr parse_math2() {
    int line = cur().line;
    expr_ptr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string& t = next().text;
      binop op = t == "*" ? binop::mul : t == "/" ? binop::div : t == "//" ? binop::floordiv : binop::mod;
      left = math_node(op, line, std::move(left), parse_pow());
      line = cur().line;
    }
    return left;
  }

  expr_ptr parse_pow() {
    int line = cur().line;
    expr_ptr left = parse_unary(true);
    while (skip_op("**")) {
      left = math_node(binop::pow, line, std::move(left), parse_unary(true));
      line = cur().line;
    }
    return left;
  }

  expr_ptr parse_unary(bool with_filter) {
    depth_guard guard(*this);
    int line = cur().line;
    expr_ptr e;
    if (is_op("-") || is_op("+")) {
      e = node(next().text == "-" ? expr_kind::neg : expr_kind::pos, line);
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  expr_ptr parse_primary() {
    depth_guard guard(*this);
    const token& t = cur();
    if (t.type == tok::name) {
      next();
      if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
        auto e = node(expr_kind::literal, t.line);
        e->literal = value(t.text == "true" || t.text == "True");
        return e;
      }
      if (t.text == "none" || t.text == "None") {
        auto e = node(expr_kind::literal, t.line);
        e->literal = value::none();
        return e;
      }
      auto e = node(expr_kind::name, t.line);
      e->name = t.text;
      e->name_id = intern(t.text);
      if (e->name_id == id_caller || e->name_id == id_varargs || e->name_id == id_kwargs) {
        for (stmt* m : macros_) {
          if (e->name_id == id_caller) m->uses_caller = true;
          if (e->name_id == id_varargs) m->catch_varargs = true;
          if (e->name_id == id_kwargs) m->catch_kwargs = true;
        }
      }
      return e;
    }
    if (t.type == tok::string) {
      auto e = node(expr_kind::literal, t.line);
      std::string s;
      while (cur().type == tok::string) s += next().text;  // adjacent literals concatenate
      e->literal = value(std::move(s));
      return e;
    }
    if (t.type == tok::integer || t.type == tok::floating) {
      next();
      auto e = node(expr_kind::literal, t.line);
      e->literal = t.type == tok::integer ? value(t.int_value) : value(t.float_value);
      return e;
    }
    if (is_op("(")) {
      next();
      expr_ptr e = parse_tuple(false, true, {}, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) return parse_list();
    if (is_op("{")) return parse_dict();
    if (t.type == tok::eof || t.type == tok::var_end || t.type == tok::block_end)
      fail_here("unexpected '" + describe(t) + "', expected an expression");
    fail_here("unexpected '" + describe(t) + "'");
  }

  bool tuple_end(std::initializer_list<std::string_view> extra_end) const {
    if (cur().type == tok::var_end || cur().type == tok::block_end || is_op(")") || cur().type == tok::eof) return true;
    if (cur().type == tok::name)
      for (auto e : extra_end)
        if (cur().text == e) return true;
    return false;
  }

  expr_ptr parse_tuple(bool /*simplified*/, bool with_condexpr, std::initializer_list<std::string_view> extra_end,
                       bool explicit_parens) {
    int line = cur().line;
    std::vector<expr_ptr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (tuple_end(extra_end)) break;
      items.push_back(parse_expression(with_condexpr));
      if (is_op(",")) is_tuple = true;
      else break;
      line = cur().line;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) fail_here("expected an expression, got '" + describe(cur()) + "'");
    }
    auto e = node(expr_kind::tuple, line);
    e->args = std::move(items);
    return e;
  }

  expr_ptr parse_list() {
    auto e = node(expr_kind::list, next().line);
    while (!is_op("]")) {
      if (!e->args.empty()) expect_op(",");
      if (is_op("]")) break;
      e->args.push_back(parse_expression(true));
    }
    expect_op("]");
    return e;
  }

  expr_ptr parse_dict() {
    auto e = node(expr_kind::dict, next().line);
    while (!is_op("}")) {
      if (!e->args.empty()) expect_op(",");
      if (is_op("}")) break;
      e->args.push_back(parse_expression(true));
      expect_op(":");
      e->args.push_back(parse_expression(true));
    }
    expect_op("}");
    return e;
  }

  expr_ptr parse_postfix(expr_ptr e) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  expr_ptr parse_filter_expr(expr_ptr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filter_chain(std::move(e), false);
      } else if (is_name("is")) {
        e = parse_test(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  expr_ptr parse_subscript(expr_ptr obj) {
    depth_guard guard(*this);
    const token& t = next();
    if (t.text == ".") {
      const token& a = next();
      if (a.type == tok::name) {
        auto e = node(expr_kind::getattr, t.line);
        e->name = a.text;
        e->args.push_back(std::move(obj));
        return e;
      }
      if (a.type != tok::integer) fail("expected name or number", a.line ? a.line : t.line);
      auto e = node(expr_kind::getitem, t.line);
      auto idx = node(expr_kind::literal, a.line);
      idx->literal = value(a.int_value);
      e->args.push_back(std::move(obj));
      e->args.push_back(std::move(idx));
      return e;
    }
    std::vector<expr_ptr> items;
    while (!is_op("]")) {
      if (!items.empty()) expect_op(",");
      items.push_back(parse_subscribed());
    }
    expect_op("]");
    auto e = node(expr_kind::getitem, t.line);
    e->args.push_back(std::move(obj));
    if (items.size() == 1) {
      e->args.push_back(std::move(items[0]));
    } else {
      auto tup = node(expr_kind::tuple, t.line);
      tup->args = std::move(items);
      e->args.push_back(std::move(tup));
    }
    return e;
  }

  expr_ptr parse_subscribed() {
    int line = cur().line;
    std::vector<expr_ptr> parts;
    if (is_op(":")) {
      next();
      parts.push_back(nullptr);
    } else {
      expr_ptr e = parse_expression(true);
      if (!is_op(":")) return e;
      next();
      parts.push_back(std::move(e));
    }
    if (is_op(":")) parts.push_back(nullptr);
    else if (!is_op("]") && !is_op(",")) parts.push_back(parse_expression(true));
    else parts.push_back(nullptr);
    if (is_op(":")) {
      next();
      if (!is_op("]") && !is_op(",")) parts.push_back(parse_expression(true));
      else parts.push_back(nullptr);
    } else {
      parts.push_back(nullptr);
    }
    auto s = node(expr_kind::slice, line);
    s->args = std::move(parts);
    return s;
  }

  void parse_call_args(expr& e) {
    const int line = cur().line;
    expect_op("(");
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) fail("invalid syntax for function call expression", line);
    };
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*")) {
        ensure(!e.dyn_args && !e.dyn_kwargs);
        next();
        e.dyn_args = parse_expression(true);
      } else if (is_op("**")) {
        ensure(!e.dyn_kwargs);
        next();
        e.dyn_kwargs = parse_expression(true);
      } else if (cur().type == tok::name && look().type == tok::op && look().text == "=") {
        ensure(!e.dyn_kwargs);
        std::string key = next().text;
        next();
        e.kwargs.push_back(keyword_arg{std::move(key), parse_expression(true)});
      } else {
        ensure(!e.dyn_args && !e.dyn_kwargs && e.kwargs.empty());
        e.args.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
  }

  expr_ptr parse_call(expr_ptr callee) {
    depth_guard guard(*this);
    auto e = node(expr_kind::call, cur().line);
    e->args.push_back(std::move(callee));
    parse_call_args(*e);
    return e;
  }

  std::string dotted_name() {
    std::string n = expect_name().text;
    while (skip_op(".")) n += "." + expect_name().text;
    return n;
  }

  expr_ptr parse_filter_chain(expr_ptr input, bool start_inline) {
    while (is_op("|") || start_inline) {
      depth_guard guard(*this);
      if (!start_inline) next();
      start_inline = false;
      int line = cur().line;
      auto e = node(expr_kind::filter, line);
      e->name = dotted_name();
      e->args.push_back(std::move(input));
      if (is_op("(")) parse_call_args(*e);
      input = std::move(e);
    }
    return input;
  }

  expr_ptr parse_test(expr_ptr input) {
    depth_guard guard(*this);
    const int line = next().line;
    const bool negated = skip_name("not");
    auto e = node(expr_kind::test, line);
    e->name = dotted_name();
    e->args.push_back(std::move(input));
    const token& t = cur();
    if (is_op("(")) {
      parse_call_args(*e);
    } else if ((t.type == tok::name || t.type == tok::string || t.type == tok::integer || t.type == tok::floating ||
                is_op("[") || is_op("{")) &&
               !(t.type == tok::name && (t.text == "else" || t.text == "or" || t.text == "and"))) {
      if (is_name("is")) fail_here("You cannot chain multiple tests with is");
      e->args.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return e;
    auto n = node(expr_kind::not_, line);
    n->args.push_back(std::move(e));
    return n;
  }

  std::vector<token> toks_;
  size_t i_ = 0;
  program& prog_;
  std::unordered_map<std::string, int> ids_;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<stmt*> macros_;
};

// Looks up filters and tests. jinja2 fails at compile time on an unknown one, except inside an
// if-block or inline if ("soft" frames), where it fails only when the expression runs.
class resolver {
 public:
  void body(stmt_list& b, bool soft) {
    for (auto& s : b) statement(*s, soft);
  }

 private:
  void statement(stmt& s, bool soft) {
    switch (s.kind) {
      case stmt_kind::output:
      case stmt_kind::set:
        for (auto& e : s.exprs) expression(e.get(), soft);
        break;
      case stmt_kind::if_:
        for (auto& br : s.branches) {
          expression(br.test.get(), true);
          body(br.body, true);
        }
        body(s.else_body, true);
        break;
      case stmt_kind::for_:
        for (auto& e : s.exprs) expression(e.get(), soft);
        expression(s.loop_filter.get(), false);
        body(s.body, false);
        body(s.else_body, false);
        break;
      case stmt_kind::set_block:
      case stmt_kind::filter_block:
        expression(s.filter.get(), false);
        body(s.body, false);
        break;
      case stmt_kind::macro:
        for (auto& d : s.defaults) expression(d.get(), false);
        body(s.body, false);
        break;
      case stmt_kind::call_block:
        expression(s.filter.get(), soft);
        for (auto& d : s.defaults) expression(d.get(), false);
        body(s.body, false);
        break;
      case stmt_kind::with:
        for (auto& e : s.exprs) expression(e.get(), soft);
        body(s.body, false);
        break;
      case stmt_kind::scope: body(s.body, false); break;
      default: break;
    }
  }

  void expression(expr* e, bool soft) {
    if (!e) return;
    if (e->kind == expr_kind::cond) soft = true;
    if (e->kind == expr_kind::filter) {
      e->filter = find_filter(e->name);
      if (!e->filter && !soft) {
        fail(std::string(jinja2_has_filter(e->name) ? "unsupported" : "unknown") + " filter '" + e->name + "'",
             e->line);
      }
    } else if (e->kind == expr_kind::test) {
      e->test = find_test(e->name);
      if (!e->test && !soft) {
        fail(std::string(jinja2_has_test(e->name) ? "unsupported" : "unknown") + " test '" + e->name + "'", e->line);
      }
    }
    for (auto& a : e->args) expression(a.get(), soft);
    for (auto& k : e->kwargs) expression(k.value.get(), soft);
    expression(e->dyn_args.get(), soft);
    expression(e->dyn_kwargs.get(), soft);
  }
};

// jinja2's optimizer folds every expression it can evaluate without variables into a
// constant, and the code generator turns constant output into text. Folding is observable:
// a folded slice goes through jinja2's lenient getitem. So troupe folds the same expressions.
class folder {
 public:
  explicit folder(const program& prog) : prog_(prog) {}

  void body(stmt_list& b) {
    for (auto& s : b) statement(*s);
  }

 private:
  void statement(stmt& s) {
    for (auto& e : s.exprs) fold(e);
    for (auto& br : s.branches) {
      fold(br.test);
      body(br.body);
    }
    fold(s.loop_filter);
    fold(s.filter);
    for (auto& d : s.defaults) fold(d);
    body(s.body);
    body(s.else_body);
    if (s.kind == stmt_kind::output) {
      // Output that is constant as a whole is rendered now, whatever its value (str of it).
      for (auto& e : s.exprs) {
        if (e->kind == expr_kind::literal || !maybe_constant(*e)) continue;
        if (auto v = fold_constant(prog_, *e)) {
          e->kind = expr_kind::literal;
          e->literal = value(to_str(*v));
          e->args.clear();
          e->kwargs.clear();
        }
      }
    }
  }

  // Whether jinja2's as_const could succeed: no variable, call or template-context filter on
  // the operands always evaluated (and/or/if and comparisons short-circuit).
  static bool maybe_constant(const expr& e) {
    switch (e.kind) {
      case expr_kind::literal: return true;
      case expr_kind::name:
      case expr_kind::call:
      case expr_kind::block_input:
      case expr_kind::slice: return false;
      case expr_kind::and_:
      case expr_kind::or_:
      case expr_kind::compare: return maybe_constant(*e.args[0]);
      case expr_kind::cond: return maybe_constant(*e.args[1]);
      case expr_kind::filter:
        if (!e.filter) return false;
        for (const char* f : {"map", "select", "reject", "selectattr", "rejectattr"})
          if (e.name == f) return false;
        break;
      case expr_kind::test:
        if (!e.test) return false;
        break;
      case expr_kind::getitem:
        if (e.args[1]->kind == expr_kind::slice) {
          if (!maybe_constant(*e.args[0])) return false;
          for (const auto& p : e.args[1]->args)
            if (p && !maybe_constant(*p)) return false;
          return true;
        }
        break;
      default: break;
    }
    for (const auto& a : e.args)
      if (a && !maybe_constant(*a)) return false;
    for (const auto& k : e.kwargs)
      if (!maybe_constant(*k.value)) return false;
    if (e.dyn_args && !maybe_constant(*e.dyn_args)) return false;
    if (e.dyn_kwargs && !maybe_constant(*e.dyn_kwargs)) return false;
    return true;
  }

  void fold(expr_ptr& e) {
    if (!e || e->kind == expr_kind::literal || e->kind == expr_kind::slice) {
      if (e && e->kind == expr_kind::slice)
        for (auto& p : e->args) fold(p);
      return;
    }
    if (maybe_constant(*e)) {
      auto v = fold_constant(prog_, *e);
      if (v && has_safe_repr(*v)) {
        auto lit = std::make_unique<expr>();
        lit->kind = expr_kind::literal;
        lit->line = e->line;
        lit->literal = std::move(*v);
        lit->fresh_copy = contains_list(lit->literal);
        e = std::move(lit);
        return;
      }
    }
    for (auto& a : e->args) fold(a);
    for (auto& k : e->kwargs) fold(k.value);
    fold(e->dyn_args);
    fold(e->dyn_kwargs);
  }

  const program& prog_;
};

}  // namespace

program parse_program(std::string_view source) {
  program prog;
  parser p(tokenize(source), prog);
  prog.root = p.parse_template();
  resolver().body(prog.root, false);
  folder(prog).body(prog.root);
  return prog;
}

}  // namespace troupe::jinja
