// pre_tokenizer: cuts text into the pieces BPE runs on, with PCRE2 regular expressions
// (UTF, UCP and JIT) and Hugging Face tokenizers' Split semantics.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

// What Split does with the text its pattern matches (Hugging Face's SplitDelimiterBehavior).
enum class split_behavior { isolated, removed, merged_with_previous, merged_with_next, contiguous };

struct text_span {
  size_t offset = 0;
  size_t size = 0;
};

class split_regex {
 public:
  // pattern is a regular expression in the dialect tokenizer.json files use (Oniguruma's,
  // which PCRE2 reads the same for these patterns), or a literal string when literal is set.
  // \s and \S mean Unicode White_Space there, which PCRE2's \s is not (it lacks U+0085), so
  // they are rewritten to an explicit class.
  [[nodiscard]] static result<split_regex> compile(std::string_view pattern, bool literal);

  // Splits text (valid UTF-8) and appends the pieces, offsets shifted by base.
  void split(std::string_view text, size_t base, split_behavior behavior, bool invert,
             std::vector<text_span>& out) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct code;
  std::shared_ptr<const code> code_;  // compiled and JIT-compiled; immutable, so shareable
  std::string pattern_;
};

struct split_step {
  split_regex re;
  split_behavior behavior = split_behavior::isolated;
  bool invert = false;
};

// Applies each step to every piece the steps before it made; with no steps the text is one
// piece. Empty pieces are dropped.
void pre_split(const std::vector<split_step>& steps, std::string_view text, std::vector<text_span>& out);

}  // namespace troupe
