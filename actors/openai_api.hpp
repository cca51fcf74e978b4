// openai_api: OpenAI-compatible request bodies in, typed requests out; typed results in,
// OpenAI-compatible JSON and SSE events out. Plain functions (no CAF, no HTTP) so that the
// frontend's wire format can be tested and fuzzed on its own.
//
// Parsing uses simdjson (only the frontend may include it); the writers write JSON by hand into
// one std::string per body or chunk, because a stream writes a chunk per token and building a
// nlohmann tree for each would allocate a node per field. Every string written is valid JSON
// and valid UTF-8: broken sequences become U+FFFD.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/sampler.hpp"

namespace troupe::openai {

// ---------------------------------------------------------------------------------------------
// Errors and results

// An error as OpenAI's body carries it: {"error": {"message", "type", "param", "code"}}.
struct api_error {
  int status = 400;
  std::string message;  // what is wrong and what is allowed
  std::string type = "invalid_request_error";
  std::string param;    // the field as the API spells it ("messages[2].role"); empty: null
  std::string code;     // "invalid_type", "invalid_value", "missing_required_parameter",
                        // "unsupported_value", "invalid_json", ...; empty: null
};

// A 400 invalid_request_error naming param.
api_error invalid_request(std::string param, std::string message, std::string code = "invalid_value");

template <class T>
class [[nodiscard]] api_result {
 public:
  api_result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit on purpose
  api_result(api_error e) : v_(std::in_place_index<1>, std::move(e)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const api_error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, api_error> v_;
};

// ---------------------------------------------------------------------------------------------
// Requests

// What chat and text completions share: sampling, counts, streaming, vLLM's extensions.
struct generation_request {
  std::string model;
  // Everything but max_tokens is final after parsing. max_tokens is final once
  // sampling_for_prompt() has seen the prompt's length (chat's default is the room left).
  sampling_params params;
  std::optional<int32_t> max_tokens;  // as asked (chat: max_completion_tokens wins over max_tokens)
  int32_t n = 1;                      // choices per prompt; best_of, when given, equals it
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage
  bool skip_special_tokens = true;
  int32_t priority = 0;               // lower runs first (vLLM)
  std::optional<std::string> user;
  // The output constraint (runtime/structured/constraint_spec.hpp) from response_format
  // (json_object, json_schema), vLLM's guided_json, or a forced tool_choice; "" for none.
  // Checked when parsed: a schema it cannot honour is a 400 naming the keyword.
  std::string constraint;
};

enum class role { system, developer, user, assistant, tool };
const char* role_name(role r);

struct tool_call {
  std::string id;
  std::string name;
  std::string arguments;  // as sent: a JSON-encoded string (an object sent instead is re-encoded)
  std::optional<nlohmann::ordered_json> arguments_object;  // arguments parsed, when they are an object
};

struct chat_message {
  openai::role role = openai::role::user;
  // The text: a string as sent, or the text parts joined with "\n" (vLLM's string form).
  // nullopt when absent or null (allowed for assistant messages only).
  std::optional<std::string> content;
  std::vector<std::string> content_parts;  // the parts, when content was an array of them
  std::optional<std::string> name;
  std::vector<tool_call> tool_calls;
  std::optional<std::string> tool_call_id;
  std::optional<std::string> reasoning_content;
};

struct tool_choice {
  enum class kind { none, auto_, required, function };
  kind mode = kind::auto_;
  std::string function_name;  // kind::function
};

// How a chat request's output becomes tool calls.
enum class tool_mode {
  none,      // no tools, or tool_choice "none": the output is content
  parse,     // tool_choice "auto": calls in the model's own format are parsed out of the output
  required,  // constrained to [{"name", "parameters"}, ...] (one at least; one only without parallel_tool_calls)
  named,     // constrained to the arguments of tool_choice's function
};

struct chat_request : generation_request {
  std::vector<chat_message> messages;
  bool logprobs = false;
  int32_t top_logprobs = 0;                  // 0..20, alternatives per token when logprobs
  nlohmann::ordered_json tools;              // as sent (validated); null when absent
  std::optional<openai::tool_choice> tool_choice;  // absent: OpenAI's default (auto with tools)
  bool parallel_tool_calls = true;
  openai::tool_mode tool_mode = openai::tool_mode::none;  // from tools and tool_choice
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();
  bool add_generation_prompt = true;         // false when continue_final_message and not sent
  bool continue_final_message = false;
};

// One prompt (or embedding input): text, or token ids as sent.
struct prompt_input {
  std::string text;
  std::vector<token_id> tokens;
  bool is_tokens = false;
};

struct completion_request : generation_request {
  std::vector<prompt_input> prompts;  // a batch: choice index = prompt index * n + j
  bool batch = false;                 // prompt was an array of prompts (errors say "prompt[i]")
  std::optional<int32_t> logprobs;    // 0..5 alternatives per token
  bool echo = false;                  // the prompt's text precedes each choice's text
};

enum class encoding_format { float_, base64 };

struct embedding_request {
  std::string model;
  std::vector<prompt_input> inputs;
  bool batch = false;                 // input was an array of inputs (errors say "input[i]")
  openai::encoding_format encoding_format = openai::encoding_format::float_;
  std::optional<int32_t> dimensions;  // the caller checks it against the model's width
  std::optional<std::string> user;
  int32_t priority = 0;
};

// Bodies that are not JSON, not an object, nested more than 64 levels deep, or hold a field of
// the wrong type or out of range give a 400 naming the field. Unknown fields are ignored, and
// null stands for an absent optional field (as clients that serialize every field send it).
api_result<chat_request> parse_chat_request(std::string_view body);
api_result<completion_request> parse_completion_request(std::string_view body);
api_result<embedding_request> parse_embedding_request(std::string_view body);

// The model facts that checks after tokenization need.
struct model_limits {
  int64_t n_vocab = 0;      // token ids (logit_bias, stop_token_ids, token prompts) below this
  int64_t max_seq_len = 0;  // prompt + completion tokens
};

// The sampling parameters for one tokenized prompt: max_tokens resolved (chat: the room left
// in the context when not asked; completions: 16, OpenAI's default), min_tokens checked
// against it, token ids checked against the vocabulary, and the context length enforced
// (400 context_length_exceeded, param "messages" or "prompt").
api_result<sampling_params> sampling_for_prompt(const chat_request& req, int64_t n_prompt_tokens,
                                                const model_limits& limits);
api_result<sampling_params> sampling_for_prompt(const completion_request& req, size_t prompt_index,
                                                int64_t n_prompt_tokens, const model_limits& limits);
// An embedding input must fit the context and use known token ids.
std::optional<api_error> check_embedding_input(const embedding_request& req, size_t input_index,
                                               int64_t n_tokens, const model_limits& limits);

struct template_options {
  // Content as a list of {"type": "text", "text"} parts, for templates that loop over content
  // (vLLM's "openai" content format); by default a string (its "string" format).
  bool content_as_parts = false;
  // tool_calls[].function.arguments as the parsed object where the string parses to one, as
  // transformers' templates expect (vLLM does the same); false keeps the string as sent.
  bool arguments_as_objects = true;
  // Templates know system, user, assistant and tool; OpenAI's newer "developer" is a system
  // message to them.
  bool developer_as_system = true;
};

// The chat template's context: chat_template_kwargs first, then messages (role, content, name,
// tool_calls, tool_call_id, reasoning_content), tools (null when absent, as transformers passes
// it) and add_generation_prompt, which the kwargs cannot override. Key order is the client's.
// The caller adds bos_token and eos_token, and for continue_final_message cuts the rendered
// text after the final message's content.
nlohmann::ordered_json chat_template_context(const chat_request& req, const template_options& opts = {});

// ---------------------------------------------------------------------------------------------
// Responses

enum class finish_reason { stop, length, tool_calls, abort };  // vLLM says "abort" for aborts
const char* finish_reason_name(finish_reason r);

// vLLM's stop_reason: the stop string or stop token id that ended a choice; none for EOS/length.
using stop_reason = std::variant<std::monostate, std::string, token_id>;

// One token's logprobs. token holds the token's bytes, which may be part of a UTF-8 character:
// "token" fields are written repaired (U+FFFD) and "bytes" fields hold the bytes as they are.
struct top_logprob {
  std::string token;
  float logprob = 0.0f;
};
struct logprob_entry {
  std::string token;
  float logprob = 0.0f;
  std::vector<top_logprob> top;
  bool none = false;  // a prompt's first token (echo): its logprob and top_logprobs are null
};

// The sampler's output with each token's bytes from token_bytes (tokenizer::token_bytes).
std::vector<logprob_entry> logprob_entries(std::span<const sampled> tokens,
                                           const std::function<std::string(token_id)>& token_bytes);

struct usage_info {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;  // prompt_tokens_details.cached_tokens
  // Speculative decoding, when it drafted: completion_tokens_details' accepted_prediction_tokens
  // (drafts the model accepted) and rejected_prediction_tokens (drafted - accepted), OpenAI's
  // fields for predicted tokens.
  int32_t draft_tokens = 0;
  int32_t accepted_draft_tokens = 0;
};

// A tool call the model made, as the response carries it.
struct tool_call_out {
  std::string id;  // new_request_id("call") style: "call_<hex>"
  std::string name;
  std::string arguments;  // JSON text
};

// Non-streaming chat.completion.
struct chat_choice {
  int32_t index = 0;
  std::string content;  // written as null when empty and there are tool calls
  std::vector<tool_call_out> tool_calls;
  std::optional<std::string> reasoning_content;
  openai::finish_reason finish_reason = openai::finish_reason::stop;
  openai::stop_reason stop_reason;
  std::optional<std::vector<logprob_entry>> logprobs;  // set when the request asked for logprobs
};
struct chat_completion {
  std::string id;  // new_request_id("chatcmpl")
  int64_t created = 0;
  std::string model;
  std::vector<chat_choice> choices;
  usage_info usage;
};
std::string write_chat_completion(const chat_completion& c);

// Non-streaming text_completion.
struct completion_choice {
  int32_t index = 0;
  std::string text;  // with echo, the prompt's text first
  openai::finish_reason finish_reason = openai::finish_reason::stop;
  openai::stop_reason stop_reason;
  // Set when the request asked for logprobs. text_offset counts code points of the written
  // tokens, starting at text_offset_base (the echoed prompt's length, say).
  std::optional<std::vector<logprob_entry>> logprobs;
  int32_t text_offset_base = 0;
};
struct completion {
  std::string id;  // new_request_id("cmpl")
  int64_t created = 0;
  std::string model;
  std::vector<completion_choice> choices;
  usage_info usage;
};
std::string write_completion(const completion& c);

// Streaming: what every chunk of one response repeats.
struct stream_info {
  std::string id;
  int64_t created = 0;
  std::string model;
  bool include_usage = false;  // then every chunk carries "usage": null, and a usage chunk ends
};

// One chat.completion.chunk. The first chunk of each choice has role (and content ""); content
// deltas follow; the last one has finish_reason (its delta may still hold text, or be {}).
// One entry of delta.tool_calls: the first of a call has its id and name (and arguments ""),
// the following ones fragments of its arguments.
struct tool_call_delta {
  int32_t index = 0;       // the call's place in the message
  std::string id;          // "" after the first
  std::string name;        // "" after the first
  std::string arguments;
};

struct chat_delta {
  int32_t index = 0;
  bool role = false;  // write delta.role "assistant"
  std::string_view content;
  std::span<const tool_call_delta> tool_calls;
  std::string_view reasoning_content;             // written when not empty
  std::optional<std::span<const logprob_entry>> logprobs;  // set when logprobs were asked
  std::optional<openai::finish_reason> finish_reason;
  openai::stop_reason stop_reason;
};
// Appends "data: {...}\n\n" to out.
void append_chat_chunk(std::string& out, const stream_info& s, const chat_delta& d);
// The usage chunk: empty choices and the usage, when include_usage.
void append_chat_usage_chunk(std::string& out, const stream_info& s, const usage_info& u);

// One streamed text_completion chunk.
struct completion_delta {
  int32_t index = 0;
  std::string_view text;
  std::optional<std::span<const logprob_entry>> logprobs;
  int32_t text_offset = 0;  // code points of this choice's text before this chunk
  std::optional<openai::finish_reason> finish_reason;
  openai::stop_reason stop_reason;
};
void append_completion_chunk(std::string& out, const stream_info& s, const completion_delta& d);
void append_completion_usage_chunk(std::string& out, const stream_info& s, const usage_info& u);

inline constexpr std::string_view sse_done = "data: [DONE]\n\n";

// Embeddings: float arrays, or base64 of little-endian float32 (the openai npm client asks
// for base64 by default).
struct embedding_response {
  std::string model;
  std::vector<std::vector<float>> embeddings;  // one per input, in input order
  openai::encoding_format encoding_format = openai::encoding_format::float_;
  int32_t prompt_tokens = 0;
};
std::string write_embeddings(const embedding_response& r);

// GET /v1/models and GET /v1/models/{id}.
struct model_card {
  std::string id;
  int64_t created = 0;
  std::string owned_by = "troupe";
  std::optional<int64_t> max_model_len;  // vLLM's extension
  // troupe's: how /v1/embeddings pools this model's hidden states ("mean", "last") and their
  // width; written as "embedding": {"pooling", "dimensions", "normalized": true} when set.
  std::optional<std::string> embedding_pooling;
  int64_t embedding_dimensions = 0;
};
std::string write_model(const model_card& m);
std::string write_model_list(std::span<const model_card> models);

// {"error": {"message", "type", "param", "code"}}.
std::string write_error(const api_error& e);

// "<prefix>-<32 random hex digits>", e.g. new_request_id("chatcmpl").
std::string new_request_id(std::string_view prefix);
int64_t unix_seconds();

// s as a JSON string literal (quotes included), repairing broken UTF-8 with U+FFFD.
void append_json_string(std::string& out, std::string_view s);

}  // namespace troupe::openai
