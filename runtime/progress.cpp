#include "runtime/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

namespace troupe {

progress_style progress_style_for(std::FILE* out) {
  if (const char* e = std::getenv("TROUPE_PROGRESS"); e && *e) {
    const std::string_view v(e);
    if (v == "off" || v == "0") return progress_style::off;
    if (v == "lines") return progress_style::lines;
    if (v == "bar") return progress_style::bar;
  }
  return isatty(fileno(out)) ? progress_style::bar : progress_style::lines;
}

namespace {

std::string amount(double v, const std::string& unit) {
  if (unit != "B") return fmt::format("{:.0f}", v);
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u == 0 ? fmt::format("{:.0f} B", v) : fmt::format("{:.1f} {}", v, units[u]);
}

}  // namespace

progress::progress(std::string what, double total, std::string unit, std::FILE* out)
    : progress(std::move(what), total, std::move(unit), out, progress_style_for(out)) {}

progress::progress(std::string what, double total, std::string unit, std::FILE* out, progress_style style,
                   double quiet_s)
    : what_(std::move(what)), unit_(std::move(unit)), total_(total), out_(out), style_(style), quiet_s_(quiet_s),
      start_(std::chrono::steady_clock::now()), last_shown_(start_) {
  std::lock_guard<std::mutex> lock(mu_);
  show(false);
}

progress::~progress() { finish(); }

void progress::set(double done, std::string_view detail) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  done_ = done;
  if (!detail.empty()) detail_ = detail;
  show(false);
}

void progress::add(double n, std::string_view detail) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  done_ += n;
  if (!detail.empty()) detail_ = detail;
  show(false);
}

void progress::finish(std::string_view detail) {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  if (total_ > 0) done_ = std::max(done_, total_);
  detail_ = detail;
  show(true);
  finished_ = true;
}

void progress::abandon() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (shown_ && style_ == progress_style::bar) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

std::string progress::figures() const {
  std::string unit = unit_ == "B" || unit_.empty() ? "" : " " + unit_;
  if (total_ <= 0) return amount(done_, unit_) + unit;
  return fmt::format("{}/{}{}", amount(done_, unit_), amount(total_, unit_), unit);
}

void progress::show(bool last) {
  if (style_ == progress_style::off) return;
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double frac = total_ > 0 ? std::clamp(done_ / total_, 0.0, 1.0) : 0.0;
  const std::string detail = detail_.empty() ? "" : ", " + detail_;
  // Quick work stays quiet: nothing until quiet_s has passed, and no last line after nothing.
  if (!shown_ && (last || elapsed < quiet_s_)) return;
  if (style_ == progress_style::bar) {
    if (!last && shown_ && now - last_shown_ < std::chrono::milliseconds(100)) return;
    last_shown_ = now;
    shown_ = true;
    constexpr int width = 28;
    const int filled = static_cast<int>(frac * width);
    const std::string bar = total_ > 0 ? "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] " +
                                             fmt::format("{:3.0f}% ", 100 * frac)
                                       : "";
    std::fprintf(out_, "\r%s %s%s %.1f s%s\x1b[K%s", what_.c_str(), bar.c_str(), figures().c_str(), elapsed,
                 detail.c_str(), last ? "\n" : "");
    std::fflush(out_);
    return;
  }
  // Lines: the start, each tenth, every 10 s, and the end.
  const int tenth = total_ > 0 ? static_cast<int>(frac * 10) : -1;
  const bool due = last || !shown_ || tenth > last_tenth_ || now - last_shown_ >= std::chrono::seconds(10);
  if (!due) return;
  shown_ = true;
  last_tenth_ = std::max(last_tenth_, std::max(tenth, 0));
  last_shown_ = now;
  if (last)
    std::fprintf(out_, "%s: done, %s in %.1f s%s\n", what_.c_str(), figures().c_str(), elapsed, detail.c_str());
  else if (total_ > 0)
    std::fprintf(out_, "%s: %.0f%% (%s)%s\n", what_.c_str(), 100 * frac, figures().c_str(), detail.c_str());
  else
    std::fprintf(out_, "%s: %s%s\n", what_.c_str(), figures().c_str(), detail.c_str());
  std::fflush(out_);
}

}  // namespace troupe
