// Proves the byte matcher: literals, alternatives that share a prefix, counted repetition,
// numbers whose bounds hold exactly (against a brute-force reference over every short string),
// marks that go back exactly, and the grammar checks that refuse loops.
#include "runtime/structured/grammar.hpp"

#include <cmath>
#include <cstdlib>
#include <functional>
#include <string>

#include <gtest/gtest.h>

namespace troupe::structured {
namespace {

bool matches(const grammar& g, std::string_view text) {
  matcher m(g);
  return m.advance(text) && m.can_end();
}

TEST(grammar, literal_alternatives_that_share_a_prefix) {
  grammar g;
  const uint32_t r = g.declare_rule("r");
  std::vector<element> a, b;
  g.append_literal(a, "true");
  g.append_literal(b, "trie");
  g.add_alternative(r, a);
  g.add_alternative(r, b);
  g.set_root(r);
  ASSERT_FALSE(g.check());
  EXPECT_TRUE(matches(g, "true"));
  EXPECT_TRUE(matches(g, "trie"));
  EXPECT_FALSE(matches(g, "tru"));
  EXPECT_FALSE(matches(g, "truee"));
  matcher m(g);
  EXPECT_TRUE(m.advance("tr"));
  EXPECT_EQ(m.n_stacks(), 2u);
  EXPECT_TRUE(m.advance("u"));
  EXPECT_EQ(m.n_stacks(), 1u);
  EXPECT_FALSE(m.advance("x"));  // refused, and nothing changed
  EXPECT_TRUE(m.advance("e"));
  EXPECT_TRUE(m.terminated());
}

TEST(grammar, counted_repetition_holds_its_bounds) {
  grammar g;
  const uint32_t a = g.literal_rule("a");
  const uint32_t r = g.declare_rule("r");
  std::vector<element> seq{g.repeat(a, 2, 4)};
  g.append_literal(seq, ";");
  g.add_alternative(r, seq);
  g.set_root(r);
  for (int n = 0; n <= 6; ++n) EXPECT_EQ(matches(g, std::string(n, 'a') + ";"), n >= 2 && n <= 4) << n;
}

TEST(grammar, check_refuses_empty_loops_and_left_recursion) {
  grammar g;
  const uint32_t empty = g.declare_rule("empty");
  g.add_alternative(empty, {});
  const uint32_t r = g.declare_rule("r");
  g.add_alternative(r, {g.repeat(empty, 0, k_unbounded)});
  g.set_root(r);
  ASSERT_TRUE(g.check());
  EXPECT_NE(g.check()->find("can match nothing"), std::string::npos);

  grammar h;
  const uint32_t x = h.declare_rule("x");
  std::vector<element> seq{h.ref(x)};
  h.append_literal(seq, "a");
  h.add_alternative(x, seq);
  h.set_root(x);
  ASSERT_TRUE(h.check());
  EXPECT_NE(h.check()->find("left-recursive"), std::string::npos);
}

TEST(grammar, marks_go_back_exactly) {
  grammar g;
  const uint32_t a = g.literal_rule("ab");
  const uint32_t r = g.declare_rule("r");
  g.add_alternative(r, {g.repeat(a, 0, k_unbounded)});
  g.set_root(r);
  matcher m(g);
  std::string k0, k1;
  m.state_key(k0);
  const auto mk = m.save();
  ASSERT_TRUE(m.advance("aba"));
  m.state_key(k1);
  EXPECT_NE(k0, k1);
  m.restore(mk);
  m.state_key(k1);
  EXPECT_EQ(k0, k1);
  EXPECT_EQ(m.n_bytes(), 0u);
  // An unbounded repetition's state does not grow with its count: it repeats.
  ASSERT_TRUE(m.advance("ab"));
  m.state_key(k0);
  ASSERT_TRUE(m.advance("abab"));
  m.state_key(k1);
  EXPECT_EQ(k0, k1);
  m.drop(mk);
}

// ---- numbers: the matcher's verdict on every short string against a direct definition

bool is_json_number(const std::string& s, bool integer) {
  size_t i = 0;
  if (i < s.size() && s[i] == '-') ++i;
  if (i >= s.size()) return false;
  if (s[i] == '0') ++i;
  else if (s[i] >= '1' && s[i] <= '9') while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) ++i;
  else return false;
  if (i < s.size() && s[i] == '.') {
    if (integer) return false;
    ++i;
    const size_t f = i;
    while (i < s.size() && isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == f) return false;
  }
  return i == s.size();
}

bool in_bounds(double v, const number_spec& s) {
  if (s.min && (s.min_exclusive ? !(v > *s.min) : !(v >= *s.min))) return false;
  if (s.max && (s.max_exclusive ? !(v < *s.max) : !(v <= *s.max))) return false;
  return true;
}

TEST(grammar, bounded_numbers_are_exact_on_every_short_string) {
  const std::string alphabet = "-0123456789.";
  std::vector<number_spec> specs;
  auto spec = [](bool integer, std::optional<double> lo, std::optional<double> hi, bool lo_x = false, bool hi_x = false) {
    number_spec s;
    s.integer = integer;
    s.min = lo;
    s.max = hi;
    s.min_exclusive = lo_x;
    s.max_exclusive = hi_x;
    return s;
  };
  specs.push_back(spec(true, 0, 100));
  specs.push_back(spec(true, -5, 12));
  specs.push_back(spec(true, 3, std::nullopt));
  specs.push_back(spec(true, std::nullopt, -7));
  specs.push_back(spec(false, 0, 1));
  specs.push_back(spec(false, 0.25, 0.5, true, false));
  specs.push_back(spec(false, -1.5, 2.5, false, true));
  specs.push_back(spec(false, 10, 10));
  specs.push_back(spec(true, 0.5, 3.5));
  for (const number_spec& s : specs) {
    // Every string of up to 5 characters: complete exactly when it is a number in bounds.
    std::vector<std::string> complete;
    std::function<void(std::string)> walk = [&](std::string p) {
      const number_check c = check_number(p, s);
      const bool want = is_json_number(p, s.integer) && in_bounds(std::strtod(p.c_str(), nullptr), s);
      EXPECT_EQ(c.complete, want) << "'" << p << "' integer=" << s.integer;
      if (want) complete.push_back(p);
      if (p.size() < 5)
        for (char ch : alphabet) walk(p + ch);
    };
    walk("");
    // Every prefix of a complete number within bounds is viable (no dead ends before it) ...
    for (const std::string& c : complete)
      for (size_t k = 0; k <= c.size(); ++k) EXPECT_TRUE(check_number(c.substr(0, k), s).viable) << c.substr(0, k);
    // ... and from every viable prefix some completion is reachable (no viable dead end),
    // searched up to 8 more characters.
    std::function<bool(std::string, int)> reaches = [&](std::string p, int budget) {
      if (check_number(p, s).complete) return true;
      if (budget == 0) return false;
      for (char ch : alphabet)
        if (check_number(p + ch, s).viable && reaches(p + ch, budget - 1)) return true;
      return false;
    };
    std::function<void(std::string)> viable_walk = [&](std::string p) {
      if (!check_number(p, s).viable) return;
      EXPECT_TRUE(reaches(p, 8)) << "dead end at '" << p << "'";
      if (p.size() < 4)
        for (char ch : alphabet) viable_walk(p + ch);
    };
    viable_walk("");
  }
}

TEST(grammar, numbers_near_the_length_limit_never_reach_a_dead_end) {
  // Zeros after "0." are viable under exclusiveMinimum 0 only while a nonzero digit still fits.
  number_spec s;
  s.min = 0;
  s.min_exclusive = true;
  s.max = 1;
  std::string p = "0.";
  while (check_number(p + "0", s).viable) p += "0";
  EXPECT_LE(p.size(), 32u);
  EXPECT_TRUE(check_number(p + "1", s).complete) << p;
  EXPECT_FALSE(check_number(p + "0", s).viable);
}

TEST(grammar, unbounded_numbers_take_exponents_and_no_leading_zeros) {
  const number_spec any;
  for (const char* ok : {"0", "-0", "12", "1.5", "-0.25", "1e10", "1E-3", "2.5e+7"})
    EXPECT_TRUE(check_number(ok, any).complete) << ok;
  for (const char* bad : {"01", "1.", ".5", "-", "1e", "+1", "--1", "1.2.3", "0x1"})
    EXPECT_FALSE(check_number(bad, any).complete) << bad;
  EXPECT_FALSE(check_number("01", any).viable);
  EXPECT_FALSE(check_number(std::string(40, '1'), any).viable);  // numbers are bounded in length
}

}  // namespace
}  // namespace troupe::structured
