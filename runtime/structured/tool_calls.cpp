#include "runtime/structured/tool_calls.hpp"

#include <nlohmann/json.hpp>

namespace troupe::structured {

namespace {

constexpr size_t npos = std::string::npos;
constexpr std::string_view k_hermes_open = "<tool_call>";
constexpr std::string_view k_hermes_close = "</tool_call>";
constexpr std::string_view k_mistral = "[TOOL_CALLS]";
constexpr std::string_view k_mistral_args = "[ARGS]";
constexpr std::string_view k_python_tag = "<|python_tag|>";

// Phases of the parser.
enum phase : int {
  k_text,          // before a call: content, watching for the format's opening
  k_object,        // a call object starts at done_
  k_after_object,  // after a call object: the format's separator or closing
  k_v11_name,      // Mistral v11: the function name, up to [ARGS]
  k_v11_args,      // Mistral v11: the arguments value
  k_content,       // the rest is content
  k_arguments,     // the whole output is arguments
};

bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

size_t skip_ws(const std::string& s, size_t i) {
  while (i < s.size() && is_ws(s[i])) ++i;
  return i;
}

enum class scan_status { complete, incomplete, bad };
using scan = scan_status;

// The end of the JSON value starting at i (after whitespace).
scan scan_value(const std::string& s, size_t i, bool at_end, size_t& end) {
  if (i >= s.size()) return at_end ? scan::bad : scan::incomplete;
  const char c = s[i];
  if (c == '"') {
    for (size_t j = i + 1; j < s.size(); ++j) {
      if (s[j] == '\\') {
        ++j;
        continue;
      }
      if (s[j] == '"') {
        end = j + 1;
        return scan::complete;
      }
      if (static_cast<unsigned char>(s[j]) < 0x20) return scan::bad;
    }
    return at_end ? scan::bad : scan::incomplete;
  }
  if (c == '{' || c == '[') {
    int depth = 0;
    bool in_string = false;
    for (size_t j = i; j < s.size(); ++j) {
      const char x = s[j];
      if (in_string) {
        if (x == '\\') ++j;
        else if (x == '"') in_string = false;
        continue;
      }
      if (x == '"') in_string = true;
      else if (x == '{' || x == '[') ++depth;
      else if (x == '}' || x == ']') {
        if (--depth == 0) {
          end = j + 1;
          return scan::complete;
        }
      }
    }
    return at_end ? scan::bad : scan::incomplete;
  }
  // A number or a literal: until a delimiter.
  size_t j = i;
  while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '-' || s[j] == '+' || s[j] == '.'))
    ++j;
  if (j == i) return scan::bad;
  if (j == s.size() && !at_end) return scan::incomplete;
  end = j;
  return scan::complete;
}

// What is known of a call object {"name": ..., "arguments"|"parameters": ...} from `from`.
struct call_scan {
  scan status = scan::incomplete;
  size_t end = npos;           // past '}' when complete
  bool have_name = false;
  std::string name;
  size_t args_start = npos;    // the arguments value's first byte
  size_t args_end = npos;      // past it, when complete
  bool foreign_key = false;    // a first key no call object has (it is not a call)
};

call_scan scan_call(const std::string& s, size_t from, bool at_end) {
  call_scan r;
  size_t i = skip_ws(s, from);
  if (i >= s.size()) return r;
  if (s[i] != '{') {
    r.status = scan::bad;
    return r;
  }
  ++i;
  bool first = true;
  while (true) {
    i = skip_ws(s, i);
    if (i >= s.size()) return r;
    if (s[i] == '}' && first) {
      r.status = scan::complete;
      r.end = i + 1;
      return r;
    }
    size_t key_end = 0;
    const scan ks = scan_value(s, i, at_end, key_end);
    if (ks != scan::complete || s[i] != '"') {
      r.status = ks == scan::incomplete ? scan::incomplete : scan::bad;
      return r;
    }
    const std::string key = nlohmann::json::parse(s.substr(i, key_end - i), nullptr, false).get<std::string>();
    const bool is_args = key == "arguments" || key == "parameters";
    if (first && key != "name" && !is_args && key != "type" && key != "id") r.foreign_key = true;
    first = false;
    i = skip_ws(s, key_end);
    if (i >= s.size()) return r;
    if (s[i] != ':') {
      r.status = scan::bad;
      return r;
    }
    i = skip_ws(s, i + 1);
    if (i >= s.size()) return r;
    if (is_args) r.args_start = i;
    size_t vend = 0;
    const scan vs = scan_value(s, i, at_end, vend);
    if (vs != scan::complete) {
      r.status = vs;
      return r;
    }
    if (is_args) r.args_end = vend;
    if (key == "name") {
      const auto v = nlohmann::json::parse(s.substr(i, vend - i), nullptr, false);
      if (!v.is_string()) {
        r.status = scan::bad;
        return r;
      }
      r.have_name = true;
      r.name = v.get<std::string>();
    }
    i = skip_ws(s, vend);
    if (i >= s.size()) return r;
    if (s[i] == ',') {
      ++i;
      continue;
    }
    if (s[i] == '}') {
      r.status = scan::complete;
      r.end = i + 1;
      return r;
    }
    r.status = scan::bad;
    return r;
  }
}

// How many bytes at the end of s could be the start of marker.
size_t partial_marker(std::string_view s, std::string_view marker) {
  for (size_t n = std::min(s.size(), marker.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

}  // namespace

const char* tool_format_name(tool_format f) {
  switch (f) {
    case tool_format::none: return "none";
    case tool_format::hermes: return "hermes";
    case tool_format::llama3_json: return "llama3_json";
    case tool_format::mistral: return "mistral";
    case tool_format::json_array: return "json_array";
    case tool_format::arguments: return "arguments";
  }
  return "none";
}

tool_format tool_format_of_template(std::string_view t) {
  if (t.find(k_hermes_open) != std::string_view::npos) return tool_format::hermes;
  if (t.find(k_mistral) != std::string_view::npos) return tool_format::mistral;
  if (t.find(k_python_tag) != std::string_view::npos ||
      (t.find("\"parameters\"") != std::string_view::npos && t.find("Environment: ipython") != std::string_view::npos))
    return tool_format::llama3_json;
  return tool_format::none;
}

tool_call_parser::tool_call_parser(tool_format f, std::string forced_name)
    : format_(f), forced_name_(std::move(forced_name)) {
  if (f == tool_format::arguments) phase_ = k_arguments;
  if (f == tool_format::none) phase_ = k_content;
}

std::vector<tool_event> tool_call_parser::push(std::string_view text) {
  buf_.append(text);
  std::vector<tool_event> out;
  scan(false, out);
  return out;
}

std::vector<tool_event> tool_call_parser::finish() {
  std::vector<tool_event> out;
  scan(true, out);
  return out;
}

void tool_call_parser::emit_content(size_t upto, std::vector<tool_event>& out) {
  if (upto <= done_) return;
  std::string t = buf_.substr(done_, upto - done_);
  content_ += t;
  if (!out.empty() && out.back().what == tool_event::kind::content) out.back().text += t;
  else out.push_back({tool_event::kind::content, 0, std::move(t)});
  done_ = upto;
}

void tool_call_parser::scan(bool at_end, std::vector<tool_event>& out) {
  auto start_call = [&](const std::string& name) {
    calls_.push_back({name, ""});
    args_sent_.push_back(0);
    out.push_back({tool_event::kind::call_start, calls_.size() - 1, name});
  };
  auto send_args = [&](size_t from, size_t to) {
    // Fragments of the current call's arguments, from..to of buf_ (absolute).
    parsed_call& c = calls_.back();
    const size_t sent = args_sent_.back();
    if (to <= from + sent) return;
    std::string frag = buf_.substr(from + sent, to - from - sent);
    c.arguments += frag;
    args_sent_.back() = to - from;
    out.push_back({tool_event::kind::arguments, calls_.size() - 1, std::move(frag)});
  };
  bool progress = true;
  bool started = calls_.size() > call_base_;  // the object at done_ has emitted its start
  while (progress) {
    progress = false;
    switch (phase_) {
      case k_content:
        emit_content(buf_.size(), out);
        return;
      case k_arguments:
        if (calls_.empty()) start_call(forced_name_);
        send_args(0, buf_.size());
        done_ = buf_.size();
        return;
      case k_text: {
        if (format_ == tool_format::hermes || format_ == tool_format::mistral) {
          const std::string_view marker = format_ == tool_format::hermes ? k_hermes_open : k_mistral;
          const size_t at = buf_.find(marker, done_);
          if (at == npos) {
            emit_content(at_end ? buf_.size() : buf_.size() - partial_marker(buf_, marker), out);
            return;
          }
          emit_content(at, out);
          open_at_ = at;
          done_ = at + marker.size();
          if (format_ == tool_format::mistral) {
            const size_t i = skip_ws(buf_, done_);
            if (i >= buf_.size() && !at_end) {
              done_ -= marker.size();  // decide when more text comes
              return;
            }
            if (i < buf_.size() && buf_[i] == '[') {
              done_ = i + 1;
              phase_ = k_object;
            } else {
              phase_ = k_v11_name;
            }
          } else {
            phase_ = k_object;
          }
          call_base_ = first_in_block_ = calls_.size();
          started = false;
          progress = true;
          break;
        }
        // llama3_json and json_array: the output opens with the call(s) or is content.
        size_t i = skip_ws(buf_, done_);
        if (format_ == tool_format::llama3_json && buf_.compare(i, k_python_tag.size(), k_python_tag) == 0)
          i = skip_ws(buf_, i + k_python_tag.size());
        else if (format_ == tool_format::llama3_json && !at_end &&
                 partial_marker(std::string_view(buf_).substr(i), k_python_tag) == buf_.size() - i && i < buf_.size())
          return;
        if (i >= buf_.size()) {
          if (at_end) phase_ = k_content, progress = true;
          return;
        }
        const char want = format_ == tool_format::json_array ? '[' : '{';
        if (buf_[i] != want) {
          phase_ = k_content;
          progress = true;
          break;
        }
        open_at_ = done_;
        done_ = format_ == tool_format::json_array ? i + 1 : i;
        phase_ = k_object;
        call_base_ = first_in_block_ = calls_.size();
        started = false;
        progress = true;
        break;
      }
      case k_object: {
        const call_scan c = scan_call(buf_, done_, at_end);
        const bool in_array = format_ == tool_format::json_array || format_ == tool_format::mistral;
        if (in_array && c.status != scan::bad) {
          // An empty array closes at once.
          const size_t i = skip_ws(buf_, done_);
          if (i < buf_.size() && buf_[i] == ']' && !started) {
            done_ = i + 1;
            phase_ = k_content;
            progress = true;
            break;
          }
        }
        const bool broken = c.status == scan::bad || c.foreign_key || (c.status == scan::complete && !c.have_name) ||
                            (c.status == scan::incomplete && at_end);
        if (broken && (!started || !c.have_name)) {
          // Not a call after all (or one cut off before its name): from the opening on, and
          // only if no call of this block was sent, it is content.
          if (call_base_ == first_in_block_) done_ = open_at_;
          phase_ = k_content;
          progress = true;
          break;
        }
        if (c.have_name && !started) {
          start_call(c.name);
          started = true;
        }
        if (started && c.args_start != npos) send_args(c.args_start, c.args_end != npos ? c.args_end : buf_.size());
        if (broken) {
          // A call that broke off or was cut short (max_tokens): it keeps what it sent.
          done_ = buf_.size();
          phase_ = k_content;
          progress = true;
          break;
        }
        if (c.status == scan::incomplete) return;
        if (c.args_start == npos) {
          calls_.back().arguments = "{}";
          out.push_back({tool_event::kind::arguments, calls_.size() - 1, "{}"});
        }
        done_ = c.end;
        started = false;
        call_base_ = calls_.size();
        phase_ = k_after_object;
        progress = true;
        break;
      }
      case k_after_object: {
        const size_t i = skip_ws(buf_, done_);
        if (i >= buf_.size()) {
          if (at_end) {
            done_ = i;
            return;
          }
          return;
        }
        if (format_ == tool_format::hermes) {
          if (buf_.compare(i, k_hermes_close.size(), k_hermes_close) == 0) {
            done_ = i + k_hermes_close.size();
            phase_ = k_text;
            progress = true;
          } else if (!at_end && partial_marker(std::string_view(buf_).substr(i), k_hermes_close) == buf_.size() - i) {
            return;
          } else {
            done_ = i;  // no closing tag: go on with what follows
            phase_ = k_text;
            progress = true;
          }
          break;
        }
        if (format_ == tool_format::llama3_json) {
          if (buf_[i] == ';') {
            done_ = skip_ws(buf_, i + 1);
            phase_ = k_object;
          } else {
            done_ = i;
            phase_ = k_content;
          }
          progress = true;
          break;
        }
        // Arrays: another call, or the end.
        if (buf_[i] == ',') {
          done_ = i + 1;
          phase_ = k_object;
        } else if (buf_[i] == ']') {
          done_ = i + 1;
          phase_ = format_ == tool_format::mistral ? k_text : k_content;
        } else {
          done_ = i;
          phase_ = k_content;
        }
        progress = true;
        break;
      }
      case k_v11_name: {
        const size_t at = buf_.find(k_mistral_args, done_);
        if (at == npos) {
          if (at_end) {
            phase_ = k_content;
            progress = true;
          }
          return;
        }
        std::string name = buf_.substr(done_, at - done_);
        while (!name.empty() && is_ws(name.back())) name.pop_back();
        start_call(name.substr(skip_ws(name, 0)));
        done_ = at + k_mistral_args.size();
        phase_ = k_v11_args;
        progress = true;
        break;
      }
      case k_v11_args: {
        const size_t i = skip_ws(buf_, done_);
        size_t end = 0;
        const scan_status s = i < buf_.size() ? scan_value(buf_, i, at_end, end) : (at_end ? scan_status::bad : scan_status::incomplete);
        if (s == scan_status::bad) {
          phase_ = k_content;
          progress = true;
          break;
        }
        if (i < buf_.size()) send_args(i, s == scan_status::complete ? end : buf_.size());
        if (s == scan_status::incomplete) return;
        done_ = end;
        call_base_ = calls_.size();
        phase_ = k_text;
        progress = true;
        break;
      }
      default: return;
    }
  }
}

}  // namespace troupe::structured
