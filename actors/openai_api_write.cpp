// openai_api_write: typed results to OpenAI's JSON bodies and SSE chunks, written by hand into
// one string (a stream writes a chunk per token), always valid JSON and valid UTF-8.
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

#include "actors/openai_api.hpp"

namespace troupe::openai {

namespace {

// The length of the valid UTF-8 sequence at p[0..n), or 0 when it is not one; then bad is the
// length of its maximal invalid subpart, which one U+FFFD replaces (as WHATWG and Python's
// errors="replace" do).
size_t utf8_sequence(const unsigned char* p, size_t n, size_t& bad) {
  const unsigned char c = p[0];
  size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c == 0xE0) need = 2, lo = 0xA0;
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
  else if (c == 0xED) need = 2, hi = 0x9F;  // no surrogates
  else if (c == 0xF0) need = 3, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) need = 3;
  else if (c == 0xF4) need = 3, hi = 0x8F;  // nothing above U+10FFFF
  else {
    bad = 1;
    return 0;
  }
  for (size_t k = 1; k <= need; ++k) {
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (k >= n || p[k] < l || p[k] > h) {
      bad = k;
      return 0;
    }
  }
  return need + 1;
}

// Code points of s once repaired.
int32_t code_points(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  int32_t count = 0;
  for (size_t i = 0; i < s.size(); ++count) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0;
    const size_t len = utf8_sequence(p + i, s.size() - i, bad);
    i += len ? len : bad;
  }
  return count;
}

void append_int(std::string& out, int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Shortest round-trip form. JSON has no NaN or infinity: -inf (a token the model rules out)
// is written as vLLM writes it, -9999.0, and NaN as null.
void append_float(std::string& out, float v) {
  if (std::isnan(v)) {
    out += "null";
  } else if (std::isinf(v)) {
    out += v < 0 ? "-9999.0" : "9999.0";
  } else {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
  }
}

// "key": with the comma before it unless first.
void key(std::string& out, std::string_view k, bool first = false) {
  if (!first) out += ',';
  out += '"';
  out += k;
  out += "\":";
}

void append_bytes_array(std::string& out, std::string_view bytes) {
  out += '[';
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i) out += ',';
    append_int(out, static_cast<unsigned char>(bytes[i]));
  }
  out += ']';
}

void append_optional_string(std::string& out, std::string_view s) {
  if (s.empty()) out += "null";
  else append_json_string(out, s);
}

void append_stop_reason(std::string& out, const stop_reason& r) {
  if (const auto* s = std::get_if<std::string>(&r)) append_json_string(out, *s);
  else if (const auto* id = std::get_if<token_id>(&r)) append_int(out, *id);
  else out += "null";
}

void append_usage(std::string& out, const usage_info& u) {
  out += "{\"prompt_tokens\":";
  append_int(out, u.prompt_tokens);
  key(out, "completion_tokens");
  append_int(out, u.completion_tokens);
  key(out, "total_tokens");
  append_int(out, int64_t{u.prompt_tokens} + u.completion_tokens);
  key(out, "prompt_tokens_details");
  out += "{\"cached_tokens\":";
  append_int(out, u.cached_tokens);
  out += "}";
  if (u.draft_tokens > 0) {
    key(out, "completion_tokens_details");
    out += "{\"accepted_prediction_tokens\":";
    append_int(out, u.accepted_draft_tokens);
    key(out, "rejected_prediction_tokens");
    append_int(out, int64_t{u.draft_tokens} - u.accepted_draft_tokens);
    out += "}";
  }
  out += "}";
}

// The fields every chunk and body of one response opens with.
void append_head(std::string& out, std::string_view id, std::string_view object, int64_t created,
                 std::string_view model) {
  out += "{\"id\":";
  append_json_string(out, id);
  key(out, "object");
  append_json_string(out, object);
  key(out, "created");
  append_int(out, created);
  key(out, "model");
  append_json_string(out, model);
}

// Chat's logprobs: {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}.
void append_chat_logprobs(std::string& out, std::span<const logprob_entry> entries) {
  out += "{\"content\":[";
  for (size_t i = 0; i < entries.size(); ++i) {
    const logprob_entry& e = entries[i];
    if (i) out += ',';
    out += "{\"token\":";
    append_json_string(out, e.token);
    key(out, "logprob");
    append_float(out, e.logprob);
    key(out, "bytes");
    append_bytes_array(out, e.token);
    key(out, "top_logprobs");
    out += '[';
    for (size_t j = 0; j < e.top.size(); ++j) {
      if (j) out += ',';
      out += "{\"token\":";
      append_json_string(out, e.top[j].token);
      key(out, "logprob");
      append_float(out, e.top[j].logprob);
      key(out, "bytes");
      append_bytes_array(out, e.top[j].token);
      out += '}';
    }
    out += "]}";
  }
  out += "]}";
}

// Completions' logprobs: {"tokens", "token_logprobs", "top_logprobs": [{token: logprob}],
// "text_offset"}. Each top_logprobs object holds the chosen token too (as vLLM's does), and a
// text that two tokens share (two halves of characters both read U+FFFD) appears once, with
// the larger logprob, so that the object has no repeated keys.
void append_completion_logprobs(std::string& out, std::span<const logprob_entry> entries, int32_t offset) {
  std::string repaired;
  out += "{\"tokens\":[";
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i) out += ',';
    append_json_string(out, entries[i].token);
  }
  out += "],\"token_logprobs\":[";
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i) out += ',';
    if (entries[i].none) out += "null";
    else append_float(out, entries[i].logprob);
  }
  out += "],\"top_logprobs\":[";
  std::vector<std::pair<std::string, float>> top;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i) out += ',';
    if (entries[i].none) {
      out += "null";
      continue;
    }
    top.clear();
    auto add = [&](std::string_view token, float logprob) {
      repaired.clear();
      append_json_string(repaired, token);  // compare the texts as written
      for (auto& [t, lp] : top)
        if (t == repaired) {
          lp = std::max(lp, logprob);
          return;
        }
      top.emplace_back(repaired, logprob);
    };
    for (const top_logprob& t : entries[i].top) add(t.token, t.logprob);
    add(entries[i].token, entries[i].logprob);
    out += '{';
    for (size_t j = 0; j < top.size(); ++j) {
      if (j) out += ',';
      out += top[j].first;
      out += ':';
      append_float(out, top[j].second);
    }
    out += '}';
  }
  out += "],\"text_offset\":[";
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i) out += ',';
    append_int(out, offset);
    offset += code_points(entries[i].token);
  }
  out += "]}";
}

void append_sse_open(std::string& out) { out += "data: "; }
void append_sse_close(std::string& out) { out += "\n\n"; }

// ,"finish_reason":...,"stop_reason":... of an ended choice.
void append_finish(std::string& out, finish_reason f, const stop_reason& r) {
  key(out, "finish_reason");
  append_json_string(out, finish_reason_name(f));
  key(out, "stop_reason");
  append_stop_reason(out, r);
}

// The end of a streamed delta chunk: its finish (null while the choice goes on), the choice
// and choices closed, "usage":null when usage comes in a last chunk of its own.
void end_delta_chunk(std::string& out, const stream_info& s, const std::optional<finish_reason>& f,
                     const stop_reason& r) {
  if (f) {
    append_finish(out, *f, r);
  } else {
    key(out, "finish_reason");
    out += "null";
  }
  out += "}]";
  if (s.include_usage) out += ",\"usage\":null";
  out += '}';
  append_sse_close(out);
}

void append_usage_chunk(std::string& out, const stream_info& s, std::string_view object, const usage_info& u) {
  append_sse_open(out);
  append_head(out, s.id, object, s.created, s.model);
  out += ",\"choices\":[],\"usage\":";
  append_usage(out, u);
  out += '}';
  append_sse_close(out);
}

void append_base64(std::string& out, const unsigned char* p, size_t n) {
  static constexpr char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  out.reserve(out.size() + (n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const uint32_t v = uint32_t{p[i]} << 16 | uint32_t{p[i + 1]} << 8 | p[i + 2];
    out += digits[v >> 18 & 63];
    out += digits[v >> 12 & 63];
    out += digits[v >> 6 & 63];
    out += digits[v & 63];
  }
  if (i < n) {
    const uint32_t v = uint32_t{p[i]} << 16 | (i + 1 < n ? uint32_t{p[i + 1]} << 8 : 0);
    out += digits[v >> 18 & 63];
    out += digits[v >> 12 & 63];
    out += i + 1 < n ? digits[v >> 6 & 63] : '=';
    out += '=';
  }
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  out.reserve(out.size() + n + 2);
  out += '"';
  size_t run = 0;  // start of the bytes not yet copied
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    size_t bad = 0;
    if (c >= 0x80) {
      const size_t len = utf8_sequence(p + i, n - i, bad);
      if (len) {
        i += len;
        continue;
      }
    }
    out.append(s.data() + run, i - run);
    if (c >= 0x80) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      i += bad;
    } else {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
      }
      ++i;
    }
    run = i;
  }
  out.append(s.data() + run, n - run);
  out += '"';
}

const char* finish_reason_name(finish_reason r) {
  switch (r) {
    case finish_reason::stop: return "stop";
    case finish_reason::length: return "length";
    case finish_reason::tool_calls: return "tool_calls";
    case finish_reason::abort: return "abort";
  }
  return "stop";
}

std::vector<logprob_entry> logprob_entries(std::span<const sampled> tokens,
                                           const std::function<std::string(token_id)>& token_bytes) {
  std::vector<logprob_entry> out;
  out.reserve(tokens.size());
  for (const sampled& s : tokens) {
    logprob_entry e;
    e.token = token_bytes(s.id);
    e.logprob = s.logprob;
    e.top.reserve(s.top.size());
    for (const token_logprob& t : s.top) e.top.push_back({token_bytes(t.id), t.logprob});
    out.push_back(std::move(e));
  }
  return out;
}

std::string write_chat_completion(const chat_completion& c) {
  std::string out;
  out.reserve(256 + c.choices.size() * 128);
  append_head(out, c.id, "chat.completion", c.created, c.model);
  key(out, "choices");
  out += '[';
  for (size_t i = 0; i < c.choices.size(); ++i) {
    const chat_choice& ch = c.choices[i];
    if (i) out += ',';
    out += "{\"index\":";
    append_int(out, ch.index);
    key(out, "message");
    out += "{\"role\":\"assistant\",\"content\":";
    if (ch.content.empty() && !ch.tool_calls.empty()) out += "null";
    else append_json_string(out, ch.content);
    key(out, "refusal");
    out += "null";
    if (!ch.tool_calls.empty()) {
      key(out, "tool_calls");
      out += '[';
      for (size_t j = 0; j < ch.tool_calls.size(); ++j) {
        const tool_call_out& t = ch.tool_calls[j];
        if (j) out += ',';
        out += "{\"id\":";
        append_json_string(out, t.id);
        out += ",\"type\":\"function\",\"function\":{\"name\":";
        append_json_string(out, t.name);
        key(out, "arguments");
        append_json_string(out, t.arguments);
        out += "}}";
      }
      out += ']';
    }
    if (ch.reasoning_content) {
      key(out, "reasoning_content");
      append_json_string(out, *ch.reasoning_content);
    }
    out += '}';
    key(out, "logprobs");
    if (ch.logprobs) append_chat_logprobs(out, *ch.logprobs);
    else out += "null";
    append_finish(out, ch.finish_reason, ch.stop_reason);
    out += '}';
  }
  out += ']';
  key(out, "usage");
  append_usage(out, c.usage);
  out += '}';
  return out;
}

std::string write_completion(const completion& c) {
  std::string out;
  out.reserve(256 + c.choices.size() * 128);
  append_head(out, c.id, "text_completion", c.created, c.model);
  key(out, "choices");
  out += '[';
  for (size_t i = 0; i < c.choices.size(); ++i) {
    const completion_choice& ch = c.choices[i];
    if (i) out += ',';
    out += "{\"index\":";
    append_int(out, ch.index);
    key(out, "text");
    append_json_string(out, ch.text);
    key(out, "logprobs");
    if (ch.logprobs) append_completion_logprobs(out, *ch.logprobs, ch.text_offset_base);
    else out += "null";
    append_finish(out, ch.finish_reason, ch.stop_reason);
    out += '}';
  }
  out += ']';
  key(out, "usage");
  append_usage(out, c.usage);
  out += '}';
  return out;
}

void append_chat_chunk(std::string& out, const stream_info& s, const chat_delta& d) {
  append_sse_open(out);
  append_head(out, s.id, "chat.completion.chunk", s.created, s.model);
  key(out, "choices");
  out += "[{\"index\":";
  append_int(out, d.index);
  key(out, "delta");
  out += '{';
  bool first = true;
  if (d.role) {
    out += "\"role\":\"assistant\"";
    first = false;
  }
  if (d.role || !d.content.empty()) {
    key(out, "content", first);
    append_json_string(out, d.content);
    first = false;
  }
  if (!d.reasoning_content.empty()) {
    key(out, "reasoning_content", first);
    append_json_string(out, d.reasoning_content);
    first = false;
  }
  if (!d.tool_calls.empty()) {
    key(out, "tool_calls", first);
    out += '[';
    for (size_t j = 0; j < d.tool_calls.size(); ++j) {
      const tool_call_delta& t = d.tool_calls[j];
      if (j) out += ',';
      out += "{\"index\":";
      append_int(out, t.index);
      if (!t.id.empty()) {
        key(out, "id");
        append_json_string(out, t.id);
        out += ",\"type\":\"function\"";
      }
      out += ",\"function\":{";
      if (!t.name.empty()) {
        out += "\"name\":";
        append_json_string(out, t.name);
        out += ',';
      }
      out += "\"arguments\":";
      append_json_string(out, t.arguments);
      out += "}}";
    }
    out += ']';
  }
  out += '}';
  key(out, "logprobs");
  if (d.logprobs) append_chat_logprobs(out, *d.logprobs);
  else out += "null";
  end_delta_chunk(out, s, d.finish_reason, d.stop_reason);
}

void append_chat_usage_chunk(std::string& out, const stream_info& s, const usage_info& u) {
  append_usage_chunk(out, s, "chat.completion.chunk", u);
}

void append_completion_chunk(std::string& out, const stream_info& s, const completion_delta& d) {
  append_sse_open(out);
  append_head(out, s.id, "text_completion", s.created, s.model);
  key(out, "choices");
  out += "[{\"index\":";
  append_int(out, d.index);
  key(out, "text");
  append_json_string(out, d.text);
  key(out, "logprobs");
  if (d.logprobs) append_completion_logprobs(out, *d.logprobs, d.text_offset);
  else out += "null";
  end_delta_chunk(out, s, d.finish_reason, d.stop_reason);
}

void append_completion_usage_chunk(std::string& out, const stream_info& s, const usage_info& u) {
  append_usage_chunk(out, s, "text_completion", u);
}

std::string write_embeddings(const embedding_response& r) {
  static_assert(std::endian::native == std::endian::little, "base64 embeddings are little-endian float32");
  std::string out;
  size_t n_floats = 0;
  for (const auto& e : r.embeddings) n_floats += e.size();
  out.reserve(128 + n_floats * (r.encoding_format == encoding_format::base64 ? 6 : 12));
  out += "{\"object\":\"list\",\"data\":[";
  for (size_t i = 0; i < r.embeddings.size(); ++i) {
    const auto& e = r.embeddings[i];
    if (i) out += ',';
    out += "{\"object\":\"embedding\",\"embedding\":";
    if (r.encoding_format == encoding_format::base64) {
      out += '"';
      append_base64(out, reinterpret_cast<const unsigned char*>(e.data()), e.size() * sizeof(float));
      out += '"';
    } else {
      out += '[';
      for (size_t j = 0; j < e.size(); ++j) {
        if (j) out += ',';
        append_float(out, e[j]);
      }
      out += ']';
    }
    key(out, "index");
    append_int(out, static_cast<int64_t>(i));
    out += '}';
  }
  out += ']';
  key(out, "model");
  append_json_string(out, r.model);
  key(out, "usage");
  out += "{\"prompt_tokens\":";
  append_int(out, r.prompt_tokens);
  key(out, "total_tokens");
  append_int(out, r.prompt_tokens);
  out += "}}";
  return out;
}

namespace {
void append_model(std::string& out, const model_card& m) {
  out += "{\"id\":";
  append_json_string(out, m.id);
  out += ",\"object\":\"model\"";
  key(out, "created");
  append_int(out, m.created);
  key(out, "owned_by");
  append_json_string(out, m.owned_by);
  if (m.max_model_len) {
    key(out, "max_model_len");
    append_int(out, *m.max_model_len);
  }
  if (m.embedding_pooling) {
    key(out, "embedding");
    out += "{\"pooling\":";
    append_json_string(out, *m.embedding_pooling);
    key(out, "dimensions");
    append_int(out, m.embedding_dimensions);
    out += ",\"normalized\":true}";
  }
  out += '}';
}
}  // namespace

std::string write_model(const model_card& m) {
  std::string out;
  append_model(out, m);
  return out;
}

std::string write_model_list(std::span<const model_card> models) {
  std::string out = "{\"object\":\"list\",\"data\":[";
  for (size_t i = 0; i < models.size(); ++i) {
    if (i) out += ',';
    append_model(out, models[i]);
  }
  out += "]}";
  return out;
}

std::string write_error(const api_error& e) {
  std::string out = "{\"error\":{\"message\":";
  append_json_string(out, e.message);
  key(out, "type");
  append_json_string(out, e.type);
  key(out, "param");
  append_optional_string(out, e.param);
  key(out, "code");
  append_optional_string(out, e.code);
  out += "}}";
  return out;
}

std::string new_request_id(std::string_view prefix) {
  thread_local std::mt19937_64 gen = [] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }();
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(prefix);
  out += '-';
  for (int k = 0; k < 2; ++k) {
    uint64_t v = gen();
    for (int i = 0; i < 16; ++i, v >>= 4) out += hex[v & 15];
  }
  return out;
}

int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace troupe::openai
