// grammar: a context-free grammar over bytes, the one form that every output constraint
// (a JSON Schema, json_object, a tool-call format) compiles to, and the matcher that runs it.
//
// A grammar is a set of rules; a rule is a list of alternatives; an alternative is a sequence
// of elements: a byte class, a reference to a rule, a counted repetition of a rule
// ({min,max}, so that maxLength 500 is one element and not 500 nested rules), or a JSON
// number with bounds (checked on its digits as they come, so that minimum / maximum hold
// exactly without spelling digit ranges out as rules).
//
// The matcher is a nondeterministic pushdown automaton: its state is a set of stacks
// (alternatives that share a prefix, such as anyOf branches or optional properties, live
// side by side until a byte tells them apart). Stack frames live in an arena as a tree with
// shared tails, so advancing by a byte costs a few frames, and the token mask (token_mask.hpp)
// can try thousands of tokens by pushing and popping the arena like a stack.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::structured {

struct byte_set {
  std::array<uint64_t, 4> bits{};
  bool has(uint8_t b) const { return (bits[b >> 6] >> (b & 63)) & 1; }
  byte_set& add(uint8_t b) { bits[b >> 6] |= uint64_t{1} << (b & 63); return *this; }
  byte_set& add(uint8_t lo, uint8_t hi) {
    for (unsigned b = lo; b <= hi; ++b) add(static_cast<uint8_t>(b));
    return *this;
  }
  bool operator==(const byte_set&) const = default;
};

// Bounds on a JSON number; the number is written as JSON writes it (no leading zeros, no
// "+"), with an exponent only when it has no bounds.
struct number_spec {
  bool integer = false;
  std::optional<double> min, max;
  bool min_exclusive = false, max_exclusive = false;
};

inline constexpr uint32_t k_unbounded = std::numeric_limits<uint32_t>::max();

enum class elem_kind : uint8_t { bytes, rule, repeat, number, end };

struct element {
  elem_kind kind = elem_kind::end;
  uint32_t arg = 0;  // bytes: set index; rule and repeat: rule index; number: spec index
  uint32_t min = 0;  // repeat: at least this many
  uint32_t max = 0;  // repeat: at most this many (k_unbounded: no limit)
};

class grammar {
 public:
  // Building. A rule is declared first (so that rules can refer to each other, recursively)
  // and given its alternatives after.
  uint32_t declare_rule(std::string name);
  void add_alternative(uint32_t rule, const std::vector<element>& seq);
  element bytes(const byte_set& s);
  element ref(uint32_t rule) const { return {elem_kind::rule, rule, 0, 0}; }
  element repeat(uint32_t rule, uint32_t min, uint32_t max) const { return {elem_kind::repeat, rule, min, max}; }
  element number(const number_spec& spec);
  // The bytes of text, one element each, appended to seq.
  void append_literal(std::vector<element>& seq, std::string_view text);
  // A rule matching exactly text.
  uint32_t literal_rule(std::string_view text);
  void set_root(uint32_t rule) { root_ = rule; }

  // Checks that every rule has an alternative and no repetition can loop without consuming
  // a byte; the message names the rule.
  std::optional<std::string> check() const;

  uint32_t root() const { return root_; }
  size_t n_rules() const { return rules_.size(); }
  size_t n_elements() const { return elems_.size(); }
  const element& elem(uint32_t i) const { return elems_[i]; }
  const std::vector<uint32_t>& alternatives(uint32_t rule) const { return rules_[rule].alts; }
  const std::string& rule_name(uint32_t rule) const { return rules_[rule].name; }
  const byte_set& set(uint32_t i) const { return sets_[i]; }
  const number_spec& number_at(uint32_t i) const { return numbers_[i]; }

 private:
  struct rule_def {
    std::string name;
    std::vector<uint32_t> alts;  // index of each alternative's first element; each ends in `end`
  };
  std::vector<element> elems_;
  std::vector<rule_def> rules_;
  std::vector<byte_set> sets_;
  std::vector<number_spec> numbers_;
  uint32_t root_ = 0;
};

// What a number lexer says of a prefix: whether it can still become a number within bounds,
// and whether it already is one.
struct number_check {
  bool viable = false;
  bool complete = false;
};
number_check check_number(std::string_view prefix, const number_spec& spec);

// Runs a grammar over bytes. Not copyable: states are indices into its arena.
class matcher {
 public:
  explicit matcher(const grammar& g);
  matcher(const matcher&) = delete;
  matcher& operator=(const matcher&) = delete;

  // Consumes one byte; false (and no change) if the grammar cannot take it.
  bool advance(uint8_t b);
  bool advance(std::string_view bytes);  // all or nothing
  // The grammar may end here.
  bool can_end() const { return cur_.complete; }
  // Nothing can follow: the grammar has ended.
  bool terminated() const { return cur_.complete && cur_.tops.empty(); }
  bool dead() const { return !cur_.complete && cur_.tops.empty(); }
  size_t n_stacks() const { return cur_.tops.size(); }

  // Saving and going back (token trials, rolled-back drafts). Marks nest like a stack:
  // restoring one forgets every mark saved after it, and everything consumed since.
  struct mark {
    size_t n_nodes = 0;
    size_t n_bytes = 0;
    size_t state = 0;  // index into the saved states
  };
  mark save();
  void restore(const mark& m);  // back to m, which stays saved
  void drop(const mark& m);     // back to m, which is forgotten too
  size_t n_bytes() const { return out_.size(); }

  // A key that states with the same future over the next `horizon` bytes share (for caching
  // masks of tokens of at most that many bytes): the stacks' elements, the text of a number
  // being read, and of each repetition's count only what matters within the horizon (how
  // many more it needs, how many more it may have, up to the horizon).
  void state_key(std::string& out, uint32_t horizon = k_unbounded) const;

  const grammar& gram() const { return g_; }

 private:
  struct node {
    uint32_t pos;     // element index: a terminal on top, a continuation below
    uint32_t count;   // repetitions done, for a continuation at a repeat element
    uint32_t aux;     // number on top: where its text starts in out_
    uint32_t parent;  // k_none at the bottom
    uint64_t hash;    // of (pos, count, parent's hash)
  };
  struct state {
    std::vector<uint32_t> tops;
    bool complete = false;
  };
  static constexpr uint32_t k_none = std::numeric_limits<uint32_t>::max();

  uint32_t push_node(uint32_t pos, uint32_t count, uint32_t aux, uint32_t parent);
  // Normalises a frame until terminals are on top, adding them (and completion) to s.
  void expand(uint32_t pos, uint32_t count, uint32_t parent, state& s, int depth);
  void add_top(state& s, uint32_t node);
  bool same_stack(uint32_t a, uint32_t b) const;

  const grammar& g_;
  std::vector<node> nodes_;
  std::string out_;  // every byte consumed
  state cur_;
  state next_;               // scratch
  std::vector<state> saved_;  // the first n_saved_ are live; the rest keep their buffers
  size_t n_saved_ = 0;
};

}  // namespace troupe::structured
