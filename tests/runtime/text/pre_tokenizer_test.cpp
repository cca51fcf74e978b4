// Proves the PCRE2 pre-tokenizer splits as Hugging Face's Split does: every delimiter
// behavior, inversion, Unicode classes, White_Space for \s, and the model families' patterns.
#include "runtime/text/pre_tokenizer.hpp"

#include <gtest/gtest.h>

#include "runtime/text/tokenizer_regex.hpp"

namespace troupe {
namespace {

std::vector<std::string> split(std::string_view pattern, bool literal, std::string_view text,
                               split_behavior b = split_behavior::isolated, bool invert = false) {
  auto re = split_regex::compile(pattern, literal);
  EXPECT_TRUE(re.ok()) << re.message();
  if (!re) return {};
  std::vector<split_step> steps;
  steps.push_back({std::move(re).value(), b, invert});
  std::vector<text_span> spans;
  pre_split(steps, text, spans);
  std::vector<std::string> out;
  for (const auto& s : spans) out.emplace_back(text.substr(s.offset, s.size));
  return out;
}

using v = std::vector<std::string>;

// The examples of Hugging Face's SplitDelimiterBehavior documentation.
TEST(pre_tokenizer, every_delimiter_behavior_matches_hugging_face) {
  const std::string text = "the-final--countdown";
  EXPECT_EQ(split("-", true, text, split_behavior::removed), (v{"the", "final", "countdown"}));
  EXPECT_EQ(split("-", true, text, split_behavior::isolated), (v{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split("-", true, text, split_behavior::merged_with_previous), (v{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split("-", true, text, split_behavior::merged_with_next), (v{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split("-", true, text, split_behavior::contiguous), (v{"the", "-", "final", "--", "countdown"}));
  // Inverted: the matches are the content and what lies between them the delimiters.
  EXPECT_EQ(split("[a-z]+", false, text, split_behavior::removed, true), (v{"the", "final", "countdown"}));
  EXPECT_EQ(split("-", true, "", split_behavior::isolated), v{});
  EXPECT_EQ(split("-", true, "---", split_behavior::removed), v{});
}

TEST(pre_tokenizer, literal_patterns_are_not_regular_expressions) {
  EXPECT_EQ(split("a.b", true, "xa.bya-b"), (v{"x", "a.b", "ya-b"}));
  EXPECT_EQ(split("\xE2\x96\x81", true, "\xE2\x96\x81" "a\xE2\x96\x81" "b", split_behavior::merged_with_next),
            (v{"\xE2\x96\x81" "a", "\xE2\x96\x81" "b"}));
}

TEST(pre_tokenizer, backslash_s_is_unicode_white_space) {
  // U+0085 (NEL) is White_Space, which PCRE2's own \s leaves out; U+200B is not White_Space.
  EXPECT_EQ(split("\\s+", false, "a\xC2\x85" "b"), (v{"a", "\xC2\x85", "b"}));
  EXPECT_EQ(split("\\s+", false, "a\xE3\x80\x80\xC2\xA0" "b"), (v{"a", "\xE3\x80\x80\xC2\xA0", "b"}));
  EXPECT_EQ(split("\\s+", false, "a\xE2\x80\x8B" "b"), (v{"a\xE2\x80\x8B" "b"}));
  EXPECT_EQ(split("[^\\s\\p{L}]+", false, "a\xC2\x85!b"), (v{"a\xC2\x85", "!", "b"}));
  EXPECT_EQ(split("\\S+", false, "ab\xC2\x85" "cd"), (v{"ab", "\xC2\x85", "cd"}));
  // An escaped backslash before s is a backslash and an s, not white space.
  EXPECT_EQ(split("\\\\s", false, "a\\sb c"), (v{"a", "\\s", "b c"}));
}

TEST(pre_tokenizer, gpt2_pattern_splits_words_numbers_and_spaces) {
  EXPECT_EQ(split(gpt2_regex, false, "Hello world  it's 2024!\n\nok"),
            (v{"Hello", " world", " ", " it", "'s", " 2024", "!", "\n", "\n", "ok"}));
  EXPECT_EQ(split(gpt2_regex, false, "\xC3\x84pfel \xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE"),
            (v{"\xC3\x84pfel", " \xD0\xBD\xD0\xB5\xD1\x89\xD0\xBE"}));
}

TEST(pre_tokenizer, llama3_and_qwen_patterns_differ_on_numbers) {
  EXPECT_EQ(split(llama3_regex, false, "x 1234567"), (v{"x", " ", "123", "456", "7"}));
  EXPECT_EQ(split(qwen2_regex, false, "x 123"), (v{"x", " ", "1", "2", "3"}));
  // Contractions match in any case, as (?i:...) says.
  EXPECT_EQ(split(llama3_regex, false, "WE'RE"), (v{"WE", "'RE"}));
  EXPECT_EQ(split(llama3_regex, false, "a  \n\n b"), (v{"a", "  \n\n", " b"}));
}

TEST(pre_tokenizer, steps_apply_to_the_pieces_of_the_step_before) {
  auto digits = split_regex::compile("[0-9]", false);
  auto words = split_regex::compile(gpt2_regex, false);
  ASSERT_TRUE(digits.ok() && words.ok());
  std::vector<split_step> steps;
  steps.push_back({std::move(digits).value(), split_behavior::isolated, false});
  steps.push_back({std::move(words).value(), split_behavior::isolated, false});
  std::vector<text_span> spans;
  const std::string text = "ab 12 cd";
  pre_split(steps, text, spans);
  v out;
  for (const auto& s : spans) out.push_back(text.substr(s.offset, s.size));
  EXPECT_EQ(out, (v{"ab", " ", "1", "2", " cd"}));
}

TEST(pre_tokenizer, a_bad_pattern_is_an_error_naming_it) {
  auto re = split_regex::compile("(unclosed", false);
  ASSERT_FALSE(re.ok());
  EXPECT_NE(re.message().find("(unclosed"), std::string::npos) << re.message();
}

TEST(pre_tokenizer, patterns_that_match_empty_text_make_no_empty_pieces) {
  EXPECT_EQ(split("x*", false, "abxxc"), (v{"ab", "xx", "c"}));
}

}  // namespace
}  // namespace troupe
