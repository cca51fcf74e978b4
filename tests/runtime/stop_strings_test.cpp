// Proves stop strings are never emitted, even when they arrive split across tokens, and
// that text which only looks like the start of one is released once it cannot be.
#include "runtime/stop_strings.hpp"

#include <gtest/gtest.h>

namespace troupe {
namespace {

std::string run(std::vector<std::string> stops, std::vector<std::string> pieces, bool* stopped = nullptr) {
  stop_matcher m(std::move(stops));
  std::string out;
  for (auto& p : pieces) {
    auto o = m.push(p);
    out += o.text;
    if (o.stopped) break;
  }
  auto f = m.flush();
  out += f.text;
  if (stopped) *stopped = f.stopped;
  return out;
}

TEST(stop_strings, cut_at_a_stop_split_across_pieces) {
  bool stopped = false;
  EXPECT_EQ(run({"###"}, {"hello #", "#", "# world"}, &stopped), "hello ");
  EXPECT_TRUE(stopped);
}

TEST(stop_strings, partial_match_is_released_when_it_fails) {
  bool stopped = true;
  EXPECT_EQ(run({"###"}, {"a #", "# b"}, &stopped), "a ## b");
  EXPECT_FALSE(stopped);
}

TEST(stop_strings, nothing_of_a_stop_is_ever_emitted_piece_by_piece) {
  stop_matcher m({"</end>"});
  for (std::string p : {"x<", "/e", "n", "d>", "tail"}) {
    auto o = m.push(p);
    EXPECT_EQ(o.text.find('<'), std::string::npos) << p;
    if (o.stopped) break;
  }
  EXPECT_TRUE(m.stopped());
}

TEST(stop_strings, earliest_of_several_wins) {
  EXPECT_EQ(run({"cd", "b"}, {"abcdef"}), "a");
  EXPECT_EQ(run({"xyz", "bc"}, {"ab", "cxyz"}), "a");
}

TEST(stop_strings, no_stops_passes_everything_through) {
  EXPECT_EQ(run({}, {"a", "b"}), "ab");
}

TEST(stop_strings, multibyte_text_around_a_stop) {
  EXPECT_EQ(run({"。"}, {"日本", "語", "。次"}), "日本語");
}

}  // namespace
}  // namespace troupe
