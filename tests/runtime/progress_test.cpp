// Proves the progress display: plain lines at each tenth with the figures and a last "done"
// line when the output is not a terminal, a bar redrawn in place with \r on one, bytes shown
// as KiB/MiB, nothing at all for work that ends within the quiet time, and off when asked.
#include "runtime/progress.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <thread>

namespace troupe {
namespace {

// Runs fn with a FILE* and returns what it wrote.
template <class F>
std::string written(F&& fn) {
  std::FILE* f = std::tmpfile();
  fn(f);
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  std::fclose(f);
  return out;
}

TEST(progress, lines_at_each_tenth_then_done) {
  const std::string out = written([](std::FILE* f) {
    progress p("loading m: reading weights", 100, "", f, progress_style::lines, 0);
    for (int i = 1; i <= 100; ++i) p.set(i);
    p.finish();
  });
  EXPECT_EQ(out.find("loading m: reading weights: 0% (0/100)\n"), 0u) << out;
  EXPECT_NE(out.find("loading m: reading weights: 50% (50/100)\n"), std::string::npos) << out;
  EXPECT_NE(out.find("loading m: reading weights: done, 100/100 in "), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 12) << out;  // 0%, ten tenths, done
  EXPECT_EQ(out.find('\r'), std::string::npos);
}

TEST(progress, bytes_and_units_read_as_a_person_would) {
  const std::string out = written([](std::FILE* f) {
    progress p("mapping", 3.0 * (1 << 30), "B", f, progress_style::lines, 0);
    p.set(1.5 * (1 << 30), "shard 2 of 4");
    p.finish();
    progress q("decode", 4, "batches", f, progress_style::lines, 0);
  });
  EXPECT_NE(out.find("mapping: 50% (1.5 GiB/3.0 GiB), shard 2 of 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("decode: 0% (0/4 batches)"), std::string::npos) << out;
  EXPECT_NE(out.find("decode: done, 4/4 batches in"), std::string::npos) << out;  // the destructor finishes
}

TEST(progress, a_bar_redraws_in_place_and_ends_with_a_newline) {
  const std::string out = written([](std::FILE* f) {
    progress p("bench", 10, "", f, progress_style::bar, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(120));  // redraws come at most every 0.1 s
    p.set(5);
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    p.set(10);
    p.finish();
  });
  EXPECT_EQ(out.front(), '\r');
  EXPECT_NE(out.find("bench [##############..............]  50% 5/10"), std::string::npos) << out;
  EXPECT_NE(out.find("bench [############################] 100% 10/10"), std::string::npos) << out;
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
}

TEST(progress, quick_work_and_off_say_nothing) {
  for (auto style : {progress_style::lines, progress_style::bar, progress_style::off}) {
    const std::string out = written([&](std::FILE* f) {
      progress p("quick", 10, "", f, style, style == progress_style::off ? 0 : 60);
      for (int i = 0; i <= 10; ++i) p.set(i);
    });
    EXPECT_EQ(out, "") << static_cast<int>(style);
  }
}

TEST(progress, abandoned_work_has_no_done_line) {
  const std::string out = written([](std::FILE* f) {
    progress p("loading", 10, "", f, progress_style::lines, 0);
    p.set(3);
    p.abandon();
  });
  EXPECT_NE(out.find("loading: 30% (3/10)"), std::string::npos) << out;
  EXPECT_EQ(out.find("done"), std::string::npos) << out;
}

TEST(progress, no_total_shows_counts) {
  const std::string out = written([](std::FILE* f) {
    progress p("requests", 0, "done", f, progress_style::lines, 0);
    p.add(3);
    p.finish();
  });
  EXPECT_NE(out.find("requests: 0 done\n"), std::string::npos) << out;
  EXPECT_NE(out.find("requests: done, 3 done in"), std::string::npos) << out;
}

}  // namespace
}  // namespace troupe
