// map_reader: reads the members of one map node into typed values, with an error per bad field.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config_error.hpp"
#include "config/node.hpp"

namespace troupe::config {

// Every getter marks its key as known; finish() then reports each member nobody asked for as
// an unknown field, with a did-you-mean among the known keys. Getters return nullopt both
// when the key is absent and when its value is wrong (an error is recorded for the latter),
// so parsing always goes on and every error of a document is collected.
class map_reader {
 public:
  // `n` may be null (the block is absent: every getter returns nullopt). A node that is not
  // a map is reported once, as "<path>: expected a map, got ...".
  map_reader(const node* n, std::string path, error_list& errors);
  map_reader(const map_reader&) = delete;
  map_reader& operator=(const map_reader&) = delete;

  bool is_map() const { return map_ != nullptr; }
  const std::string& path() const { return path_; }
  std::string path_of(std::string_view key) const;

  // The member's node (any kind), or nullptr; marks the key known.
  const node* get(std::string_view key);
  bool has(std::string_view key) { return get(key) != nullptr; }

  std::optional<int64_t> integer(std::string_view key, int64_t min, int64_t max = INT64_MAX);
  std::optional<double> number(std::string_view key, double min, double max);
  std::optional<bool> boolean(std::string_view key);
  // A non-empty string. Unquoted YAML numbers and booleans are taken as written ("revision:
  // 1234"); JSON numbers are not strings.
  std::optional<std::string> string(std::string_view key);
  // One of `options`; returns the option as spelled in `options`. With case_insensitive,
  // "eagle" matches "Eagle". Wrong values get "must be one of ..." and a did-you-mean.
  std::optional<std::string> choice(std::string_view key,
                                    std::initializer_list<std::string_view> options,
                                    bool case_insensitive = false);
  // A map member, for a nested map_reader (nullptr when absent).
  const node* map(std::string_view key) { return get(key); }

  // If `key` is present, records `message` as its error (a field that is not allowed here),
  // with `fix` as the error's hint.
  void reject(std::string_view key, std::string message, std::string fix = "");
  // If `key` turns out unknown, report `message` instead of the generic did-you-mean
  // (a v1 name, or a field that belongs in another block).
  void hint(std::string_view key, std::string message);

  // Records an error about `key` at its position (the key's line when it is present).
  void error(std::string_view key, std::string message, std::string fix = "");

  // Reports every member not asked for. Call once, after all getters.
  void finish();

 private:
  const node_member* member(std::string_view key) const;
  void type_error(const node_member& m, std::string_view expected);

  const node* map_ = nullptr;
  std::string path_;
  error_list& errors_;
  std::vector<std::string> known_;
  std::vector<std::string> rejected_;  // known, but not allowed: never suggested
  std::vector<std::pair<std::string, std::string>> hints_;
};

// Optimal string alignment distance (edits, adjacent swaps counted once), case-insensitive.
int edit_distance(std::string_view a, std::string_view b);
// The candidate closest to `word` within a small edit distance, or "" when none is close.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace troupe::config
