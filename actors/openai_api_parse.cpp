// openai_api_parse: OpenAI request bodies to typed requests with simdjson's DOM, naming the field
// of every problem as the API spells it.
#include <array>
#include <charconv>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <simdjson.h>

#include "actors/openai_api.hpp"
#include "runtime/structured/constraint_spec.hpp"

// Returns the error of an expression giving std::optional<api_error>, if it has one.
#define OPENAI_TRY(expr)                                   \
  do {                                                     \
    if (auto openai_try_e_ = (expr)) return std::move(*openai_try_e_); \
  } while (0)

namespace troupe::openai {

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;
using maybe_error = std::optional<api_error>;
using ojson = nlohmann::ordered_json;

// Everything that walks a parsed document recurses at most this deep; simdjson enforces it.
constexpr size_t k_max_depth = 64;
// Bodies up to this size reuse a per-thread parser; larger ones get their own, so that no
// server thread keeps a large buffer after one large request.
constexpr size_t k_cached_parser_bytes = size_t{1} << 20;
constexpr int32_t k_max_n = 128;
constexpr size_t k_max_stop = 16;           // as sampling_params::validate allows
constexpr size_t k_max_embedding_inputs = 2048;  // OpenAI's limit
constexpr int64_t k_int32_max = std::numeric_limits<int32_t>::max();

simdjson::dom::parser new_parser(size_t capacity) {
  simdjson::dom::parser p;
  // A failure here resurfaces as an error from parse(), which allocates again.
  [[maybe_unused]] const auto err = p.allocate(capacity, k_max_depth);
  return p;
}

// slot 0 parses bodies, slot 1 the tool-call arguments inside them while the body's document
// is still in use.
class scoped_parser {
 public:
  scoped_parser(int slot, size_t n_bytes) {
    if (n_bytes <= k_cached_parser_bytes) {
      thread_local std::array<simdjson::dom::parser, 2> cached = {new_parser(64 * 1024),
                                                                  new_parser(4 * 1024)};
      p_ = &cached[static_cast<size_t>(slot)];
    } else {
      own_.emplace(new_parser(n_bytes));
      p_ = &*own_;
    }
  }
  simdjson::dom::parser& get() { return *p_; }

 private:
  std::optional<simdjson::dom::parser> own_;
  simdjson::dom::parser* p_ = nullptr;
};

// v's value as T, for a type already checked.
template <class T>
T get_as(element v) {
  T x{};
  [[maybe_unused]] const auto err = v.get(x);
  return x;
}

const char* describe(element v) {
  switch (v.type()) {
    case element_type::ARRAY: return "an array";
    case element_type::OBJECT: return "an object";
    case element_type::INT64:
    case element_type::UINT64: return "an integer";
    case element_type::DOUBLE: return "a decimal number";
    case element_type::STRING: return "a string";
    case element_type::BOOL: return "a boolean";
    case element_type::NULL_VALUE: return "null";
  }
  return "a value";
}

// A string for a message: quoted, and cut short so that a huge value does not fill the error.
std::string quote_short(std::string_view s) {
  constexpr size_t k_max = 40;
  if (s.size() <= k_max) return fmt::format("\"{}\"", s);
  size_t cut = k_max;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // whole characters
  return fmt::format("\"{}...\"", s.substr(0, cut));
}

std::string number_text(element v) {
  switch (v.type()) {
    case element_type::INT64: return fmt::format("{}", get_as<int64_t>(v));
    case element_type::UINT64: return fmt::format("{}", get_as<uint64_t>(v));
    case element_type::DOUBLE: return fmt::format("{}", get_as<double>(v));
    default: return describe(v);
  }
}

api_error wrong_type(std::string_view param, std::string_view expected, element got) {
  return invalid_request(std::string(param),
                         fmt::format("'{}' must be {}, not {}", param, expected, describe(got)),
                         "invalid_type");
}

api_error missing(std::string_view param, std::string_view why) {
  return invalid_request(std::string(param), fmt::format("'{}' is required: {}", param, why),
                         "missing_required_parameter");
}

api_error bad_value(std::string_view param, std::string message) {
  return invalid_request(std::string(param), std::move(message), "invalid_value");
}

api_error unsupported(std::string_view param, std::string message) {
  return invalid_request(std::string(param), std::move(message), "unsupported_value");
}

bool number_of(element v, double& out) {
  switch (v.type()) {
    case element_type::INT64: out = static_cast<double>(get_as<int64_t>(v)); return true;
    case element_type::UINT64: out = static_cast<double>(get_as<uint64_t>(v)); return true;
    case element_type::DOUBLE: out = get_as<double>(v); return true;
    default: return false;
  }
}

maybe_error read_bool(element v, std::string_view param, bool& out) {
  bool b = false;
  if (v.get(b) != simdjson::SUCCESS) return wrong_type(param, "true or false", v);
  out = b;
  return {};
}

maybe_error read_string(element v, std::string_view param, std::string& out) {
  std::string_view s;
  if (v.get(s) != simdjson::SUCCESS) return wrong_type(param, "a string", v);
  out.assign(s);
  return {};
}

// A number in a range; allowed says the range in words ("between 0 and 2").
maybe_error read_float(element v, std::string_view param, double lo, double hi, bool lo_open,
                       std::string_view allowed, float& out) {
  double d = 0;
  if (!number_of(v, d)) return wrong_type(param, fmt::format("a number {}", allowed), v);
  // The range holds for the float the sampler gets: 1e-50 is above 0 but its float is not.
  const float f = static_cast<float>(d);
  if (!(lo_open ? f > lo : f >= lo) || !(f <= hi))
    return bad_value(param, fmt::format("'{}' must be {}; got {}", param, allowed, number_text(v)));
  out = f;
  return {};
}

// An integer in [lo, hi]. A number with no fraction (2.0, as Python clients may write) counts.
maybe_error read_int(element v, std::string_view param, int64_t lo, int64_t hi,
                     std::string_view allowed, int64_t& out) {
  int64_t x = 0;
  switch (v.type()) {
    case element_type::INT64: x = get_as<int64_t>(v); break;
    case element_type::UINT64:
      return bad_value(param, fmt::format("'{}' must be {}; got {}", param, allowed, number_text(v)));
    case element_type::DOUBLE: {
      const double d = get_as<double>(v);
      if (d != std::floor(d))
        return wrong_type(param, fmt::format("an integer {}", allowed), v);
      if (!(d >= -9.0e18 && d <= 9.0e18))
        return bad_value(param, fmt::format("'{}' must be {}; got {}", param, allowed, number_text(v)));
      x = static_cast<int64_t>(d);
      break;
    }
    default: return wrong_type(param, fmt::format("an integer {}", allowed), v);
  }
  if (x < lo || x > hi)
    return bad_value(param, fmt::format("'{}' must be {}; got {}", param, allowed, number_text(v)));
  out = x;
  return {};
}

template <class I>
maybe_error read_int_as(element v, std::string_view param, int64_t lo, int64_t hi,
                        std::string_view allowed, I& out) {
  int64_t x = 0;
  OPENAI_TRY(read_int(v, param, lo, hi, allowed, x));
  out = static_cast<I>(x);
  return {};
}

maybe_error read_token_id(element v, std::string_view param, token_id& out) {
  return read_int_as(v, param, 0, k_int32_max, "from 0 to 2147483647 (a token id)", out);
}

// The document's value as nlohmann's ordered tree: objects keep the client's key order, and a
// repeated key keeps its first place and last value, as a Python dict would.
ojson to_json(element v, size_t depth = 0) {
  if (depth > k_max_depth) return nullptr;  // simdjson's depth limit makes this unreachable
  switch (v.type()) {
    case element_type::ARRAY: {
      ojson a = ojson::array();
      for (element x : get_as<simdjson::dom::array>(v)) a.push_back(to_json(x, depth + 1));
      return a;
    }
    case element_type::OBJECT: {
      ojson o = ojson::object();
      for (auto field : get_as<simdjson::dom::object>(v))
        o[std::string(field.key)] = to_json(field.value, depth + 1);
      return o;
    }
    case element_type::INT64: return get_as<int64_t>(v);
    case element_type::UINT64: return get_as<uint64_t>(v);
    case element_type::DOUBLE: return get_as<double>(v);
    case element_type::STRING: return std::string(get_as<std::string_view>(v));
    case element_type::BOOL: return get_as<bool>(v);
    case element_type::NULL_VALUE: return nullptr;
  }
  return nullptr;
}

api_error body_error(simdjson::error_code code) {
  std::string message;
  switch (code) {
    case simdjson::EMPTY: message = "The request body is empty: send a JSON object"; break;
    case simdjson::DEPTH_ERROR:
      message = fmt::format("The request body nests arrays and objects more than {} levels deep",
                            k_max_depth);
      break;
    case simdjson::UTF8_ERROR: message = "The request body is not valid UTF-8"; break;
    case simdjson::CAPACITY:
    case simdjson::MEMALLOC: message = "The request body is too large to parse"; break;
    default:
      message = fmt::format("The request body is not valid JSON ({})", simdjson::error_message(code));
  }
  return invalid_request("", std::move(message), "invalid_json");
}

api_result<simdjson::dom::object> parse_object(simdjson::dom::parser& p, std::string_view body) {
  element root;
  if (const auto err = p.parse(body.data(), body.size()).get(root)) return body_error(err);
  simdjson::dom::object obj;
  if (root.get(obj) != simdjson::SUCCESS)
    return invalid_request("", fmt::format("The request body must be a JSON object, not {}", describe(root)),
                           "invalid_type");
  return obj;
}

// ---- fields that chat and text completions share

struct shared_state {
  std::optional<int64_t> best_of;
  bool stream_options = false;
};

maybe_error read_stop(element v, std::vector<std::string>& out) {
  out.clear();
  std::string_view s;
  if (v.get(s) == simdjson::SUCCESS) {
    if (s.empty()) return bad_value("stop", "'stop' must not be an empty string");
    out.emplace_back(s);
    return {};
  }
  simdjson::dom::array a;
  if (v.get(a) != simdjson::SUCCESS)
    return wrong_type("stop", "a string or an array of up to 16 strings", v);
  size_t i = 0;
  for (element x : a) {
    const std::string param = fmt::format("stop[{}]", i++);
    if (x.get(s) != simdjson::SUCCESS) return wrong_type(param, "a string", x);
    if (s.empty()) return bad_value(param, fmt::format("'{}' must not be an empty string", param));
    out.emplace_back(s);
  }
  if (out.size() > k_max_stop)
    return bad_value("stop", fmt::format("'stop' may hold at most {} strings; got {}", k_max_stop, out.size()));
  return {};
}

maybe_error read_logit_bias(element v, std::vector<std::pair<token_id, float>>& out) {
  out.clear();
  simdjson::dom::object o;
  if (v.get(o) != simdjson::SUCCESS)
    return wrong_type("logit_bias", "an object mapping token ids (as strings) to numbers between -100 and 100", v);
  for (auto field : o) {
    const std::string_view key = field.key;
    int64_t id = -1;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (key.empty() || ec != std::errc{} || end != key.data() + key.size() || id < 0 || id > k_int32_max)
      return bad_value("logit_bias", fmt::format("'logit_bias' keys must be token ids such as \"50256\"; got {}",
                                                 quote_short(key)));
    double bias = 0;
    if (!number_of(field.value, bias))
      return wrong_type("logit_bias", fmt::format("a number between -100 and 100 for token {}", id), field.value);
    if (!(bias >= -100.0 && bias <= 100.0))
      return bad_value("logit_bias", fmt::format("'logit_bias' for token {} must be between -100 and 100; got {}",
                                                 id, number_text(field.value)));
    out.emplace_back(static_cast<token_id>(id), static_cast<float>(bias));
  }
  return {};
}

maybe_error read_seed(element v, std::optional<uint64_t>& out) {
  switch (v.type()) {
    case element_type::INT64: out = static_cast<uint64_t>(get_as<int64_t>(v)); return {};
    case element_type::UINT64: out = get_as<uint64_t>(v); return {};
    case element_type::DOUBLE: {
      const double d = get_as<double>(v);
      if (d == std::floor(d) && d >= -9.0e18 && d <= 9.0e18) {
        out = static_cast<uint64_t>(static_cast<int64_t>(d));
        return {};
      }
      return wrong_type("seed", "an integer", v);
    }
    default: return wrong_type("seed", "an integer", v);
  }
}

maybe_error read_stream_options(element v, bool& include_usage) {
  simdjson::dom::object o;
  if (v.get(o) != simdjson::SUCCESS)
    return wrong_type("stream_options", "an object such as {\"include_usage\": true}", v);
  for (auto field : o) {
    if (field.key == "include_usage" && !field.value.is_null())
      OPENAI_TRY(read_bool(field.value, "stream_options.include_usage", include_usage));
    else if (field.key == "continuous_usage_stats" && !field.value.is_null()) {
      bool ignored = false;  // vLLM's; usage per chunk is not offered
      OPENAI_TRY(read_bool(field.value, "stream_options.continuous_usage_stats", ignored));
    }
  }
  return {};
}

// A spec the grammar compiler must accept; param names the schema's field for the 400.
maybe_error check_spec(const std::string& spec, std::string_view param) {
  auto g = structured::grammar_of_spec(spec);
  if (!g.ok()) return unsupported(param, fmt::format("'{}': {}", param, g.message()));
  return {};
}

// A JSON Schema given as an object, or as a string holding one (vLLM's guided_json allows it).
maybe_error read_schema(element v, std::string_view param, ojson& out) {
  std::string_view text;
  if (v.get(text) == simdjson::SUCCESS) {
    out = ojson::parse(text, nullptr, false);
    if (out.is_discarded()) return bad_value(param, fmt::format("'{}' is a string that is not JSON", param));
  } else {
    out = to_json(v);
  }
  if (!out.is_object() && !out.is_boolean()) return wrong_type(param, "a JSON Schema object", v);
  return {};
}

maybe_error read_response_format(element v, std::string& constraint) {
  simdjson::dom::object o;
  if (v.get(o) != simdjson::SUCCESS) return wrong_type("response_format", "an object such as {\"type\": \"json_object\"}", v);
  std::string type;
  bool have_type = false;
  std::optional<element> js;
  for (auto field : o) {
    if (field.key == "type") {
      OPENAI_TRY(read_string(field.value, "response_format.type", type));
      have_type = true;
    } else if (field.key == "json_schema" && !field.value.is_null()) {
      js = field.value;
    }
  }
  const char* types = "\"text\", \"json_object\" or \"json_schema\"";
  if (!have_type) return missing("response_format.type", types);
  if (type == "text") return {};
  if (type == "json_object") {
    constraint = structured::json_object_spec();
    return {};
  }
  if (type != "json_schema")
    return bad_value("response_format.type", fmt::format("'response_format.type' must be {}; got {}", types, quote_short(type)));
  if (!js) return missing("response_format.json_schema", "give {\"name\", \"schema\"} for type json_schema");
  simdjson::dom::object jo;
  if (js->get(jo) != simdjson::SUCCESS)
    return wrong_type("response_format.json_schema", "an object with name, schema and strict", *js);
  std::optional<element> schema;
  bool have_name = false;
  for (auto field : jo) {
    if (field.value.is_null()) continue;
    if (field.key == "schema") {
      schema = field.value;
    } else if (field.key == "name") {
      std::string name;
      OPENAI_TRY(read_string(field.value, "response_format.json_schema.name", name));
      have_name = true;
    } else if (field.key == "strict") {
      bool strict = false;  // outputs always follow the schema, strict or not
      OPENAI_TRY(read_bool(field.value, "response_format.json_schema.strict", strict));
    } else if (field.key == "description") {
      std::string d;
      OPENAI_TRY(read_string(field.value, "response_format.json_schema.description", d));
    }
  }
  if (!have_name) return missing("response_format.json_schema.name", "name the schema (a-z, A-Z, 0-9, _ and -)");
  ojson s = ojson::object();  // OpenAI: a missing schema is an empty one (any JSON)
  if (schema) OPENAI_TRY(read_schema(*schema, "response_format.json_schema.schema", s));
  constraint = structured::json_schema_spec(s);
  return check_spec(constraint, "response_format.json_schema.schema");
}

// vLLM's structured_outputs: {"json": schema} or {"json_object": true}; other kinds are refused.
maybe_error read_structured_outputs(element v, std::string& constraint) {
  simdjson::dom::object o;
  if (v.get(o) != simdjson::SUCCESS) return wrong_type("structured_outputs", "an object such as {\"json\": {...}}", v);
  for (auto field : o) {
    if (field.value.is_null()) continue;
    const std::string param = fmt::format("structured_outputs.{}", field.key);
    if (field.key == "json") {
      ojson s;
      OPENAI_TRY(read_schema(field.value, param, s));
      constraint = structured::json_schema_spec(s);
      OPENAI_TRY(check_spec(constraint, param));
    } else if (field.key == "json_object") {
      bool on = false;
      OPENAI_TRY(read_bool(field.value, param, on));
      if (on) constraint = structured::json_object_spec();
    } else {
      return unsupported(param, fmt::format("'{}' is not supported: troupe constrains outputs to JSON (json, "
                                            "json_object), not to regular expressions, choices or grammars", param));
    }
  }
  return {};
}

// Reads key if it is one of the shared fields; handled says whether it was.
maybe_error shared_field(std::string_view key, element v, generation_request& g, shared_state& s,
                         bool& handled) {
  handled = true;
  sampling_params& p = g.params;
  if (key == "model") {
    OPENAI_TRY(read_string(v, "model", g.model));
  } else if (key == "max_tokens") {
    int32_t m = 0;
    OPENAI_TRY(read_int_as(v, "max_tokens", 0, k_int32_max, "at least 1", m));  // 0: see the callers
    g.max_tokens = m;
  } else if (key == "temperature") {
    OPENAI_TRY(read_float(v, "temperature", 0, 100, false, "between 0 and 100 (0 is greedy)", p.temperature));
  } else if (key == "top_p") {
    OPENAI_TRY(read_float(v, "top_p", 0, 1, true,
                          "greater than 0 and at most 1 (for greedy decoding set temperature to 0)", p.top_p));
  } else if (key == "n") {
    OPENAI_TRY(read_int_as(v, "n", 1, k_max_n, fmt::format("between 1 and {}", k_max_n), g.n));
  } else if (key == "best_of") {
    int64_t b = 0;
    OPENAI_TRY(read_int(v, "best_of", 1, k_max_n, fmt::format("between 1 and {}", k_max_n), b));
    s.best_of = b;
  } else if (key == "stream") {
    OPENAI_TRY(read_bool(v, "stream", g.stream));
  } else if (key == "stream_options") {
    OPENAI_TRY(read_stream_options(v, g.include_usage));
    s.stream_options = true;
  } else if (key == "stop") {
    OPENAI_TRY(read_stop(v, p.stop));
  } else if (key == "presence_penalty") {
    OPENAI_TRY(read_float(v, "presence_penalty", -2, 2, false, "between -2 and 2", p.presence_penalty));
  } else if (key == "frequency_penalty") {
    OPENAI_TRY(read_float(v, "frequency_penalty", -2, 2, false, "between -2 and 2", p.frequency_penalty));
  } else if (key == "logit_bias") {
    OPENAI_TRY(read_logit_bias(v, p.logit_bias));
  } else if (key == "seed") {
    OPENAI_TRY(read_seed(v, p.seed));
  } else if (key == "user") {
    std::string u;
    OPENAI_TRY(read_string(v, "user", u));
    g.user = std::move(u);
  } else if (key == "top_k") {
    OPENAI_TRY(read_int_as(v, "top_k", -1, k_int32_max, "at least -1 (-1 and 0 turn it off)", p.top_k));
  } else if (key == "min_p") {
    OPENAI_TRY(read_float(v, "min_p", 0, 1, false, "between 0 and 1", p.min_p));
  } else if (key == "repetition_penalty") {
    OPENAI_TRY(read_float(v, "repetition_penalty", 0, 100, true, "greater than 0 and at most 100 (1 is off)",
                          p.repetition_penalty));
  } else if (key == "min_tokens") {
    OPENAI_TRY(read_int_as(v, "min_tokens", 0, k_int32_max, "at least 0", p.min_tokens));
  } else if (key == "ignore_eos") {
    OPENAI_TRY(read_bool(v, "ignore_eos", p.ignore_eos));
  } else if (key == "stop_token_ids") {
    simdjson::dom::array a;
    if (v.get(a) != simdjson::SUCCESS) return wrong_type("stop_token_ids", "an array of token ids", v);
    p.stop_token_ids.clear();
    size_t i = 0;
    for (element x : a) {
      token_id id = 0;
      OPENAI_TRY(read_token_id(x, fmt::format("stop_token_ids[{}]", i++), id));
      p.stop_token_ids.push_back(id);
    }
  } else if (key == "skip_special_tokens") {
    OPENAI_TRY(read_bool(v, "skip_special_tokens", g.skip_special_tokens));
  } else if (key == "priority") {
    OPENAI_TRY(read_int_as(v, "priority", std::numeric_limits<int32_t>::min(), k_int32_max,
                           "from -2147483648 to 2147483647", g.priority));
  } else if (key == "response_format") {
    OPENAI_TRY(read_response_format(v, g.constraint));
  } else if (key == "guided_json") {
    ojson schema;
    OPENAI_TRY(read_schema(v, "guided_json", schema));
    g.constraint = structured::json_schema_spec(schema);
    OPENAI_TRY(check_spec(g.constraint, "guided_json"));
  } else if (key == "structured_outputs") {
    OPENAI_TRY(read_structured_outputs(v, g.constraint));
  } else if (key.starts_with("guided_")) {
    // vLLM's other constraints: ignoring one would pass unconstrained text off as constrained.
    return unsupported(key, fmt::format("'{}' is not supported: troupe constrains outputs to JSON (response_format, "
                                        "guided_json), not to regular expressions, choices or grammars", key));
  } else {
    handled = false;
  }
  return {};
}

// Checks between shared fields, once all are read.
maybe_error finish_shared(generation_request& g, const shared_state& s) {
  if (g.model.empty())
    return missing("model", "name the model to use (GET /v1/models lists them)");
  if (s.best_of && *s.best_of != g.n)
    return unsupported("best_of", fmt::format("'best_of' must equal 'n' (every sampled choice is returned); "
                                              "got best_of {} with n {}", *s.best_of, g.n));
  if (s.stream_options && !g.stream)
    return bad_value("stream_options", "'stream_options' is only allowed when 'stream' is true");
  if (g.max_tokens) {
    g.params.max_tokens = *g.max_tokens;
    if (g.params.min_tokens > *g.max_tokens)
      return bad_value("min_tokens", fmt::format("'min_tokens' ({}) must not exceed 'max_tokens' ({})",
                                                 g.params.min_tokens, *g.max_tokens));
  }
  return {};
}

// ---- prompts and embedding inputs

// A token array; param names the array ("prompt", "prompt[2]").
maybe_error read_tokens(simdjson::dom::array a, const std::string& param, std::vector<token_id>& out) {
  size_t j = 0;
  for (element x : a) {
    token_id id = 0;
    OPENAI_TRY(read_token_id(x, fmt::format("{}[{}]", param, j++), id));
    out.push_back(id);
  }
  if (out.empty()) return bad_value(param, fmt::format("'{}' must not be an empty array of token ids", param));
  return {};
}

// A string, an array of strings, an array of token ids, or an array of arrays of token ids.
maybe_error read_prompts(element v, std::string_view name, size_t max_items, std::vector<prompt_input>& out,
                         bool& batch) {
  out.clear();
  batch = false;
  const std::string what = "a string, an array of strings, an array of token ids or an array of arrays of token ids";
  std::string_view s;
  if (v.get(s) == simdjson::SUCCESS) {
    if (s.empty()) return bad_value(name, fmt::format("'{}' must not be empty", name));
    out.push_back({std::string(s), {}, false});
    return {};
  }
  simdjson::dom::array a;
  if (v.get(a) != simdjson::SUCCESS) return wrong_type(name, what, v);
  if (a.size() == 0) return bad_value(name, fmt::format("'{}' must not be an empty array", name));
  element first_value;
  [[maybe_unused]] const auto err = a.at(0).get(first_value);
  const element_type first = first_value.type();
  if (first == element_type::INT64 || first == element_type::UINT64 || first == element_type::DOUBLE) {
    prompt_input p;
    p.is_tokens = true;
    OPENAI_TRY(read_tokens(a, std::string(name), p.tokens));
    out.push_back(std::move(p));
    return {};
  }
  if (first != element_type::STRING && first != element_type::ARRAY)
    return wrong_type(fmt::format("{}[0]", name), "a string, a token id or an array of token ids", first_value);
  batch = true;
  if (a.size() > max_items)
    return bad_value(name, fmt::format("'{}' may hold at most {} items; got {}", name, max_items, a.size()));
  size_t i = 0;
  for (element x : a) {
    const std::string param = fmt::format("{}[{}]", name, i++);
    prompt_input p;
    if (first == element_type::STRING) {
      if (x.get(s) != simdjson::SUCCESS)
        return wrong_type(param, fmt::format("a string (as {}[0] is)", name), x);
      if (s.empty()) return bad_value(param, fmt::format("'{}' must not be empty", param));
      p.text = s;
    } else {
      simdjson::dom::array inner;
      if (x.get(inner) != simdjson::SUCCESS)
        return wrong_type(param, fmt::format("an array of token ids (as {}[0] is)", name), x);
      p.is_tokens = true;
      OPENAI_TRY(read_tokens(inner, param, p.tokens));
    }
    out.push_back(std::move(p));
  }
  return {};
}

// ---- chat messages and tools

maybe_error read_content(element v, const std::string& at, chat_message& m) {
  const std::string param = at + ".content";
  std::string_view s;
  if (v.get(s) == simdjson::SUCCESS) {
    m.content = std::string(s);
    return {};
  }
  simdjson::dom::array a;
  if (v.get(a) != simdjson::SUCCESS)
    return wrong_type(param, "a string or an array of {\"type\": \"text\", \"text\": ...} parts", v);
  if (a.size() == 0)
    return bad_value(param, fmt::format("'{}' must not be an empty array: give a string or text parts", param));
  size_t j = 0;
  std::string joined;
  for (element part : a) {
    const std::string pat = fmt::format("{}[{}]", param, j++);
    simdjson::dom::object o;
    if (part.get(o) != simdjson::SUCCESS)
      return wrong_type(pat, "an object such as {\"type\": \"text\", \"text\": \"...\"}", part);
    std::optional<element> type_v, text_v;
    for (auto field : o) {
      if (field.key == "type") type_v = field.value;
      else if (field.key == "text") text_v = field.value;
    }
    if (!type_v || type_v->is_null()) return missing(pat + ".type", "content parts are {\"type\": \"text\", \"text\": ...}");
    std::string type;
    OPENAI_TRY(read_string(*type_v, pat + ".type", type));
    if (type != "text")
      return unsupported(pat + ".type",
                         fmt::format("content parts of type {} are not supported: the served model reads text "
                                     "only, so parts must be {{\"type\": \"text\", \"text\": ...}}",
                                     quote_short(type)));
    if (!text_v || text_v->is_null()) return missing(pat + ".text", "a text part carries its text");
    std::string text;
    OPENAI_TRY(read_string(*text_v, pat + ".text", text));
    if (!m.content_parts.empty()) joined += '\n';
    joined += text;
    m.content_parts.push_back(std::move(text));
  }
  m.content = std::move(joined);
  return {};
}

// Parses a tool call's arguments string: kept as an object for templates when it is one.
std::optional<ojson> arguments_object(std::string_view args) {
  scoped_parser sp(1, args.size());
  element root;
  if (sp.get().parse(args.data(), args.size()).get(root) != simdjson::SUCCESS ||
      root.type() != element_type::OBJECT)
    return std::nullopt;
  return to_json(root);
}

maybe_error read_tool_calls(element v, const std::string& at, chat_message& m) {
  const std::string param = at + ".tool_calls";
  simdjson::dom::array a;
  if (v.get(a) != simdjson::SUCCESS) return wrong_type(param, "an array of tool calls", v);
  size_t j = 0;
  for (element x : a) {
    const std::string pat = fmt::format("{}[{}]", param, j++);
    simdjson::dom::object o;
    if (x.get(o) != simdjson::SUCCESS)
      return wrong_type(pat, "an object such as {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}", x);
    tool_call call;
    std::optional<element> fn;
    for (auto field : o) {
      if (field.value.is_null()) continue;
      if (field.key == "id") {
        OPENAI_TRY(read_string(field.value, pat + ".id", call.id));
      } else if (field.key == "type") {
        std::string type;
        OPENAI_TRY(read_string(field.value, pat + ".type", type));
        if (type != "function")
          return unsupported(pat + ".type", fmt::format("'{}.type' must be \"function\"; got {}", pat, quote_short(type)));
      } else if (field.key == "function") {
        fn = field.value;
      }
    }
    if (!fn) return missing(pat + ".function", "a tool call names its function and arguments");
    simdjson::dom::object f;
    if (fn->get(f) != simdjson::SUCCESS) return wrong_type(pat + ".function", "an object with name and arguments", *fn);
    bool have_name = false, have_args = false;
    for (auto field : f) {
      if (field.value.is_null()) continue;
      if (field.key == "name") {
        OPENAI_TRY(read_string(field.value, pat + ".function.name", call.name));
        have_name = true;
      } else if (field.key == "arguments") {
        have_args = true;
        if (field.value.type() == element_type::OBJECT) {
          // Some clients send the object itself; templates get it as is, and the string form
          // is its compact encoding.
          call.arguments_object = to_json(field.value);
          call.arguments = call.arguments_object->dump(-1, ' ', false, ojson::error_handler_t::replace);
        } else {
          OPENAI_TRY(read_string(field.value, pat + ".function.arguments", call.arguments));
          call.arguments_object = arguments_object(call.arguments);
        }
      }
    }
    if (!have_name) return missing(pat + ".function.name", "a tool call names the function it calls");
    if (!have_args) return missing(pat + ".function.arguments", "a tool call carries its arguments as a JSON string");
    m.tool_calls.push_back(std::move(call));
  }
  return {};
}

maybe_error read_role(element v, const std::string& at, role& out) {
  std::string_view s;
  if (v.get(s) != simdjson::SUCCESS) return wrong_type(at + ".role", "a string", v);
  static constexpr std::pair<std::string_view, role> roles[] = {
      {"system", role::system}, {"developer", role::developer}, {"user", role::user},
      {"assistant", role::assistant}, {"tool", role::tool}};
  for (const auto& [name, r] : roles)
    if (s == name) {
      out = r;
      return {};
    }
  return bad_value(at + ".role", fmt::format("'{}.role' is {}, which is not a role: use one of system, developer, "
                                             "user, assistant or tool", at, quote_short(s)));
}

maybe_error read_message(element v, size_t i, chat_message& m) {
  const std::string at = fmt::format("messages[{}]", i);
  simdjson::dom::object o;
  if (v.get(o) != simdjson::SUCCESS)
    return wrong_type(at, "an object such as {\"role\": \"user\", \"content\": \"...\"}", v);
  std::optional<element> role_v, content_v;
  for (auto field : o) {
    if (field.value.is_null()) continue;
    const std::string_view key = field.key;
    if (key == "role") {
      role_v = field.value;
    } else if (key == "content") {
      content_v = field.value;
    } else if (key == "name") {
      std::string name;
      OPENAI_TRY(read_string(field.value, at + ".name", name));
      m.name = std::move(name);
    } else if (key == "tool_calls") {
      m.tool_calls.clear();
      OPENAI_TRY(read_tool_calls(field.value, at, m));
    } else if (key == "tool_call_id") {
      std::string id;
      OPENAI_TRY(read_string(field.value, at + ".tool_call_id", id));
      m.tool_call_id = std::move(id);
    } else if (key == "reasoning_content") {
      std::string r;
      OPENAI_TRY(read_string(field.value, at + ".reasoning_content", r));
      m.reasoning_content = std::move(r);
    }
  }
  if (!role_v) return missing(at + ".role", "one of system, developer, user, assistant or tool");
  OPENAI_TRY(read_role(*role_v, at, m.role));
  if (content_v) {
    OPENAI_TRY(read_content(*content_v, at, m));
  } else if (m.role != role::assistant) {
    // An assistant message may carry only tool calls (or nothing, as a prefix to continue).
    return missing(at + ".content", fmt::format("a {} message needs content", role_name(m.role)));
  }
  return {};
}

maybe_error read_messages(element v, std::vector<chat_message>& out) {
  simdjson::dom::array a;
  if (v.get(a) != simdjson::SUCCESS) return wrong_type("messages", "an array of message objects", v);
  if (a.size() == 0) return bad_value("messages", "'messages' must hold at least one message");
  out.clear();
  out.reserve(a.size());
  size_t i = 0;
  for (element m : a) OPENAI_TRY(read_message(m, i++, out.emplace_back()));
  return {};
}

maybe_error read_tools(element v, ojson& out) {
  simdjson::dom::array a;
  if (v.get(a) != simdjson::SUCCESS)
    return wrong_type("tools", "an array of {\"type\": \"function\", \"function\": {\"name\", ...}} objects", v);
  size_t i = 0;
  for (element t : a) {
    const std::string at = fmt::format("tools[{}]", i++);
    simdjson::dom::object o;
    if (t.get(o) != simdjson::SUCCESS)
      return wrong_type(at, "an object such as {\"type\": \"function\", \"function\": {\"name\", ...}}", t);
    std::optional<element> fn;
    for (auto field : o) {
      if (field.value.is_null()) continue;
      if (field.key == "type") {
        std::string type;
        OPENAI_TRY(read_string(field.value, at + ".type", type));
        if (type != "function")
          return unsupported(at + ".type", fmt::format("only \"function\" tools are supported; got {}", quote_short(type)));
      } else if (field.key == "function") {
        fn = field.value;
      }
    }
    if (!fn) return missing(at + ".function", "a tool describes its function with a name and parameters");
    simdjson::dom::object f;
    if (fn->get(f) != simdjson::SUCCESS)
      return wrong_type(at + ".function", "an object with name, description and parameters", *fn);
    bool have_name = false;
    for (auto field : f) {
      if (field.value.is_null()) continue;
      if (field.key == "name") {
        std::string name;
        OPENAI_TRY(read_string(field.value, at + ".function.name", name));
        if (name.empty()) return bad_value(at + ".function.name", fmt::format("'{}.function.name' must not be empty", at));
        have_name = true;
      } else if (field.key == "description") {
        std::string d;
        OPENAI_TRY(read_string(field.value, at + ".function.description", d));
      } else if (field.key == "parameters") {
        if (field.value.type() != element_type::OBJECT)
          return wrong_type(at + ".function.parameters", "a JSON Schema object", field.value);
      } else if (field.key == "strict") {
        bool strict = false;
        OPENAI_TRY(read_bool(field.value, at + ".function.strict", strict));
      }
    }
    if (!have_name) return missing(at + ".function.name", "a tool's function has a name");
  }
  out = to_json(v);
  return {};
}

maybe_error read_tool_choice(element v, tool_choice& out) {
  const char* allowed = "\"none\", \"auto\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}";
  std::string_view s;
  if (v.get(s) == simdjson::SUCCESS) {
    if (s == "none") out.mode = tool_choice::kind::none;
    else if (s == "auto") out.mode = tool_choice::kind::auto_;
    else if (s == "required") out.mode = tool_choice::kind::required;
    else return bad_value("tool_choice", fmt::format("'tool_choice' must be {}; got {}", allowed, quote_short(s)));
    return {};
  }
  simdjson::dom::object o;
  if (v.get(o) != simdjson::SUCCESS) return wrong_type("tool_choice", allowed, v);
  std::optional<element> fn;
  for (auto field : o) {
    if (field.value.is_null()) continue;
    if (field.key == "type") {
      std::string type;
      OPENAI_TRY(read_string(field.value, "tool_choice.type", type));
      if (type != "function")
        return unsupported("tool_choice.type", fmt::format("'tool_choice.type' must be \"function\"; got {}", quote_short(type)));
    } else if (field.key == "function") {
      fn = field.value;
    }
  }
  if (!fn) return missing("tool_choice.function", "name the function to call, as {\"name\": ...}");
  simdjson::dom::object f;
  if (fn->get(f) != simdjson::SUCCESS) return wrong_type("tool_choice.function", "an object such as {\"name\": ...}", *fn);
  bool have_name = false;
  for (auto field : f)
    if (field.key == "name" && !field.value.is_null()) {
      OPENAI_TRY(read_string(field.value, "tool_choice.function.name", out.function_name));
      have_name = true;
    }
  if (!have_name) return missing("tool_choice.function.name", "name the function to call");
  out.mode = tool_choice::kind::function;
  return {};
}

maybe_error check_tool_choice(const chat_request& req) {
  if (!req.tool_choice) return {};
  const bool have_tools = req.tools.is_array() && !req.tools.empty();
  const tool_choice& c = *req.tool_choice;
  if (c.mode == tool_choice::kind::required && !have_tools)
    return bad_value("tool_choice", "'tool_choice' \"required\" needs 'tools' to choose from");
  if (c.mode != tool_choice::kind::function) return {};
  if (!have_tools)
    return bad_value("tool_choice", "'tool_choice' names a function, but the request has no 'tools'");
  for (const auto& t : req.tools) {
    const auto fn = t.find("function");
    if (fn == t.end()) continue;
    const auto name = fn->find("name");
    if (name != fn->end() && name->is_string() && name->get_ref<const std::string&>() == c.function_name) return {};
  }
  return bad_value("tool_choice.function.name",
                   fmt::format("'tool_choice.function.name' is {}, which names no function in 'tools'",
                               quote_short(c.function_name)));
}

// Which tools the output may call and how; tool_choice "required" and a named function are
// constrained, so their calls are always well formed.
maybe_error resolve_tool_mode(chat_request& req) {
  const bool have_tools = req.tools.is_array() && !req.tools.empty();
  const tool_choice::kind choice = req.tool_choice ? req.tool_choice->mode : tool_choice::kind::auto_;
  if (!have_tools || choice == tool_choice::kind::none) {
    req.tool_mode = tool_mode::none;
    return {};
  }
  if (choice == tool_choice::kind::auto_) {
    req.tool_mode = tool_mode::parse;
    return {};
  }
  if (!req.constraint.empty())
    return bad_value("tool_choice", "'tool_choice' \"required\" or a named function constrains the output to tool "
                                    "calls, so it cannot be combined with 'response_format' or 'guided_json'");
  ojson functions = ojson::array();
  for (const auto& t : req.tools) {
    const ojson& fn = t["function"];
    ojson f = {{"name", fn["name"]}};
    if (fn.contains("parameters")) f["parameters"] = fn["parameters"];
    if (choice == tool_choice::kind::function && fn["name"] != req.tool_choice->function_name) continue;
    functions.push_back(std::move(f));
  }
  if (choice == tool_choice::kind::function) {
    req.tool_mode = tool_mode::named;
    const ojson& f = functions.at(0);
    req.constraint = structured::tool_arguments_spec(f.contains("parameters") ? f["parameters"] : ojson::object());
  } else {
    req.tool_mode = tool_mode::required;
    req.constraint = structured::tool_calls_spec(functions, req.parallel_tool_calls);
  }
  return check_spec(req.constraint, "tools");
}

}  // namespace

// ---------------------------------------------------------------------------------------------

api_result<chat_request> parse_chat_request(std::string_view body) {
  scoped_parser sp(0, body.size());
  auto root = parse_object(sp.get(), body);
  if (!root) return root.error();
  chat_request req;
  shared_state s;
  bool have_messages = false, add_generation_prompt_sent = false;
  std::optional<int32_t> max_completion_tokens;
  for (auto field : root.value()) {
    const std::string_view key = field.key;
    const element v = field.value;
    if (v.is_null()) continue;
    bool handled = false;
    OPENAI_TRY(shared_field(key, v, req, s, handled));
    if (handled) continue;
    if (key == "messages") {
      OPENAI_TRY(read_messages(v, req.messages));
      have_messages = true;
    } else if (key == "max_completion_tokens") {
      int32_t m = 0;
      OPENAI_TRY(read_int_as(v, "max_completion_tokens", 1, k_int32_max, "at least 1", m));
      max_completion_tokens = m;
    } else if (key == "logprobs") {
      OPENAI_TRY(read_bool(v, "logprobs", req.logprobs));
    } else if (key == "top_logprobs") {
      OPENAI_TRY(read_int_as(v, "top_logprobs", 0, 20, "between 0 and 20", req.top_logprobs));
    } else if (key == "tools") {
      OPENAI_TRY(read_tools(v, req.tools));
    } else if (key == "tool_choice") {
      tool_choice c;
      OPENAI_TRY(read_tool_choice(v, c));
      req.tool_choice = std::move(c);
    } else if (key == "parallel_tool_calls") {
      OPENAI_TRY(read_bool(v, "parallel_tool_calls", req.parallel_tool_calls));
    } else if (key == "chat_template_kwargs") {
      if (v.type() != element_type::OBJECT)
        return wrong_type("chat_template_kwargs", "an object of template variables such as {\"enable_thinking\": false}", v);
      req.chat_template_kwargs = to_json(v);
    } else if (key == "add_generation_prompt") {
      OPENAI_TRY(read_bool(v, "add_generation_prompt", req.add_generation_prompt));
      add_generation_prompt_sent = true;
    } else if (key == "continue_final_message") {
      OPENAI_TRY(read_bool(v, "continue_final_message", req.continue_final_message));
    } else if (key == "chat_template") {
      // Ignoring it would render another prompt than the client asked for.
      return unsupported("chat_template", "'chat_template' in a request is not supported: troupe renders the "
                                          "served model's own template");
    }
  }
  if (max_completion_tokens) req.max_tokens = max_completion_tokens;  // the newer name wins (vLLM)
  if (req.max_tokens == 0) return bad_value("max_tokens", "'max_tokens' must be at least 1; got 0");
  OPENAI_TRY(finish_shared(req, s));
  if (!have_messages) return missing("messages", "give the conversation as an array of messages");
  if (req.top_logprobs > 0 && !req.logprobs)
    return bad_value("top_logprobs", "'top_logprobs' needs 'logprobs' to be true");
  req.params.logprobs = req.logprobs ? req.top_logprobs : -1;
  OPENAI_TRY(check_tool_choice(req));
  OPENAI_TRY(resolve_tool_mode(req));
  if (req.continue_final_message) {
    if (add_generation_prompt_sent && req.add_generation_prompt)
      return bad_value("continue_final_message", "'continue_final_message' and 'add_generation_prompt' cannot both "
                                                 "be true: one continues the last message, the other starts a new one");
    req.add_generation_prompt = false;
  }
  return req;
}

api_result<completion_request> parse_completion_request(std::string_view body) {
  scoped_parser sp(0, body.size());
  auto root = parse_object(sp.get(), body);
  if (!root) return root.error();
  completion_request req;
  shared_state s;
  bool have_prompt = false;
  for (auto field : root.value()) {
    const std::string_view key = field.key;
    const element v = field.value;
    if (v.is_null()) continue;
    bool handled = false;
    OPENAI_TRY(shared_field(key, v, req, s, handled));
    if (handled) continue;
    if (key == "prompt") {
      OPENAI_TRY(read_prompts(v, "prompt", std::numeric_limits<size_t>::max(), req.prompts, req.batch));
      have_prompt = true;
    } else if (key == "logprobs") {
      int32_t k = 0;
      OPENAI_TRY(read_int_as(v, "logprobs", 0, 5, "between 0 and 5", k));
      req.logprobs = k;
    } else if (key == "echo") {
      OPENAI_TRY(read_bool(v, "echo", req.echo));
    } else if (key == "suffix") {
      std::string suffix;
      OPENAI_TRY(read_string(v, "suffix", suffix));
      if (!suffix.empty())
        return unsupported("suffix", "'suffix' is not supported: the served models do not fill in the middle");
    }
  }
  if (!req.max_tokens) req.params.max_tokens = 16;  // OpenAI's default for completions
  OPENAI_TRY(finish_shared(req, s));
  if (req.params.min_tokens > req.params.max_tokens)
    return bad_value("min_tokens", fmt::format("'min_tokens' ({}) must not exceed 'max_tokens' ({}, the default)",
                                               req.params.min_tokens, req.params.max_tokens));
  if (!have_prompt) return missing("prompt", "give the text (or token ids) to complete");
  req.params.logprobs = req.logprobs.value_or(-1);
  if (req.echo) req.params.prompt_logprobs = req.params.logprobs;  // the echoed tokens' logprobs lead
  if (req.max_tokens == 0 && req.params.prompt_logprobs < 0)
    return bad_value("max_tokens", "'max_tokens' must be at least 1; got 0 (0 only with 'echo' and 'logprobs', to "
                                   "score the prompt alone)");
  return req;
}

api_result<embedding_request> parse_embedding_request(std::string_view body) {
  scoped_parser sp(0, body.size());
  auto root = parse_object(sp.get(), body);
  if (!root) return root.error();
  embedding_request req;
  bool have_input = false;
  for (auto field : root.value()) {
    const std::string_view key = field.key;
    const element v = field.value;
    if (v.is_null()) continue;
    if (key == "model") {
      OPENAI_TRY(read_string(v, "model", req.model));
    } else if (key == "input") {
      OPENAI_TRY(read_prompts(v, "input", k_max_embedding_inputs, req.inputs, req.batch));
      have_input = true;
    } else if (key == "encoding_format") {
      std::string f;
      OPENAI_TRY(read_string(v, "encoding_format", f));
      if (f == "float") req.encoding_format = encoding_format::float_;
      else if (f == "base64") req.encoding_format = encoding_format::base64;
      else return bad_value("encoding_format", fmt::format("'encoding_format' must be \"float\" or \"base64\"; got {}", quote_short(f)));
    } else if (key == "dimensions") {
      int32_t d = 0;
      OPENAI_TRY(read_int_as(v, "dimensions", 1, k_int32_max, "at least 1", d));
      req.dimensions = d;
    } else if (key == "user") {
      std::string u;
      OPENAI_TRY(read_string(v, "user", u));
      req.user = std::move(u);
    } else if (key == "priority") {
      OPENAI_TRY(read_int_as(v, "priority", std::numeric_limits<int32_t>::min(), k_int32_max,
                             "from -2147483648 to 2147483647", req.priority));
    }
  }
  if (req.model.empty()) return missing("model", "name the model to use (GET /v1/models lists them)");
  if (!have_input) return missing("input", "give the text (or token ids) to embed");
  return req;
}

}  // namespace troupe::openai

#undef OPENAI_TRY
