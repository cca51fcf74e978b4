#include "runtime/structured/grammar.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>

#include <fmt/format.h>

namespace troupe::structured {

// ---- building ------------------------------------------------------------------------------

uint32_t grammar::declare_rule(std::string name) {
  rules_.push_back({std::move(name), {}});
  return static_cast<uint32_t>(rules_.size() - 1);
}

void grammar::add_alternative(uint32_t rule, const std::vector<element>& seq) {
  rules_[rule].alts.push_back(static_cast<uint32_t>(elems_.size()));
  elems_.insert(elems_.end(), seq.begin(), seq.end());
  elems_.push_back({elem_kind::end, 0, 0, 0});
}

element grammar::bytes(const byte_set& s) {
  // Grammars reuse a few sets (a digit, a string character) many times.
  for (size_t i = 0; i < sets_.size(); ++i)
    if (sets_[i] == s) return {elem_kind::bytes, static_cast<uint32_t>(i), 0, 0};
  sets_.push_back(s);
  return {elem_kind::bytes, static_cast<uint32_t>(sets_.size() - 1), 0, 0};
}

element grammar::number(const number_spec& spec) {
  numbers_.push_back(spec);
  return {elem_kind::number, static_cast<uint32_t>(numbers_.size() - 1), 0, 0};
}

void grammar::append_literal(std::vector<element>& seq, std::string_view text) {
  for (char c : text) seq.push_back(bytes(byte_set{}.add(static_cast<uint8_t>(c))));
}

uint32_t grammar::literal_rule(std::string_view text) {
  const uint32_t r = declare_rule(fmt::format("literal {}", text.substr(0, 32)));
  std::vector<element> seq;
  append_literal(seq, text);
  add_alternative(r, seq);
  return r;
}

std::optional<std::string> grammar::check() const {
  if (rules_.empty()) return "the grammar has no rules";
  for (const auto& r : rules_)
    if (r.alts.empty()) return fmt::format("rule '{}' has no alternatives", r.name);
  // Which rules can match the empty string (to a fixed point).
  std::vector<char> nullable(rules_.size(), 0);
  auto elem_nullable = [&](const element& e) {
    switch (e.kind) {
      case elem_kind::bytes:
      case elem_kind::number: return false;
      case elem_kind::rule: return nullable[e.arg] != 0;
      case elem_kind::repeat: return e.min == 0 || nullable[e.arg] != 0;
      case elem_kind::end: return true;
    }
    return false;
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < rules_.size(); ++r) {
      if (nullable[r]) continue;
      for (uint32_t a : rules_[r].alts) {
        uint32_t p = a;
        while (elems_[p].kind != elem_kind::end && elem_nullable(elems_[p])) ++p;
        if (elems_[p].kind == elem_kind::end) {
          nullable[r] = 1;
          changed = true;
          break;
        }
      }
    }
  }
  // A repetition of something that may be empty could loop without reading a byte, and a
  // rule reached from itself before any byte is read (left recursion) would expand forever.
  std::vector<std::vector<uint32_t>> left(rules_.size());  // rules entered before a byte is read
  for (size_t r = 0; r < rules_.size(); ++r)
    for (uint32_t a : rules_[r].alts)
      for (uint32_t p = a; elems_[p].kind != elem_kind::end; ++p) {
        const element& e = elems_[p];
        if (e.kind == elem_kind::repeat && nullable[e.arg])
          return fmt::format("rule '{}' repeats '{}', which can match nothing", rules_[r].name, rules_[e.arg].name);
        if (e.kind == elem_kind::rule || e.kind == elem_kind::repeat) left[r].push_back(e.arg);
        if (!elem_nullable(e)) break;
      }
  std::vector<char> color(rules_.size(), 0);  // 0 new, 1 on the path, 2 done
  std::optional<std::string> cycle;
  std::function<void(uint32_t)> visit = [&](uint32_t r) {
    color[r] = 1;
    for (uint32_t n : left[r]) {
      if (cycle) return;
      if (color[n] == 1) cycle = fmt::format("rule '{}' is left-recursive", rules_[n].name);
      else if (color[n] == 0) visit(n);
    }
    color[r] = 2;
  };
  for (uint32_t r = 0; r < rules_.size() && !cycle; ++r)
    if (color[r] == 0) visit(r);
  return cycle;
}

// ---- numbers -------------------------------------------------------------------------------

namespace {

constexpr size_t k_max_number_bytes = 32;
constexpr int k_max_integer_digits = 19;

// A closed-open or closed interval of reals, and whether bounds admit some value in it.
struct bounds_view {
  double lo = -INFINITY, hi = INFINITY;
  bool lo_open = false, hi_open = false;
  bool integer = false;
};

bounds_view view_of(const number_spec& s) {
  bounds_view b;
  b.integer = s.integer;
  if (s.min) { b.lo = *s.min; b.lo_open = s.min_exclusive; }
  if (s.max) { b.hi = *s.max; b.hi_open = s.max_exclusive; }
  if (b.integer) {  // the integers the bounds admit, as closed bounds
    if (std::isfinite(b.lo)) b.lo = b.lo_open ? std::floor(b.lo) + 1 : std::ceil(b.lo);
    if (std::isfinite(b.hi)) b.hi = b.hi_open ? std::ceil(b.hi) - 1 : std::floor(b.hi);
    b.lo_open = b.hi_open = false;
  }
  return b;
}

bool admits(const bounds_view& b, double v) {
  if (b.lo_open ? !(v > b.lo) : !(v >= b.lo)) return false;
  if (b.hi_open ? !(v < b.hi) : !(v <= b.hi)) return false;
  return true;
}

// Some value of [a, b] (closed: a single point when a == b) or [a, b) (open_b) is admitted.
bool meets(const bounds_view& bv, double a, double b, bool open_b) {
  if (bv.integer) {
    // The integers of the interval.
    double ia = std::ceil(a), ib = open_b ? std::ceil(b) - 1 : std::floor(b);
    ia = std::max(ia, bv.lo);
    ib = std::min(ib, bv.hi);
    return ia <= ib;
  }
  const double l = std::max(a, bv.lo), h = std::min(b, bv.hi);
  if (l < h) return true;
  if (l > h) return false;
  // One point left: it must be inside both.
  if (open_b && l >= b) return false;
  return admits(bv, l) && l >= a && l <= b;
}

}  // namespace

namespace {
number_check check_number_within(std::string_view p, const number_spec& spec);
}  // namespace

// Near the length limit, a prefix the bounds admit may have no completion short enough (say
// "0.000..." under exclusiveMinimum 0): there it is viable only if one is found, so that the
// matcher never walks into a state that no byte can leave.
number_check check_number(std::string_view p, const number_spec& spec) {
  number_check out = check_number_within(p, spec);
  if (!out.viable || out.complete || p.size() + 2 < k_max_number_bytes) return out;
  static constexpr std::string_view k_chars = "0123456789.-+eE";
  std::string q(p);
  bool found = false;
  for (char a : k_chars) {
    q.push_back(a);
    const number_check c1 = check_number_within(q, spec);
    found = c1.complete;
    if (c1.viable && !found && q.size() < k_max_number_bytes)
      for (char b : k_chars) {
        q.push_back(b);
        found = check_number_within(q, spec).complete;
        q.pop_back();
        if (found) break;
      }
    q.pop_back();
    if (found) break;
  }
  out.viable = found;
  return out;
}

namespace {

number_check check_number_within(std::string_view p, const number_spec& spec) {
  number_check out;
  if (p.size() > k_max_number_bytes) return out;
  const bool bounded = spec.min || spec.max;
  // Syntax: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  size_t i = 0;
  const bool neg = i < p.size() && p[i] == '-';
  if (neg) ++i;
  const size_t int_start = i;
  if (i < p.size() && p[i] == '0') {
    ++i;
  } else {
    while (i < p.size() && p[i] >= '0' && p[i] <= '9') ++i;
  }
  const std::string_view int_digits = p.substr(int_start, i - int_start);
  if (int_digits.size() > static_cast<size_t>(k_max_integer_digits)) return out;
  bool has_dot = false;
  std::string_view frac;
  if (i < p.size() && p[i] == '.') {
    if (spec.integer || int_digits.empty()) return out;
    has_dot = true;
    const size_t f0 = ++i;
    while (i < p.size() && p[i] >= '0' && p[i] <= '9') ++i;
    frac = p.substr(f0, i - f0);
  }
  if (i < p.size() && (p[i] == 'e' || p[i] == 'E')) {
    if (spec.integer || bounded || int_digits.empty() || (has_dot && frac.empty())) return out;
    ++i;
    if (i < p.size() && (p[i] == '+' || p[i] == '-')) ++i;
    const size_t e0 = i;
    while (i < p.size() && p[i] >= '0' && p[i] <= '9') ++i;
    if (i == e0) {
      if (i != p.size()) return out;
      out.viable = true;  // "1e" or "1e-": digits still to come
      return out;
    }
    if (i != p.size()) return out;
    out.viable = out.complete = true;
    return out;
  }
  if (i != p.size()) return out;  // a character that cannot be there
  const bool syntax_complete = !int_digits.empty() && (!has_dot || !frac.empty());
  if (!bounded) {
    out.viable = true;
    out.complete = syntax_complete;
    return out;
  }
  const bounds_view bv = view_of(spec);
  const double sign = neg ? -1.0 : 1.0;
  // The magnitudes the completions of p can take, as intervals; each is mapped by the sign.
  auto meets_mag = [&](double a, double b, bool open_b) {
    if (!neg) return meets(bv, a, b, open_b);
    // -(a..b) = (-b..-a]: for integers the bounds stay closed on integer values.
    if (bv.integer) return meets(bv, -(open_b ? std::nextafter(b, a) : b), -a, false);
    const double l = -b, h = -a;  // values (l, h] when open_b, else [l, h]
    if (!open_b) return meets(bv, l, h, false);
    // (l, h]: the open lower end is excluded; nudge it.
    return meets(bv, std::nextafter(l, h), h, false);
  };
  if (int_digits.empty()) {
    // "" or "-": any magnitude.
    out.viable = neg ? meets(bv, -INFINITY, 0, false) : meets(bv, -INFINITY, INFINITY, false);
    return out;
  }
  const double I = std::strtod(std::string(int_digits).c_str(), nullptr);
  if (has_dot) {
    const std::string lit = fmt::format("{}.{}", int_digits, frac.empty() ? "0" : frac);
    const double lo = std::strtod(lit.c_str(), nullptr);
    const double w = std::pow(10.0, -static_cast<double>(frac.size()));
    out.viable = meets_mag(lo, lo + w, true);
    if (!frac.empty()) out.complete = admits(bv, sign * lo);
    return out;
  }
  // In the integer part: the integer itself, more integer digits, or (numbers) a fraction.
  out.complete = admits(bv, sign * I);
  if (int_digits == "0") {
    out.viable = spec.integer ? out.complete : meets_mag(0, 1, true);
    return out;
  }
  const int room = k_max_integer_digits - static_cast<int>(int_digits.size());
  for (int k = 0; k <= room && !out.viable; ++k) {
    const double scale = std::pow(10.0, k);  // k more digits (numbers: and any fraction)
    out.viable = meets_mag(I * scale, (I + 1) * scale, true);
  }
  out.viable = out.viable || out.complete;
  return out;
}

}  // namespace

// ---- matching ------------------------------------------------------------------------------

namespace {

uint64_t mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  h *= 0xbf58476d1ce4e5b9ULL;
  return h ^ (h >> 31);
}

constexpr int k_max_expand_depth = 4096;

}  // namespace

matcher::matcher(const grammar& g) : g_(g) {
  nodes_.reserve(256);
  for (uint32_t a : g_.alternatives(g_.root())) expand(a, 0, k_none, cur_, 0);
}

uint32_t matcher::push_node(uint32_t pos, uint32_t count, uint32_t aux, uint32_t parent) {
  const uint64_t ph = parent == k_none ? 0x1234567ULL : nodes_[parent].hash;
  nodes_.push_back({pos, count, aux, parent, mix(mix(ph, pos), count)});
  return static_cast<uint32_t>(nodes_.size() - 1);
}

bool matcher::same_stack(uint32_t a, uint32_t b) const {
  if (nodes_[a].aux != nodes_[b].aux) return false;
  while (a != k_none && b != k_none) {
    if (a == b) return true;
    const node &x = nodes_[a], &y = nodes_[b];
    if (x.hash != y.hash || x.pos != y.pos || x.count != y.count) return false;
    a = x.parent;
    b = y.parent;
  }
  return a == b;
}

void matcher::add_top(state& s, uint32_t n) {
  for (uint32_t t : s.tops)
    if (same_stack(t, n)) return;
  s.tops.push_back(n);
}

void matcher::expand(uint32_t pos, uint32_t count, uint32_t parent, state& s, int depth) {
  if (depth > k_max_expand_depth) return;  // check() rules out the grammars that get here
  const element& e = g_.elem(pos);
  switch (e.kind) {
    case elem_kind::end:
      if (parent == k_none) {
        s.complete = true;
      } else {
        const node n = nodes_[parent];
        expand(n.pos, n.count, n.parent, s, depth + 1);
      }
      return;
    case elem_kind::bytes:
    case elem_kind::number:
      add_top(s, push_node(pos, 0, static_cast<uint32_t>(out_.size()), parent));
      return;
    case elem_kind::rule: {
      // A reference in tail position returns straight to the parent.
      const uint32_t cont = g_.elem(pos + 1).kind == elem_kind::end ? parent : push_node(pos + 1, 0, 0, parent);
      for (uint32_t a : g_.alternatives(e.arg)) expand(a, 0, cont, s, depth + 1);
      return;
    }
    case elem_kind::repeat: {
      if (count < e.max) {
        // Past min, an unbounded repetition's count no longer matters: equal states stay equal.
        const uint32_t next = e.max == k_unbounded ? std::min(count + 1, e.min) : count + 1;
        const uint32_t cont = push_node(pos, next, 0, parent);
        for (uint32_t a : g_.alternatives(e.arg)) expand(a, 0, cont, s, depth + 1);
      }
      if (count >= e.min) expand(pos + 1, 0, parent, s, depth + 1);
      return;
    }
  }
}

bool matcher::advance(uint8_t b) {
  const size_t n_nodes = nodes_.size();
  out_.push_back(static_cast<char>(b));
  next_.tops.clear();
  next_.complete = false;
  for (uint32_t t : cur_.tops) {
    const node n = nodes_[t];
    const element& e = g_.elem(n.pos);
    if (e.kind == elem_kind::bytes) {
      if (g_.set(e.arg).has(b)) expand(n.pos + 1, 0, n.parent, next_, 0);
    } else {
      const number_check c = check_number(std::string_view(out_).substr(n.aux), g_.number_at(e.arg));
      if (c.viable) add_top(next_, t);
      if (c.complete) expand(n.pos + 1, 0, n.parent, next_, 0);
    }
  }
  if (next_.tops.empty() && !next_.complete) {
    out_.pop_back();
    nodes_.resize(n_nodes);
    return false;
  }
  std::swap(cur_, next_);
  return true;
}

bool matcher::advance(std::string_view bytes) {
  const mark m = save();
  for (char c : bytes)
    if (!advance(static_cast<uint8_t>(c))) {
      drop(m);
      return false;
    }
  n_saved_ = m.state;  // m is not needed: the bytes were taken
  return true;
}

matcher::mark matcher::save() {
  // Assigning into a kept state reuses its buffer: token trials save after every byte.
  if (n_saved_ < saved_.size()) saved_[n_saved_] = cur_;
  else saved_.push_back(cur_);
  return {nodes_.size(), out_.size(), n_saved_++};
}

void matcher::restore(const mark& m) {
  cur_ = saved_[m.state];
  n_saved_ = m.state + 1;
  nodes_.resize(m.n_nodes);
  out_.resize(m.n_bytes);
}

void matcher::drop(const mark& m) {
  restore(m);
  n_saved_ = m.state;
}

void matcher::state_key(std::string& out, uint32_t horizon) const {
  out.clear();
  out.push_back(cur_.complete ? 'C' : 'c');
  std::vector<uint32_t> tops = cur_.tops;
  std::sort(tops.begin(), tops.end(), [&](uint32_t a, uint32_t b) { return nodes_[a].hash < nodes_[b].hash; });
  auto put = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), sizeof v); };
  for (uint32_t t : tops) {
    out.push_back('|');
    if (g_.elem(nodes_[t].pos).kind == elem_kind::number) {
      const std::string_view text = std::string_view(out_).substr(nodes_[t].aux);
      put(static_cast<uint32_t>(text.size()));
      out.append(text);
    }
    for (uint32_t n = t; n != k_none; n = nodes_[n].parent) {
      const node& x = nodes_[n];
      put(x.pos);
      const element& e = g_.elem(x.pos);
      if (e.kind == elem_kind::repeat) {
        // Every repetition reads at least a byte (check() makes sure), so within the horizon
        // only the first `horizon` more of them can happen.
        put(e.min > x.count ? std::min(e.min - x.count, horizon) : 0);
        put(e.max == k_unbounded ? k_unbounded : std::min(e.max - x.count, horizon));
      } else {
        put(x.count);
      }
    }
  }
}

}  // namespace troupe::structured
