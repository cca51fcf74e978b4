// progress: how far long work has come (a model load, a benchmark), shown to a person: a bar
// redrawn in place on a terminal, plain lines (at each tenth, or every 10 s) when the output
// is a file or a pipe. Work that ends within `quiet_s` (1 s) shows nothing: only long work
// talks. TROUPE_PROGRESS=bar|lines|off overrides the choice.
#pragma once

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>

namespace troupe {

enum class progress_style { bar, lines, off };
// What TROUPE_PROGRESS says, else a bar when `out` is a terminal and lines otherwise.
progress_style progress_style_for(std::FILE* out);

class progress {
 public:
  // total <= 0: no known end (shows counts only). unit "B" shows bytes as KiB/MiB/GiB.
  progress(std::string what, double total, std::string unit = "", std::FILE* out = stderr);
  progress(std::string what, double total, std::string unit, std::FILE* out, progress_style style,
           double quiet_s = 1.0);
  ~progress();  // finish() if not yet
  progress(const progress&) = delete;
  progress& operator=(const progress&) = delete;

  // Thread-safe. `detail` is shown after the figures ("decode at batch 8").
  void set(double done, std::string_view detail = "");
  void add(double n, std::string_view detail = "");
  // The last line: "<what>: done, <figures> in 3.2 s" (and a newline after a bar).
  void finish(std::string_view detail = "");
  // Ends without the last line, for work that failed (its error says the rest).
  void abandon();

 private:
  void show(bool last);
  std::string figures() const;

  std::mutex mu_;
  std::string what_, unit_, detail_;
  double total_, done_ = 0;
  std::FILE* out_;
  progress_style style_;
  bool finished_ = false;
  bool shown_ = false;  // something was written
  double quiet_s_;
  int last_tenth_ = -1;
  std::chrono::steady_clock::time_point start_, last_shown_;
};

}  // namespace troupe
