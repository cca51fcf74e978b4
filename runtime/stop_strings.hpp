// stop_matcher: cuts streamed text at the first stop string, holding back any tail that
// could still become one, so that no part of a stop string is ever emitted.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace troupe {

class stop_matcher {
 public:
  explicit stop_matcher(std::vector<std::string> stops);

  struct output {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string was found; nothing after it may be emitted
    std::string matched;   // which one
  };
  // Adds newly decoded text.
  output push(std::string_view text);
  // At the end of generation: whatever was held back.
  output flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  size_t max_len_ = 0;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace troupe
