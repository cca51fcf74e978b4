#include "runtime/stop_strings.hpp"

#include <algorithm>

namespace troupe {

stop_matcher::stop_matcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
  for (const auto& s : stops_) max_len_ = std::max(max_len_, s.size());
}

stop_matcher::output stop_matcher::push(std::string_view text) {
  output out;
  if (stopped_) {
    out.stopped = true;
    return out;
  }
  pending_.append(text);
  if (stops_.empty()) {
    out.text.swap(pending_);
    return out;
  }
  // The earliest stop string wins.
  size_t first = std::string::npos;
  for (const auto& s : stops_) {
    const size_t at = pending_.find(s);
    if (at < first) {
      first = at;
      out.matched = s;
    }
  }
  if (first != std::string::npos) {
    out.text = pending_.substr(0, first);
    pending_.clear();
    stopped_ = out.stopped = true;
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string.
  size_t hold = 0;
  const size_t limit = std::min(pending_.size(), max_len_ - 1);
  for (size_t n = limit; n > 0 && hold == 0; --n) {
    const std::string_view tail(pending_.data() + pending_.size() - n, n);
    for (const auto& s : stops_)
      if (s.size() > n && std::string_view(s).substr(0, n) == tail) {
        hold = n;
        break;
      }
  }
  out.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

stop_matcher::output stop_matcher::flush() {
  output out;
  out.stopped = stopped_;
  if (!stopped_) out.text.swap(pending_);
  pending_.clear();
  return out;
}

}  // namespace troupe
