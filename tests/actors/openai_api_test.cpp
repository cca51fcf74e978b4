// Proves the OpenAI wire format: every request field is accepted in each of its valid forms and
// lands in the typed request; every bad input is a 400 naming the field as the API spells it;
// the chat template context keeps the client's order and forms; every writer's output parses
// back (nlohmann) field by field, SSE events are framed as OpenAI frames them, and strings are
// valid JSON and UTF-8 whatever bytes they are given.
#include "actors/openai_api.hpp"

#include <cmath>
#include <cstring>
#include <ctime>
#include <functional>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/text/chat_template.hpp"

namespace troupe::openai {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

const std::string k_user = R"({"role":"user","content":"hi"})";

// A chat body with one user message and extra fields.
std::string chat_body(const std::string& extra) {
  return R"({"model":"m","messages":[)" + k_user + "]" + (extra.empty() ? "" : "," + extra) + "}";
}
std::string chat_with(const std::string& messages, const std::string& extra = "") {
  return R"({"model":"m","messages":)" + messages + (extra.empty() ? "" : "," + extra) + "}";
}
std::string completion_body(const std::string& extra) {
  return R"({"model":"m","prompt":"Once upon a time")" + (extra.empty() ? "" : "," + extra) + "}";
}

const std::string k_tools = R"("tools":[{"type":"function","function":{"name":"get_weather","description":"Weather.",
  "parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["city"]}}},
  {"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{}}}}])";

// ---------------------------------------------------------------------------------------------
// chat: accepted fields

struct chat_accept_case {
  const char* name;
  std::string body;
  std::function<void(const chat_request&)> check;
};

std::vector<chat_accept_case> chat_accept_cases() {
  return {
      {"defaults", chat_body(""),
       [](const chat_request& r) {
         EXPECT_EQ(r.model, "m");
         ASSERT_EQ(r.messages.size(), 1u);
         EXPECT_EQ(r.messages[0].role, role::user);
         EXPECT_EQ(r.messages[0].content, "hi");
         EXPECT_EQ(r.n, 1);
         EXPECT_FALSE(r.stream);
         EXPECT_FALSE(r.include_usage);
         EXPECT_FALSE(r.max_tokens);
         EXPECT_FALSE(r.logprobs);
         EXPECT_EQ(r.params.logprobs, -1);
         EXPECT_EQ(r.params.temperature, 1.0f);
         EXPECT_EQ(r.params.top_p, 1.0f);
         EXPECT_TRUE(r.params.stop.empty());
         EXPECT_FALSE(r.params.seed);
         EXPECT_TRUE(r.tools.is_null());
         EXPECT_FALSE(r.tool_choice);
         EXPECT_TRUE(r.add_generation_prompt);
         EXPECT_FALSE(r.continue_final_message);
         EXPECT_TRUE(r.skip_special_tokens);
         EXPECT_TRUE(r.chat_template_kwargs.is_object() && r.chat_template_kwargs.empty());
       }},
      {"temperature", chat_body(R"("temperature":0.25)"), [](auto& r) { EXPECT_EQ(r.params.temperature, 0.25f); }},
      {"temperature_zero_integer", chat_body(R"("temperature":0)"), [](auto& r) { EXPECT_EQ(r.params.temperature, 0.0f); }},
      {"top_p", chat_body(R"("top_p":0.9)"), [](auto& r) { EXPECT_EQ(r.params.top_p, 0.9f); }},
      {"top_p_one", chat_body(R"("top_p":1)"), [](auto& r) { EXPECT_EQ(r.params.top_p, 1.0f); }},
      {"n", chat_body(R"("n":3)"), [](auto& r) { EXPECT_EQ(r.n, 3); }},
      {"n_as_integral_decimal", chat_body(R"("n":2.0)"), [](auto& r) { EXPECT_EQ(r.n, 2); }},
      {"best_of_equal_to_n", chat_body(R"("n":2,"best_of":2)"), [](auto& r) { EXPECT_EQ(r.n, 2); }},
      {"stream", chat_body(R"("stream":true)"), [](auto& r) { EXPECT_TRUE(r.stream); EXPECT_FALSE(r.include_usage); }},
      {"stream_options_include_usage", chat_body(R"("stream":true,"stream_options":{"include_usage":true})"),
       [](auto& r) { EXPECT_TRUE(r.stream); EXPECT_TRUE(r.include_usage); }},
      {"stream_options_vllm_continuous_usage", chat_body(R"("stream":true,"stream_options":{"include_usage":false,"continuous_usage_stats":true})"),
       [](auto& r) { EXPECT_FALSE(r.include_usage); }},
      {"stop_string", chat_body(R"("stop":"\n\n")"), [](auto& r) { EXPECT_EQ(r.params.stop, std::vector<std::string>{"\n\n"}); }},
      {"stop_array", chat_body(R"("stop":["a","END"])"),
       [](auto& r) { EXPECT_EQ(r.params.stop, (std::vector<std::string>{"a", "END"})); }},
      {"presence_penalty", chat_body(R"("presence_penalty":-2)"), [](auto& r) { EXPECT_EQ(r.params.presence_penalty, -2.0f); }},
      {"frequency_penalty", chat_body(R"("frequency_penalty":1.5)"), [](auto& r) { EXPECT_EQ(r.params.frequency_penalty, 1.5f); }},
      {"logit_bias", chat_body(R"("logit_bias":{"50256":-100,"11":5.5,"0":100})"),
       [](auto& r) {
         const std::vector<std::pair<token_id, float>> want = {{50256, -100.0f}, {11, 5.5f}, {0, 100.0f}};
         EXPECT_EQ(r.params.logit_bias, want);
       }},
      {"logprobs_with_top", chat_body(R"("logprobs":true,"top_logprobs":5)"),
       [](auto& r) { EXPECT_TRUE(r.logprobs); EXPECT_EQ(r.top_logprobs, 5); EXPECT_EQ(r.params.logprobs, 5); }},
      {"logprobs_alone", chat_body(R"("logprobs":true)"), [](auto& r) { EXPECT_EQ(r.params.logprobs, 0); }},
      {"logprobs_false_top_zero", chat_body(R"("logprobs":false,"top_logprobs":0)"),
       [](auto& r) { EXPECT_EQ(r.params.logprobs, -1); }},
      {"top_logprobs_max", chat_body(R"("logprobs":true,"top_logprobs":20)"), [](auto& r) { EXPECT_EQ(r.params.logprobs, 20); }},
      {"seed", chat_body(R"("seed":42)"), [](auto& r) { EXPECT_EQ(r.params.seed, 42u); }},
      {"seed_negative", chat_body(R"("seed":-1)"),
       [](auto& r) { EXPECT_EQ(r.params.seed, std::numeric_limits<uint64_t>::max()); }},
      {"seed_above_int64", chat_body(R"("seed":18446744073709551615)"),
       [](auto& r) { EXPECT_EQ(r.params.seed, std::numeric_limits<uint64_t>::max()); }},
      {"user", chat_body(R"("user":"user-1234")"), [](auto& r) { EXPECT_EQ(r.user, "user-1234"); }},
      {"max_tokens", chat_body(R"("max_tokens":7)"),
       [](auto& r) { EXPECT_EQ(r.max_tokens, 7); EXPECT_EQ(r.params.max_tokens, 7); }},
      {"max_completion_tokens", chat_body(R"("max_completion_tokens":9)"), [](auto& r) { EXPECT_EQ(r.max_tokens, 9); }},
      {"max_completion_tokens_wins", chat_body(R"("max_completion_tokens":9,"max_tokens":7)"),
       [](auto& r) { EXPECT_EQ(r.max_tokens, 9); EXPECT_EQ(r.params.max_tokens, 9); }},
      {"vllm_sampling_extensions",
       chat_body(R"("top_k":40,"min_p":0.05,"repetition_penalty":1.1,"min_tokens":2,"max_tokens":8,"ignore_eos":true,
                   "stop_token_ids":[2,7],"skip_special_tokens":false,"priority":-3)"),
       [](auto& r) {
         EXPECT_EQ(r.params.top_k, 40);
         EXPECT_EQ(r.params.min_p, 0.05f);
         EXPECT_EQ(r.params.repetition_penalty, 1.1f);
         EXPECT_EQ(r.params.min_tokens, 2);
         EXPECT_TRUE(r.params.ignore_eos);
         EXPECT_EQ(r.params.stop_token_ids, (std::vector<token_id>{2, 7}));
         EXPECT_FALSE(r.skip_special_tokens);
         EXPECT_EQ(r.priority, -3);
       }},
      {"top_k_off", chat_body(R"("top_k":-1)"), [](auto& r) { EXPECT_EQ(r.params.top_k, -1); }},
      {"response_format_text", chat_body(R"("response_format":{"type":"text"})"),
       [](auto& r) { EXPECT_EQ(r.constraint, ""); }},
      {"response_format_json_object", chat_body(R"("response_format":{"type":"json_object"})"),
       [](auto& r) { EXPECT_EQ(r.constraint, R"({"type":"json_object"})"); }},
      {"response_format_json_schema",
       chat_body(R"("response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,"schema":{"type":"object","properties":{"b":{"type":"integer"},"a":{"type":"string"}}}}})"),
       [](auto& r) {  // the schema travels with its keys in the client's order
         EXPECT_EQ(r.constraint,
                   R"({"type":"json_schema","schema":{"type":"object","properties":{"b":{"type":"integer"},"a":{"type":"string"}}}})");
       }},
      {"vllm_guided_json_string", chat_body(R"("guided_json":"{\"type\": \"integer\"}")"),
       [](auto& r) { EXPECT_EQ(r.constraint, R"({"type":"json_schema","schema":{"type":"integer"}})"); }},
      {"vllm_structured_outputs_json", chat_body(R"("structured_outputs":{"json":{"type":"boolean"}})"),
       [](auto& r) { EXPECT_EQ(r.constraint, R"({"type":"json_schema","schema":{"type":"boolean"}})"); }},
      {"tools_and_auto", chat_body(k_tools + R"(,"tool_choice":"auto")"),
       [](auto& r) {
         ASSERT_TRUE(r.tools.is_array());
         ASSERT_EQ(r.tools.size(), 2u);
         // The schema keeps the client's key order (type, properties, required), not sorted.
         EXPECT_EQ(r.tools[0]["function"]["parameters"].dump(),
                   R"({"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["city"]})");
         ASSERT_TRUE(r.tool_choice);
         EXPECT_EQ(r.tool_choice->mode, tool_choice::kind::auto_);
       }},
      {"tool_choice_none", chat_body(k_tools + R"(,"tool_choice":"none")"),
       [](auto& r) { EXPECT_EQ(r.tool_choice->mode, tool_choice::kind::none); }},
      {"tool_choice_none_without_tools", chat_body(R"("tool_choice":"none")"),
       [](auto& r) { EXPECT_EQ(r.tool_choice->mode, tool_choice::kind::none); }},
      {"tool_choice_required", chat_body(k_tools + R"(,"tool_choice":"required")"),
       [](auto& r) {
         EXPECT_EQ(r.tool_choice->mode, tool_choice::kind::required);
         EXPECT_EQ(r.tool_mode, tool_mode::required);
         EXPECT_TRUE(r.constraint.starts_with(R"({"type":"tool_calls","tools":[{"name":)")) << r.constraint;
         EXPECT_TRUE(r.constraint.ends_with(R"("parallel":true})")) << r.constraint;
       }},
      {"tool_choice_named", chat_body(k_tools + R"(,"tool_choice":{"type":"function","function":{"name":"get_time"}})"),
       [](auto& r) {
         EXPECT_EQ(r.tool_choice->mode, tool_choice::kind::function);
         EXPECT_EQ(r.tool_choice->function_name, "get_time");
       }},
      {"parallel_tool_calls", chat_body(R"("parallel_tool_calls":false)"), [](auto& r) { EXPECT_FALSE(r.parallel_tool_calls); }},
      {"chat_template_kwargs", chat_body(R"("chat_template_kwargs":{"enable_thinking":false,"custom":[1,"x"]})"),
       [](auto& r) { EXPECT_EQ(r.chat_template_kwargs.dump(), R"({"enable_thinking":false,"custom":[1,"x"]})"); }},
      {"add_generation_prompt_false", chat_body(R"("add_generation_prompt":false)"),
       [](auto& r) { EXPECT_FALSE(r.add_generation_prompt); }},
      {"continue_final_message", chat_with(R"([{"role":"user","content":"hi"},{"role":"assistant","content":"Hel"}])",
                                           R"("continue_final_message":true)"),
       [](auto& r) { EXPECT_TRUE(r.continue_final_message); EXPECT_FALSE(r.add_generation_prompt); }},
      {"continue_final_message_with_add_false",
       chat_with(R"([{"role":"assistant","content":"Hel"}])", R"("continue_final_message":true,"add_generation_prompt":false)"),
       [](auto& r) { EXPECT_TRUE(r.continue_final_message); EXPECT_FALSE(r.add_generation_prompt); }},
      {"nulls_mean_absent",
       chat_body(R"("temperature":null,"n":null,"stop":null,"tools":null,"tool_choice":null,"seed":null,"user":null,
                   "max_tokens":null,"logprobs":null,"stream_options":null,"response_format":null,"logit_bias":null)"),
       [](auto& r) {
         EXPECT_EQ(r.params.temperature, 1.0f);
         EXPECT_EQ(r.n, 1);
         EXPECT_FALSE(r.params.seed);
         EXPECT_FALSE(r.user);
         EXPECT_TRUE(r.tools.is_null());
         EXPECT_FALSE(r.tool_choice);
       }},
      {"unknown_fields_ignored",
       chat_body(R"("store":false,"metadata":{"a":"b"},"service_tier":"auto","reasoning_effort":"low","modalities":["text"],
                   "functions":[],"prediction":{"type":"content","content":"x"},"x_future_field":{"deep":[[1]]})"),
       [](auto& r) { EXPECT_EQ(r.messages.size(), 1u); }},
      {"repeated_key_last_wins", chat_body(R"("temperature":0.1,"temperature":0.7)"),
       [](auto& r) { EXPECT_EQ(r.params.temperature, 0.7f); }},
      {"whitespace_around_body", "\n  " + chat_body("") + "\r\n\t ", [](auto& r) { EXPECT_EQ(r.model, "m"); }},
  };
}

TEST(openai_chat_parse, accepts_every_field_in_each_valid_form) {
  for (const auto& c : chat_accept_cases()) {
    SCOPED_TRACE(c.name);
    auto r = parse_chat_request(c.body);
    ASSERT_TRUE(r.ok()) << r.error().param << ": " << r.error().message;
    c.check(r.value());
    // What the API accepts, the sampler accepts.
    auto p = sampling_for_prompt(r.value(), 10, {.n_vocab = 100000, .max_seq_len = 4096});
    ASSERT_TRUE(p.ok()) << p.error().message;
    EXPECT_TRUE(p->validate(100000).ok()) << p->validate(100000).message();
  }
}

struct message_case {
  const char* name;
  std::string messages;
  std::function<void(const std::vector<chat_message>&)> check;
};

TEST(openai_chat_parse, accepts_messages_of_every_role_and_form) {
  const std::vector<message_case> cases = {
      {"all_roles",
       R"([{"role":"system","content":"s"},{"role":"developer","content":"d"},{"role":"user","content":"u","name":"ann"},
           {"role":"assistant","content":"a"},{"role":"tool","content":"18C","tool_call_id":"call_1"}])",
       [](auto& m) {
         ASSERT_EQ(m.size(), 5u);
         EXPECT_EQ(m[0].role, role::system);
         EXPECT_EQ(m[1].role, role::developer);
         EXPECT_EQ(m[2].role, role::user);
         EXPECT_EQ(m[2].name, "ann");
         EXPECT_EQ(m[3].role, role::assistant);
         EXPECT_EQ(m[4].role, role::tool);
         EXPECT_EQ(m[4].tool_call_id, "call_1");
         EXPECT_EQ(m[4].content, "18C");
       }},
      {"text_parts_joined",
       R"([{"role":"user","content":[{"type":"text","text":"first"},{"type":"text","text":"second"}]}])",
       [](auto& m) {
         EXPECT_EQ(m[0].content, "first\nsecond");
         EXPECT_EQ(m[0].content_parts, (std::vector<std::string>{"first", "second"}));
       }},
      {"empty_string_content", R"([{"role":"user","content":""}])", [](auto& m) { EXPECT_EQ(m[0].content, ""); }},
      {"assistant_tool_calls_null_content",
       R"([{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
           "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"days\":2}"}}]}])",
       [](auto& m) {
         ASSERT_EQ(m[1].tool_calls.size(), 1u);
         const tool_call& c = m[1].tool_calls[0];
         EXPECT_FALSE(m[1].content);
         EXPECT_EQ(c.id, "call_1");
         EXPECT_EQ(c.name, "get_weather");
         EXPECT_EQ(c.arguments, R"({"city":"Paris","days":2})");
         ASSERT_TRUE(c.arguments_object);
         EXPECT_EQ(c.arguments_object->dump(), R"({"city":"Paris","days":2})");
       }},
      {"assistant_without_content", R"([{"role":"assistant"}])", [](auto& m) { EXPECT_FALSE(m[0].content); }},
      {"arguments_not_json_kept_as_string",
       R"([{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"not json"}}]}])",
       [](auto& m) {
         EXPECT_EQ(m[0].tool_calls[0].arguments, "not json");
         EXPECT_FALSE(m[0].tool_calls[0].arguments_object);
       }},
      {"arguments_json_but_not_object",
       R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"[1,2]"}}]}])",
       [](auto& m) { EXPECT_FALSE(m[0].tool_calls[0].arguments_object); }},
      {"arguments_sent_as_object",
       R"([{"role":"assistant","tool_calls":[{"id":"c","function":{"name":"f","arguments":{"b":1,"a":"x"}}}]}])",
       [](auto& m) {
         EXPECT_EQ(m[0].tool_calls[0].arguments, R"({"b":1,"a":"x"})");
         EXPECT_EQ(m[0].tool_calls[0].arguments_object->dump(), R"({"b":1,"a":"x"})");
       }},
      {"reasoning_content", R"([{"role":"assistant","content":"4","reasoning_content":"2+2"}])",
       [](auto& m) { EXPECT_EQ(m[0].reasoning_content, "2+2"); }},
      {"unknown_message_fields_ignored", R"([{"role":"user","content":"x","audio":null,"refusal":null,"extra":{"a":1}}])",
       [](auto& m) { EXPECT_EQ(m[0].content, "x"); }},
      {"unicode_and_escapes", R"([{"role":"user","content":"caf\u00e9 \ud83c\udf89 \"q\" \u0000end"}])",
       [](auto& m) { EXPECT_EQ(*m[0].content, std::string("caf\xC3\xA9 \xF0\x9F\x8E\x89 \"q\" \0end", 19)); }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = parse_chat_request(chat_with(c.messages));
    ASSERT_TRUE(r.ok()) << r.error().param << ": " << r.error().message;
    c.check(r->messages);
  }
}

// ---------------------------------------------------------------------------------------------
// rejections

struct reject_case {
  const char* name;
  std::string body;
  const char* param;    // as the API spells it; "" for the body itself
  const char* code;
  const char* message;  // a piece of the message
};

void expect_rejected(const api_error& e, const reject_case& c) {
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(e.type, "invalid_request_error");
  EXPECT_EQ(e.param, c.param);
  EXPECT_EQ(e.code, c.code);
  EXPECT_NE(e.message.find(c.message), std::string::npos) << "message: " << e.message;
  // The error body the frontend sends is valid JSON with the same fields.
  const json body = json::parse(write_error(e));
  EXPECT_EQ(body["error"]["message"], e.message);
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  if (e.param.empty()) EXPECT_TRUE(body["error"]["param"].is_null());
  else EXPECT_EQ(body["error"]["param"], e.param);
}

template <class T>
std::optional<api_error> error_of(const api_result<T>& r) {
  if (r.ok()) return std::nullopt;
  return r.error();
}

std::string nested(int depth) { return std::string(static_cast<size_t>(depth), '[') + std::string(static_cast<size_t>(depth), ']'); }

std::vector<reject_case> body_reject_cases() {
  return {
      {"empty", "", "", "invalid_json", "empty"},
      {"whitespace_only", "  \n", "", "invalid_json", "empty"},
      {"truncated", R"({"model":"m","messages":[)", "", "invalid_json", "not valid JSON"},
      {"trailing_garbage", chat_body("") + "x", "", "invalid_json", "not valid JSON"},
      {"single_quotes", "{'model':'m'}", "", "invalid_json", "not valid JSON"},
      {"array_body", "[]", "", "invalid_type", "must be a JSON object, not an array"},
      {"string_body", "\"hi\"", "", "invalid_type", "must be a JSON object, not a string"},
      {"null_body", "null", "", "invalid_type", "not null"},
      {"nested_too_deep", chat_body("\"x\":" + nested(100)), "", "invalid_json", "64 levels deep"},
      {"invalid_utf8", chat_body("\"user\":\"\xC3\x28\""), "", "invalid_json", "UTF-8"},
  };
}

TEST(openai_parse, rejects_bodies_that_are_not_a_json_object) {
  for (const auto& c : body_reject_cases()) {
    SCOPED_TRACE(c.name);
    for (const auto& r : {error_of(parse_chat_request(c.body)), error_of(parse_completion_request(c.body)),
                          error_of(parse_embedding_request(c.body))}) {
      ASSERT_TRUE(r);
      expect_rejected(*r, c);
    }
  }
}

// Bodies over 1 MiB get a parser of their own (so that no server thread keeps a large buffer);
// they parse as small ones do, and a small one after them still uses the thread's parser.
TEST(openai_parse, large_bodies_parse_like_small_ones) {
  const std::string big(3 << 20, 'x');
  const std::string args = "{\\\"k\\\":\\\"" + std::string(2 << 20, 'y') + "\\\"}";
  auto r = parse_chat_request(chat_with(R"([{"role":"user","content":")" + big + R"("},{"role":"assistant",)"
                                        R"("tool_calls":[{"id":"c","function":{"name":"f","arguments":")" + args + R"("}}]}])"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->messages[0].content, big);
  ASSERT_TRUE(r->messages[1].tool_calls[0].arguments_object);
  EXPECT_EQ((*r->messages[1].tool_calls[0].arguments_object)["k"].get<std::string>().size(), size_t{2} << 20);
  auto bad = parse_chat_request(chat_with(R"([{"role":"user","content":")" + big + R"("}])", R"("n":0)"));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().param, "n");
  auto small = parse_chat_request(chat_body(R"("n":2)"));
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->n, 2);
}

TEST(openai_parse, nesting_up_to_the_limit_is_fine) {
  auto r = parse_chat_request(chat_body("\"x\":" + nested(60)));
  ASSERT_TRUE(r.ok()) << r.error().message;
}

std::vector<reject_case> chat_reject_cases() {
  const std::string m = "\"model\":\"m\"";
  return {
      {"model_missing", R"({"messages":[)" + k_user + "]}", "model", "missing_required_parameter", "'model' is required"},
      {"model_null", R"({"model":null,"messages":[)" + k_user + "]}", "model", "missing_required_parameter", "'model' is required"},
      {"model_empty", R"({"model":"","messages":[)" + k_user + "]}", "model", "missing_required_parameter", "'model' is required"},
      {"model_not_string", R"({"model":5,"messages":[)" + k_user + "]}", "model", "invalid_type", "'model' must be a string, not an integer"},
      {"messages_missing", "{" + m + "}", "messages", "missing_required_parameter", "'messages' is required"},
      {"messages_not_array", "{" + m + ",\"messages\":\"hi\"}", "messages", "invalid_type", "must be an array of message objects, not a string"},
      {"messages_empty", "{" + m + ",\"messages\":[]}", "messages", "invalid_value", "at least one message"},
      {"message_not_object", chat_with(R"(["hi"])"), "messages[0]", "invalid_type", "not a string"},
      {"role_missing", chat_with(R"([{"content":"x"}])"), "messages[0].role", "missing_required_parameter", "one of system"},
      {"role_unknown", chat_with(R"([{"role":"user","content":"a"},{"role":"bot","content":"b"}])"), "messages[1].role",
       "invalid_value", "\"bot\", which is not a role: use one of system, developer, user, assistant or tool"},
      {"role_function_is_not_accepted", chat_with(R"([{"role":"function","name":"f","content":"b"}])"), "messages[0].role",
       "invalid_value", "not a role"},
      {"role_not_string", chat_with(R"([{"role":1,"content":"b"}])"), "messages[0].role", "invalid_type", "must be a string"},
      {"user_content_missing", chat_with(R"([{"role":"user"}])"), "messages[0].content", "missing_required_parameter",
       "a user message needs content"},
      {"system_content_null", chat_with(R"([{"role":"system","content":null}])"), "messages[0].content",
       "missing_required_parameter", "a system message needs content"},
      {"tool_content_missing", chat_with(R"([{"role":"tool","tool_call_id":"c"}])"), "messages[0].content",
       "missing_required_parameter", "tool message"},
      {"content_number", chat_with(R"([{"role":"user","content":5}])"), "messages[0].content", "invalid_type",
       "a string or an array of {\"type\": \"text\""},
      {"content_empty_array", chat_with(R"([{"role":"user","content":[]}])"), "messages[0].content", "invalid_value",
       "must not be an empty array"},
      {"content_part_image", chat_with(R"([{"role":"user","content":[{"type":"text","text":"what is this?"},
          {"type":"image_url","image_url":{"url":"https://x/y.png"}}]}])"),
       "messages[0].content[1].type", "unsupported_value", "content parts of type \"image_url\" are not supported"},
      {"content_part_audio", chat_with(R"([{"role":"system","content":"s"},{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}])"),
       "messages[1].content[0].type", "unsupported_value", "\"input_audio\""},
      {"content_part_not_object", chat_with(R"([{"role":"user","content":["x"]}])"), "messages[0].content[0]", "invalid_type",
       "not a string"},
      {"content_part_type_missing", chat_with(R"([{"role":"user","content":[{"text":"x"}]}])"), "messages[0].content[0].type",
       "missing_required_parameter", "is required"},
      {"content_part_text_missing", chat_with(R"([{"role":"user","content":[{"type":"text"}]}])"), "messages[0].content[0].text",
       "missing_required_parameter", "is required"},
      {"content_part_text_number", chat_with(R"([{"role":"user","content":[{"type":"text","text":1}]}])"),
       "messages[0].content[0].text", "invalid_type", "must be a string"},
      {"name_number", chat_with(R"([{"role":"user","content":"x","name":5}])"), "messages[0].name", "invalid_type", "must be a string"},
      {"tool_call_id_number", chat_with(R"([{"role":"tool","content":"x","tool_call_id":5}])"), "messages[0].tool_call_id",
       "invalid_type", "must be a string"},
      {"reasoning_content_number", chat_with(R"([{"role":"assistant","content":"x","reasoning_content":[]}])"),
       "messages[0].reasoning_content", "invalid_type", "must be a string"},
      {"tool_calls_not_array", chat_with(R"([{"role":"assistant","tool_calls":{}}])"), "messages[0].tool_calls", "invalid_type",
       "an array of tool calls"},
      {"tool_call_not_object", chat_with(R"([{"role":"assistant","tool_calls":[1]}])"), "messages[0].tool_calls[0]", "invalid_type",
       "not an integer"},
      {"tool_call_function_missing", chat_with(R"([{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c","type":"function"}]}])"),
       "messages[1].tool_calls[0].function", "missing_required_parameter", "is required"},
      {"tool_call_name_missing", chat_with(R"([{"role":"assistant","tool_calls":[{"function":{"arguments":"{}"}}]}])"),
       "messages[0].tool_calls[0].function.name", "missing_required_parameter", "is required"},
      {"tool_call_arguments_missing", chat_with(R"([{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}])"),
       "messages[0].tool_calls[0].function.arguments", "missing_required_parameter", "is required"},
      {"tool_call_arguments_number", chat_with(R"([{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":5}}]}])"),
       "messages[0].tool_calls[0].function.arguments", "invalid_type", "must be a string"},
      {"tool_call_type_other", chat_with(R"([{"role":"assistant","tool_calls":[{"type":"code","function":{"name":"f","arguments":"{}"}}]}])"),
       "messages[0].tool_calls[0].type", "unsupported_value", "must be \"function\""},
      {"temperature_string", chat_body(R"("temperature":"hot")"), "temperature", "invalid_type",
       "'temperature' must be a number between 0 and 100 (0 is greedy), not a string"},
      {"temperature_negative", chat_body(R"("temperature":-0.5)"), "temperature", "invalid_value", "got -0.5"},
      {"temperature_too_high", chat_body(R"("temperature":101)"), "temperature", "invalid_value", "between 0 and 100"},
      {"top_p_zero", chat_body(R"("top_p":0)"), "top_p", "invalid_value", "greater than 0 and at most 1"},
      {"top_p_below_float_range", chat_body(R"("top_p":1e-50)"), "top_p", "invalid_value", "got 1e-50"},
      {"repetition_penalty_below_float_range", chat_body(R"("repetition_penalty":1e-60)"), "repetition_penalty",
       "invalid_value", "greater than 0"},
      {"temperature_overflows_float", chat_body(R"("temperature":1e300)"), "temperature", "invalid_value", "between 0 and 100"},
      {"top_p_above_one", chat_body(R"("top_p":1.5)"), "top_p", "invalid_value", "got 1.5"},
      {"n_zero", chat_body(R"("n":0)"), "n", "invalid_value", "'n' must be between 1 and 128; got 0"},
      {"n_too_many", chat_body(R"("n":129)"), "n", "invalid_value", "between 1 and 128"},
      {"n_fraction", chat_body(R"("n":1.5)"), "n", "invalid_type", "must be an integer between 1 and 128, not a decimal number"},
      {"n_string", chat_body(R"("n":"2")"), "n", "invalid_type", "not a string"},
      {"n_huge", chat_body(R"("n":18446744073709551615)"), "n", "invalid_value", "between 1 and 128"},
      {"best_of_differs", chat_body(R"("n":1,"best_of":3)"), "best_of", "unsupported_value", "must equal 'n'"},
      {"stream_string", chat_body(R"("stream":"yes")"), "stream", "invalid_type", "'stream' must be true or false, not a string"},
      {"stream_options_without_stream", chat_body(R"("stream_options":{"include_usage":true})"), "stream_options",
       "invalid_value", "only allowed when 'stream' is true"},
      {"stream_options_not_object", chat_body(R"("stream":true,"stream_options":true)"), "stream_options", "invalid_type",
       "an object"},
      {"include_usage_string", chat_body(R"("stream":true,"stream_options":{"include_usage":"yes"})"),
       "stream_options.include_usage", "invalid_type", "true or false"},
      {"stop_number", chat_body(R"("stop":5)"), "stop", "invalid_type", "a string or an array of up to 16 strings"},
      {"stop_element_number", chat_body(R"("stop":["a",1])"), "stop[1]", "invalid_type", "must be a string"},
      {"stop_empty_string", chat_body(R"("stop":"")"), "stop", "invalid_value", "must not be an empty string"},
      {"stop_element_empty", chat_body(R"("stop":["a",""])"), "stop[1]", "invalid_value", "must not be an empty string"},
      {"stop_too_many", chat_body(R"("stop":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"])"),
       "stop", "invalid_value", "at most 16 strings; got 17"},
      {"presence_penalty_range", chat_body(R"("presence_penalty":3)"), "presence_penalty", "invalid_value", "between -2 and 2"},
      {"frequency_penalty_range", chat_body(R"("frequency_penalty":-2.5)"), "frequency_penalty", "invalid_value", "between -2 and 2"},
      {"logit_bias_array", chat_body(R"("logit_bias":[])"), "logit_bias", "invalid_type", "an object mapping token ids"},
      {"logit_bias_key_word", chat_body(R"("logit_bias":{"hello":1})"), "logit_bias", "invalid_value",
       "keys must be token ids such as \"50256\"; got \"hello\""},
      {"logit_bias_key_negative", chat_body(R"("logit_bias":{"-1":1})"), "logit_bias", "invalid_value", "got \"-1\""},
      {"logit_bias_key_sign", chat_body(R"("logit_bias":{"+1":1})"), "logit_bias", "invalid_value", "got \"+1\""},
      {"logit_bias_key_huge", chat_body(R"("logit_bias":{"99999999999":1})"), "logit_bias", "invalid_value", "token ids"},
      {"logit_bias_value_range", chat_body(R"("logit_bias":{"7":101})"), "logit_bias", "invalid_value",
       "for token 7 must be between -100 and 100; got 101"},
      {"logit_bias_value_string", chat_body(R"("logit_bias":{"7":"x"})"), "logit_bias", "invalid_type", "for token 7"},
      {"logprobs_integer", chat_body(R"("logprobs":1)"), "logprobs", "invalid_type", "true or false"},
      {"top_logprobs_range", chat_body(R"("logprobs":true,"top_logprobs":21)"), "top_logprobs", "invalid_value", "between 0 and 20"},
      {"top_logprobs_without_logprobs", chat_body(R"("top_logprobs":3)"), "top_logprobs", "invalid_value",
       "needs 'logprobs' to be true"},
      {"seed_string", chat_body(R"("seed":"x")"), "seed", "invalid_type", "'seed' must be an integer"},
      {"seed_fraction", chat_body(R"("seed":1.5)"), "seed", "invalid_type", "not a decimal number"},
      {"user_number", chat_body(R"("user":5)"), "user", "invalid_type", "must be a string"},
      {"max_tokens_zero", chat_body(R"("max_tokens":0)"), "max_tokens", "invalid_value", "'max_tokens' must be at least 1; got 0"},
      {"max_tokens_huge", chat_body(R"("max_tokens":1e10)"), "max_tokens", "invalid_value", "at least 1"},
      {"max_completion_tokens_negative", chat_body(R"("max_completion_tokens":-1)"), "max_completion_tokens", "invalid_value",
       "at least 1"},
      {"top_k_below_minus_one", chat_body(R"("top_k":-2)"), "top_k", "invalid_value", "'top_k' must be at least -1 (-1 and 0 turn it off); got -2"},
      {"min_p_range", chat_body(R"("min_p":1.5)"), "min_p", "invalid_value", "between 0 and 1"},
      {"repetition_penalty_zero", chat_body(R"("repetition_penalty":0)"), "repetition_penalty", "invalid_value", "greater than 0"},
      {"min_tokens_negative", chat_body(R"("min_tokens":-1)"), "min_tokens", "invalid_value", "at least 0"},
      {"min_tokens_above_max", chat_body(R"("min_tokens":10,"max_tokens":5)"), "min_tokens", "invalid_value",
       "'min_tokens' (10) must not exceed 'max_tokens' (5)"},
      {"ignore_eos_string", chat_body(R"("ignore_eos":"no")"), "ignore_eos", "invalid_type", "true or false"},
      {"stop_token_ids_not_array", chat_body(R"("stop_token_ids":2)"), "stop_token_ids", "invalid_type", "an array of token ids"},
      {"stop_token_ids_negative", chat_body(R"("stop_token_ids":[1,-1])"), "stop_token_ids[1]", "invalid_value", "token id"},
      {"skip_special_tokens_number", chat_body(R"("skip_special_tokens":1)"), "skip_special_tokens", "invalid_type", "true or false"},
      {"priority_string", chat_body(R"("priority":"high")"), "priority", "invalid_type", "an integer"},
      {"priority_too_large", chat_body(R"("priority":4294967296)"), "priority", "invalid_value", "from -2147483648 to 2147483647; got 4294967296"},
      {"response_format_unknown_type", chat_body(R"("response_format":{"type":"yaml"})"), "response_format.type",
       "invalid_value", "must be \"text\", \"json_object\" or \"json_schema\""},
      {"response_format_schema_pattern",
       chat_body(R"("response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"a"}}})"),
       "response_format.json_schema.schema", "unsupported_value", "keyword 'pattern' (at #) is not supported"},
      {"response_format_schema_no_name", chat_body(R"("response_format":{"type":"json_schema","json_schema":{"schema":{}}})"),
       "response_format.json_schema.name", "missing_required_parameter", "is required"},
      {"response_format_schema_not_object",
       chat_body(R"("response_format":{"type":"json_schema","json_schema":{"name":"x","schema":[1]}})"),
       "response_format.json_schema.schema", "invalid_type", "a JSON Schema object"},
      {"tool_choice_required_and_response_format",
       chat_body(k_tools + R"(,"tool_choice":"required","response_format":{"type":"json_object"})"), "tool_choice",
       "invalid_value", "cannot be combined"},
      {"response_format_string", chat_body(R"("response_format":"text")"), "response_format", "invalid_type", "an object"},
      {"response_format_no_type", chat_body(R"("response_format":{})"), "response_format.type", "missing_required_parameter",
       "is required"},
      {"tools_not_array", chat_body(R"("tools":{})"), "tools", "invalid_type", "an array"},
      {"tool_not_object", chat_body(R"("tools":["f"])"), "tools[0]", "invalid_type", "not a string"},
      {"tool_type_other", chat_body(R"("tools":[{"type":"retrieval"}])"), "tools[0].type", "unsupported_value",
       "only \"function\" tools are supported; got \"retrieval\""},
      {"tool_function_missing", chat_body(R"("tools":[{"type":"function"}])"), "tools[0].function", "missing_required_parameter",
       "is required"},
      {"tool_name_not_string", chat_body(R"("tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":5}}])"),
       "tools[1].function.name", "invalid_type", "must be a string"},
      {"tool_name_missing", chat_body(R"("tools":[{"type":"function","function":{"description":"d"}}])"),
       "tools[0].function.name", "missing_required_parameter", "is required"},
      {"tool_name_empty", chat_body(R"("tools":[{"type":"function","function":{"name":""}}])"), "tools[0].function.name",
       "invalid_value", "must not be empty"},
      {"tool_parameters_not_object", chat_body(R"("tools":[{"type":"function","function":{"name":"f","parameters":"x"}}])"),
       "tools[0].function.parameters", "invalid_type", "a JSON Schema object"},
      {"tool_choice_unknown", chat_body(k_tools + R"(,"tool_choice":"sometimes")"), "tool_choice", "invalid_value",
       "must be \"none\", \"auto\", \"required\" or"},
      {"tool_choice_number", chat_body(R"("tool_choice":1)"), "tool_choice", "invalid_type", "not an integer"},
      {"tool_choice_function_missing", chat_body(k_tools + R"(,"tool_choice":{"type":"function"})"), "tool_choice.function",
       "missing_required_parameter", "is required"},
      {"tool_choice_named_without_tools", chat_body(R"("tool_choice":{"type":"function","function":{"name":"f"}})"),
       "tool_choice", "invalid_value", "has no 'tools'"},
      {"tool_choice_names_unknown_tool", chat_body(k_tools + R"(,"tool_choice":{"type":"function","function":{"name":"launch"}})"),
       "tool_choice.function.name", "invalid_value", "\"launch\", which names no function in 'tools'"},
      {"tool_choice_required_without_tools", chat_body(R"("tool_choice":"required")"), "tool_choice", "invalid_value",
       "needs 'tools'"},
      {"parallel_tool_calls_string", chat_body(R"("parallel_tool_calls":"yes")"), "parallel_tool_calls", "invalid_type",
       "true or false"},
      {"chat_template_kwargs_array", chat_body(R"("chat_template_kwargs":[])"), "chat_template_kwargs", "invalid_type",
       "an object of template variables"},
      {"add_generation_prompt_string", chat_body(R"("add_generation_prompt":"x")"), "add_generation_prompt", "invalid_type",
       "true or false"},
      {"continue_and_add_generation_prompt", chat_body(R"("continue_final_message":true,"add_generation_prompt":true)"),
       "continue_final_message", "invalid_value", "cannot both be true"},
      {"vllm_guided_regex", chat_body(R"("guided_regex":"a+")"), "guided_regex", "unsupported_value",
       "not to regular expressions"},
      {"vllm_guided_json_format", chat_body(R"("guided_json":{"type":"string","format":"uuid"})"), "guided_json",
       "unsupported_value", "'format'"},
      {"vllm_structured_outputs", chat_body(R"("structured_outputs":{"regex":"a+"})"), "structured_outputs.regex",
       "unsupported_value", "not to regular expressions"},
      {"chat_template_in_request", chat_body(R"("chat_template":"{{ messages }}")"), "chat_template", "unsupported_value",
       "not supported"},
      {"long_value_is_cut_in_message", chat_with(R"([{"role":")" + std::string(500, 'x') + R"(","content":"b"}])"),
       "messages[0].role", "invalid_value", "xxx...\""},
  };
}

TEST(openai_chat_parse, rejects_each_bad_field_naming_it) {
  for (const auto& c : chat_reject_cases()) {
    SCOPED_TRACE(c.name);
    auto r = parse_chat_request(c.body);
    ASSERT_FALSE(r.ok());
    expect_rejected(r.error(), c);
  }
}

// ---------------------------------------------------------------------------------------------
// completions

struct completion_accept_case {
  const char* name;
  std::string body;
  std::function<void(const completion_request&)> check;
};

TEST(openai_completion_parse, accepts_every_prompt_form_and_field) {
  const std::vector<completion_accept_case> cases = {
      {"string_prompt_and_defaults", completion_body(""),
       [](auto& r) {
         ASSERT_EQ(r.prompts.size(), 1u);
         EXPECT_FALSE(r.batch);
         EXPECT_FALSE(r.prompts[0].is_tokens);
         EXPECT_EQ(r.prompts[0].text, "Once upon a time");
         EXPECT_EQ(r.params.max_tokens, 16);  // OpenAI's default
         EXPECT_FALSE(r.max_tokens);
         EXPECT_EQ(r.params.logprobs, -1);
         EXPECT_FALSE(r.echo);
       }},
      {"array_of_strings", R"({"model":"m","prompt":["a","b c"]})",
       [](auto& r) {
         ASSERT_EQ(r.prompts.size(), 2u);
         EXPECT_TRUE(r.batch);
         EXPECT_EQ(r.prompts[1].text, "b c");
       }},
      {"token_ids", R"({"model":"m","prompt":[1,2,2147483647]})",
       [](auto& r) {
         ASSERT_EQ(r.prompts.size(), 1u);
         EXPECT_FALSE(r.batch);
         EXPECT_TRUE(r.prompts[0].is_tokens);
         EXPECT_EQ(r.prompts[0].tokens, (std::vector<token_id>{1, 2, 2147483647}));
       }},
      {"arrays_of_token_ids", R"({"model":"m","prompt":[[1,2],[3]]})",
       [](auto& r) {
         ASSERT_EQ(r.prompts.size(), 2u);
         EXPECT_TRUE(r.batch);
         EXPECT_EQ(r.prompts[0].tokens, (std::vector<token_id>{1, 2}));
         EXPECT_EQ(r.prompts[1].tokens, (std::vector<token_id>{3}));
       }},
      {"logprobs_zero", completion_body(R"("logprobs":0)"), [](auto& r) { EXPECT_EQ(r.logprobs, 0); EXPECT_EQ(r.params.logprobs, 0); }},
      {"logprobs_five", completion_body(R"("logprobs":5)"), [](auto& r) { EXPECT_EQ(r.params.logprobs, 5); }},
      {"echo", completion_body(R"("echo":true)"), [](auto& r) { EXPECT_TRUE(r.echo); EXPECT_EQ(r.params.prompt_logprobs, -1); }},
      {"echo_with_logprobs", completion_body(R"("echo":true,"logprobs":2)"),
       [](auto& r) { EXPECT_EQ(r.params.logprobs, 2); EXPECT_EQ(r.params.prompt_logprobs, 2); }},
      {"max_tokens_zero_scores_the_prompt", completion_body(R"("echo":true,"logprobs":0,"max_tokens":0)"),
       [](auto& r) { EXPECT_EQ(r.params.max_tokens, 0); EXPECT_EQ(r.params.prompt_logprobs, 0); }},
      {"suffix_null_or_empty", completion_body(R"("suffix":null,"suffix":"")"), [](auto& r) { EXPECT_EQ(r.prompts.size(), 1u); }},
      {"best_of_equal_n", completion_body(R"("n":3,"best_of":3)"), [](auto& r) { EXPECT_EQ(r.n, 3); }},
      {"shared_fields", completion_body(R"("max_tokens":100,"temperature":0,"stop":["\n"],"stream":true,
                                          "stream_options":{"include_usage":true},"seed":7,"top_k":5,"min_tokens":3)"),
       [](auto& r) {
         EXPECT_EQ(r.params.max_tokens, 100);
         EXPECT_EQ(r.params.temperature, 0.0f);
         EXPECT_EQ(r.params.stop, std::vector<std::string>{"\n"});
         EXPECT_TRUE(r.stream);
         EXPECT_TRUE(r.include_usage);
         EXPECT_EQ(r.params.seed, 7u);
         EXPECT_EQ(r.params.top_k, 5);
         EXPECT_EQ(r.params.min_tokens, 3);
       }},
      {"chat_only_fields_are_unknown_here", completion_body(R"("max_completion_tokens":3,"messages":5,"tools":7)"),
       [](auto& r) { EXPECT_EQ(r.params.max_tokens, 16); }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = parse_completion_request(c.body);
    ASSERT_TRUE(r.ok()) << r.error().param << ": " << r.error().message;
    c.check(r.value());
    constexpr int64_t n_vocab = int64_t{1} << 31;  // every id a prompt may hold
    auto p = sampling_for_prompt(r.value(), 0, 10, {.n_vocab = n_vocab, .max_seq_len = 4096});
    ASSERT_TRUE(p.ok()) << p.error().message;
    EXPECT_TRUE(p->validate(n_vocab).ok()) << p->validate(n_vocab).message();
  }
}

TEST(openai_completion_parse, rejects_each_bad_field_naming_it) {
  const std::vector<reject_case> cases = {
      {"model_missing", R"({"prompt":"x"})", "model", "missing_required_parameter", "is required"},
      {"prompt_missing", R"({"model":"m"})", "prompt", "missing_required_parameter", "'prompt' is required"},
      {"prompt_empty", R"({"model":"m","prompt":""})", "prompt", "invalid_value", "'prompt' must not be empty"},
      {"prompt_empty_array", R"({"model":"m","prompt":[]})", "prompt", "invalid_value", "must not be an empty array"},
      {"prompt_object", R"({"model":"m","prompt":{}})", "prompt", "invalid_type",
       "a string, an array of strings, an array of token ids or an array of arrays of token ids, not an object"},
      {"prompt_number", R"({"model":"m","prompt":5})", "prompt", "invalid_type", "not an integer"},
      {"prompt_batch_empty_string", R"({"model":"m","prompt":["a",""]})", "prompt[1]", "invalid_value", "must not be empty"},
      {"prompt_strings_then_number", R"({"model":"m","prompt":["a",1]})", "prompt[1]", "invalid_type", "a string (as prompt[0] is)"},
      {"prompt_tokens_then_string", R"({"model":"m","prompt":[1,"a"]})", "prompt[1]", "invalid_type",
       "'prompt[1]' must be an integer from 0 to 2147483647 (a token id), not a string"},
      {"prompt_token_negative", R"({"model":"m","prompt":[5,-1]})", "prompt[1]", "invalid_value",
       "'prompt[1]' must be from 0 to 2147483647 (a token id); got -1"},
      {"prompt_token_too_large", R"({"model":"m","prompt":[2147483648]})", "prompt[0]", "invalid_value", "a token id"},
      {"prompt_token_fraction", R"({"model":"m","prompt":[1.5]})", "prompt[0]", "invalid_type", "not a decimal number"},
      {"prompt_bool", R"({"model":"m","prompt":[true]})", "prompt[0]", "invalid_type", "not a boolean"},
      {"prompt_objects", R"({"model":"m","prompt":[{"a":1}]})", "prompt[0]", "invalid_type", "not an object"},
      {"prompt_empty_token_array", R"({"model":"m","prompt":[[1],[]]})", "prompt[1]", "invalid_value", "empty array of token ids"},
      {"prompt_token_arrays_then_string", R"({"model":"m","prompt":[[1],"a"]})", "prompt[1]", "invalid_type",
       "an array of token ids (as prompt[0] is)"},
      {"prompt_nested_string", R"({"model":"m","prompt":[[1],["a"]]})", "prompt[1][0]", "invalid_type", "token id"},
      {"logprobs_too_many", completion_body(R"("logprobs":6)"), "logprobs", "invalid_value", "between 0 and 5"},
      {"logprobs_bool", completion_body(R"("logprobs":true)"), "logprobs", "invalid_type", "an integer between 0 and 5, not a boolean"},
      {"echo_string", completion_body(R"("echo":"yes")"), "echo", "invalid_type", "true or false"},
      {"max_tokens_zero_without_echo", completion_body(R"("max_tokens":0,"logprobs":1)"), "max_tokens", "invalid_value",
       "0 only with 'echo' and 'logprobs'"},
      {"suffix", completion_body(R"("suffix":"}")"), "suffix", "unsupported_value", "'suffix' is not supported"},
      {"suffix_number", completion_body(R"("suffix":1)"), "suffix", "invalid_type", "must be a string"},
      {"best_of_above_n", completion_body(R"("best_of":2)"), "best_of", "unsupported_value", "got best_of 2 with n 1"},
      {"min_tokens_above_default_max", completion_body(R"("min_tokens":20)"), "min_tokens", "invalid_value",
       "must not exceed 'max_tokens' (16, the default)"},
      {"temperature", completion_body(R"("temperature":[])"), "temperature", "invalid_type", "not an array"},
      {"stream_options_without_stream", completion_body(R"("stream_options":{})"), "stream_options", "invalid_value",
       "only allowed when 'stream' is true"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = parse_completion_request(c.body);
    ASSERT_FALSE(r.ok());
    expect_rejected(r.error(), c);
  }
}

// ---------------------------------------------------------------------------------------------
// embeddings

TEST(openai_embedding_parse, accepts_every_input_form_and_field) {
  auto r = parse_embedding_request(R"({"model":"e","input":"hello"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->model, "e");
  ASSERT_EQ(r->inputs.size(), 1u);
  EXPECT_EQ(r->inputs[0].text, "hello");
  EXPECT_EQ(r->encoding_format, encoding_format::float_);
  EXPECT_FALSE(r->dimensions);

  r = parse_embedding_request(R"({"model":"e","input":["a","b"],"encoding_format":"base64","dimensions":256,"user":"u"})");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->batch);
  EXPECT_EQ(r->inputs.size(), 2u);
  EXPECT_EQ(r->encoding_format, encoding_format::base64);
  EXPECT_EQ(r->dimensions, 256);
  EXPECT_EQ(r->user, "u");

  r = parse_embedding_request(R"({"model":"e","input":[[1,2],[3]],"encoding_format":"float"})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->inputs[1].tokens, std::vector<token_id>{3});

  r = parse_embedding_request(R"({"model":"e","input":[4,5],"encoding_format":null,"dimensions":null})");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->batch);
  EXPECT_EQ(r->inputs[0].tokens, (std::vector<token_id>{4, 5}));
}

TEST(openai_embedding_parse, rejects_each_bad_field_naming_it) {
  std::string many = R"({"model":"e","input":[)";
  for (int i = 0; i < 2049; ++i) many += i ? ",\"x\"" : "\"x\"";
  many += "]}";
  const std::vector<reject_case> cases = {
      {"model_missing", R"({"input":"x"})", "model", "missing_required_parameter", "is required"},
      {"input_missing", R"({"model":"e"})", "input", "missing_required_parameter", "'input' is required"},
      {"input_empty", R"({"model":"e","input":""})", "input", "invalid_value", "must not be empty"},
      {"input_empty_array", R"({"model":"e","input":[]})", "input", "invalid_value", "empty array"},
      {"input_element_empty", R"({"model":"e","input":["a",""]})", "input[1]", "invalid_value", "must not be empty"},
      {"input_bool", R"({"model":"e","input":true})", "input", "invalid_type", "not a boolean"},
      {"too_many_inputs", many, "input", "invalid_value", "at most 2048 items; got 2049"},
      {"encoding_format_other", R"({"model":"e","input":"x","encoding_format":"int8"})", "encoding_format", "invalid_value",
       "must be \"float\" or \"base64\"; got \"int8\""},
      {"dimensions_zero", R"({"model":"e","input":"x","dimensions":0})", "dimensions", "invalid_value", "at least 1"},
      {"user_number", R"({"model":"e","input":"x","user":1})", "user", "invalid_type", "must be a string"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = parse_embedding_request(c.body);
    ASSERT_FALSE(r.ok());
    expect_rejected(r.error(), c);
  }
}

// ---------------------------------------------------------------------------------------------
// checks once the prompt is tokenized

TEST(openai_sampling_for_prompt, chat_without_max_tokens_gets_the_room_left) {
  auto r = parse_chat_request(chat_body(R"("temperature":0.5)"));
  ASSERT_TRUE(r.ok());
  auto p = sampling_for_prompt(r.value(), 30, {.n_vocab = 1000, .max_seq_len = 100});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->max_tokens, 70);
  EXPECT_EQ(p->temperature, 0.5f);
}

TEST(openai_sampling_for_prompt, enforces_the_context_length_naming_the_prompt) {
  auto r = parse_chat_request(chat_body(R"("max_tokens":50)"));
  ASSERT_TRUE(r.ok());
  auto ok = sampling_for_prompt(r.value(), 50, {.n_vocab = 1000, .max_seq_len = 100});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->max_tokens, 50);

  auto over = sampling_for_prompt(r.value(), 60, {.n_vocab = 1000, .max_seq_len = 100});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().param, "messages");
  EXPECT_EQ(over.error().code, "context_length_exceeded");
  EXPECT_NE(over.error().message.find("maximum context length is 100 tokens. However, you requested 110 tokens "
                                      "(60 in the messages, 50 in the completion)"),
            std::string::npos)
      << over.error().message;

  auto unasked = parse_chat_request(chat_body(""));
  auto full = sampling_for_prompt(unasked.value(), 100, {.n_vocab = 1000, .max_seq_len = 100});
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.error().message.find("your messages resulted in 100 tokens, which leaves no room"), std::string::npos);

  auto empty = sampling_for_prompt(unasked.value(), 0, {.n_vocab = 1000, .max_seq_len = 100});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().param, "messages");
}

TEST(openai_sampling_for_prompt, completions_default_to_16_tokens_and_name_the_prompt_index) {
  auto one = parse_completion_request(completion_body(""));
  ASSERT_TRUE(one.ok());
  auto p = sampling_for_prompt(one.value(), 0, 84, {.n_vocab = 1000, .max_seq_len = 100});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->max_tokens, 16);
  auto over = sampling_for_prompt(one.value(), 0, 85, {.n_vocab = 1000, .max_seq_len = 100});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().param, "prompt");
  EXPECT_NE(over.error().message.find("(85 in the prompt, 16 in the completion)"), std::string::npos);

  auto batch = parse_completion_request(R"({"model":"m","prompt":[[1,2],[3,999,4]]})");
  ASSERT_TRUE(batch.ok());
  EXPECT_TRUE(sampling_for_prompt(batch.value(), 0, 2, {.n_vocab = 1000, .max_seq_len = 100}).ok());
  auto vocab = sampling_for_prompt(batch.value(), 1, 3, {.n_vocab = 500, .max_seq_len = 100});
  ASSERT_FALSE(vocab.ok());
  EXPECT_EQ(vocab.error().param, "prompt[1][1]");
  EXPECT_NE(vocab.error().message.find("is token 999, but the model's token ids run from 0 to 499"), std::string::npos);

  auto single = parse_completion_request(R"({"model":"m","prompt":[3,999]})");
  auto e = sampling_for_prompt(single.value(), 0, 2, {.n_vocab = 500, .max_seq_len = 100});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().param, "prompt[1]");
}

TEST(openai_sampling_for_prompt, checks_token_ids_and_min_tokens_against_the_model) {
  auto bias = parse_chat_request(chat_body(R"("logit_bias":{"10":1,"5000":2})"));
  auto e = sampling_for_prompt(bias.value(), 10, {.n_vocab = 1000, .max_seq_len = 100});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().param, "logit_bias");
  EXPECT_NE(e.error().message.find("names token 5000"), std::string::npos);

  auto stops = parse_chat_request(chat_body(R"("stop_token_ids":[1,1000])"));
  e = sampling_for_prompt(stops.value(), 10, {.n_vocab = 1000, .max_seq_len = 100});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().param, "stop_token_ids[1]");

  auto min = parse_chat_request(chat_body(R"("min_tokens":50)"));
  EXPECT_TRUE(sampling_for_prompt(min.value(), 50, {.n_vocab = 1000, .max_seq_len = 100}).ok());
  e = sampling_for_prompt(min.value(), 51, {.n_vocab = 1000, .max_seq_len = 100});
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().param, "min_tokens");
}

TEST(openai_check_embedding_input, names_the_input_that_does_not_fit) {
  auto r = parse_embedding_request(R"({"model":"e","input":["short","long"]})");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(check_embedding_input(r.value(), 0, 5, {.n_vocab = 100, .max_seq_len = 10}));
  auto e = check_embedding_input(r.value(), 1, 11, {.n_vocab = 100, .max_seq_len = 10});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "input[1]");
  EXPECT_EQ(e->code, "context_length_exceeded");
  auto t = parse_embedding_request(R"({"model":"e","input":[1,200]})");
  e = check_embedding_input(t.value(), 0, 2, {.n_vocab = 100, .max_seq_len = 10});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->param, "input[1]");
}

// ---------------------------------------------------------------------------------------------
// the chat template context

TEST(openai_chat_template_context, keeps_order_forms_and_lets_no_kwarg_override_the_request) {
  const std::string body = R"({"model":"m","messages":[
      {"role":"developer","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"Weather in"},{"type":"text","text":"Paris?"}],"name":"ann"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"unit\":\"c\",\"city\":\"Paris\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"18C"},
      {"role":"assistant","content":"18C.","reasoning_content":"look it up"}],
    )" + k_tools + R"(,
    "chat_template_kwargs":{"enable_thinking":false,"add_generation_prompt":false,"messages":[]}})";
  auto r = parse_chat_request(body);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const ojson ctx = chat_template_context(r.value());
  EXPECT_EQ(ctx["enable_thinking"], false);
  EXPECT_EQ(ctx["add_generation_prompt"], true);  // the request's, not the kwarg's
  const ojson& m = ctx["messages"];
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(m[0].dump(), R"({"role":"system","content":"Be brief."})");
  EXPECT_EQ(m[1].dump(), R"({"role":"user","content":"Weather in\nParis?","name":"ann"})");
  // arguments as the parsed object, in the client's key order (unit before city)
  EXPECT_EQ(m[2].dump(), R"({"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function",)"
                         R"("function":{"name":"get_weather","arguments":{"unit":"c","city":"Paris"}}}]})");
  EXPECT_EQ(m[3].dump(), R"({"role":"tool","content":"18C","tool_call_id":"call_1"})");
  EXPECT_EQ(m[4].dump(), R"({"role":"assistant","content":"18C.","reasoning_content":"look it up"})");
  EXPECT_EQ(ctx["tools"], r->tools);
  EXPECT_EQ(ctx["tools"][0]["function"]["parameters"].dump(),
            R"({"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["city"]})");

  template_options o;
  o.content_as_parts = true;
  o.arguments_as_objects = false;
  o.developer_as_system = false;
  const ojson raw = chat_template_context(r.value(), o);
  EXPECT_EQ(raw["messages"][0].dump(), R"({"role":"developer","content":[{"type":"text","text":"Be brief."}]})");
  EXPECT_EQ(raw["messages"][1]["content"].dump(), R"([{"type":"text","text":"Weather in"},{"type":"text","text":"Paris?"}])");
  EXPECT_EQ(raw["messages"][2]["content"].dump(), "[]");
  EXPECT_EQ(raw["messages"][2]["tool_calls"][0]["function"]["arguments"], R"({"unit":"c","city":"Paris"})");
}

TEST(openai_chat_template_context, tools_are_null_when_absent_and_continuation_adds_no_prompt) {
  auto r = parse_chat_request(chat_with(R"([{"role":"user","content":"hi"},{"role":"assistant","content":"Hel"}])",
                                        R"("continue_final_message":true)"));
  ASSERT_TRUE(r.ok());
  const ojson ctx = chat_template_context(r.value());
  EXPECT_TRUE(ctx.contains("tools"));
  EXPECT_TRUE(ctx["tools"].is_null());
  EXPECT_EQ(ctx["add_generation_prompt"], false);
}

// The context renders with the project's Jinja interpreter the way real templates read it: a
// Llama-3.1-style `arguments | tojson` and a Qwen-style `arguments is string` branch.
TEST(openai_chat_template_context, renders_with_real_template_idioms) {
  auto tmpl = chat_template::parse(
      "{%- for m in messages %}<{{ m.role }}>{{ m.content }}"
      "{%- for tc in m.tool_calls or [] %}[{{ tc.function.name }} {{ tc.function.arguments | tojson }}"
      "{%- if tc.function.arguments is string %} S{% else %} O{% endif %}]{% endfor %}"
      "{%- endfor %}{% if tools %}|{{ tools | length }} tools: {{ tools[0].function.parameters | tojson }}{% endif %}"
      "{% if add_generation_prompt %}<assistant>{% endif %}{% if enable_thinking == false %}/no_think{% endif %}");
  ASSERT_TRUE(tmpl.ok()) << tmpl.message();
  auto r = parse_chat_request(R"({"model":"m","messages":[{"role":"user","content":"Paris?"},
      {"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"w","arguments":"{\"z\":1,\"a\":[true]}"}}]},
      {"role":"tool","tool_call_id":"c","content":"18C"}],)" +
                              k_tools + R"(,"chat_template_kwargs":{"enable_thinking":false}})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto text = tmpl->render(chat_template_context(r.value()));
  ASSERT_TRUE(text.ok()) << text.message();
  EXPECT_EQ(*text, R"(<user>Paris?<assistant>[w {"z": 1, "a": [true]} O]<tool>18C|2 tools: )"
                   R"({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, )"
                   R"("required": ["city"]}<assistant>/no_think)");
}

// ---------------------------------------------------------------------------------------------
// what the official openai npm client sends (its documented request shapes, JSON.stringify'd
// in the order the caller wrote them)

TEST(openai_npm_client, chat_stream_request_with_tools_parses_and_renders) {
  const std::string body =
      R"({"model":"troupe-py-7m","messages":[{"role":"system","content":"You are a helpful assistant."},)"
      R"({"role":"user","content":"What's the weather like in Boston today?"}],"stream":true,)"
      R"("stream_options":{"include_usage":true},"max_completion_tokens":64,"temperature":0.7,"top_p":1,"n":1,)"
      R"("frequency_penalty":0,"presence_penalty":0,"stop":["\n\n"],"seed":1234,"user":"user-1234","logprobs":true,)"
      R"("top_logprobs":2,"tools":[{"type":"function","function":{"name":"get_current_weather",)"
      R"("description":"Get the current weather in a given location","parameters":{"type":"object","properties":)"
      R"({"location":{"type":"string","description":"The city and state, e.g. San Francisco, CA"},"unit":{"type":"string",)"
      R"("enum":["celsius","fahrenheit"]}},"required":["location"]},"strict":false}}],"tool_choice":"auto",)"
      R"("parallel_tool_calls":true,"response_format":{"type":"text"},"store":false,"metadata":{"session":"abc"}})";
  auto r = parse_chat_request(body);
  ASSERT_TRUE(r.ok()) << r.error().param << ": " << r.error().message;
  EXPECT_EQ(r->model, "troupe-py-7m");
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_EQ(r->max_tokens, 64);
  EXPECT_EQ(r->params.temperature, 0.7f);
  EXPECT_EQ(r->params.stop, std::vector<std::string>{"\n\n"});
  EXPECT_EQ(r->params.seed, 1234u);
  EXPECT_EQ(r->params.logprobs, 2);
  EXPECT_EQ(r->tools.size(), 1u);
  EXPECT_EQ(r->tool_choice->mode, tool_choice::kind::auto_);
  const ojson ctx = chat_template_context(r.value());
  EXPECT_EQ(ctx["messages"][1]["content"], "What's the weather like in Boston today?");

  // The follow-up the client's docs show: the assistant's tool call and the tool's answer.
  const std::string follow_up =
      R"({"model":"troupe-py-7m","messages":[{"role":"user","content":"What's the weather like in Boston today?"},)"
      R"({"role":"assistant","content":null,"tool_calls":[{"id":"call_abc123","type":"function","function":)"
      R"({"name":"get_current_weather","arguments":"{\n\"location\": \"Boston, MA\"\n}"}}]},)"
      R"({"role":"tool","tool_call_id":"call_abc123","content":"{\"temperature\": \"22\", \"unit\": \"celsius\"}"}]})";
  auto f = parse_chat_request(follow_up);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(chat_template_context(f.value())["messages"][1]["tool_calls"][0]["function"]["arguments"].dump(),
            R"({"location":"Boston, MA"})");
}

TEST(openai_npm_client, completion_and_embedding_requests_parse) {
  auto c = parse_completion_request(
      R"({"model":"troupe-py-7m","prompt":"Say this is a test","max_tokens":7,"temperature":0,"stream":false,"echo":false,"logprobs":2})");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->params.max_tokens, 7);
  EXPECT_EQ(c->params.logprobs, 2);
  // The client asks for base64 unless told otherwise, and decodes it itself.
  auto e = parse_embedding_request(R"({"model":"troupe-py-7m","input":"The quick brown fox","encoding_format":"base64"})");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->encoding_format, encoding_format::base64);
}

// ---------------------------------------------------------------------------------------------
// writers

std::vector<logprob_entry> sample_logprobs() {
  return {
      {"Hello", -0.25f, {{"Hello", -0.25f}, {"Hi", -1.5f}}},
      {"\xE2\x82", -0.5f, {{"\xE2\x82", -0.5f}, {"\xE2\x80", -2.0f}}},  // half a character
      {"\xAC", -std::numeric_limits<float>::infinity(), {}},
  };
}

TEST(openai_write, chat_completion_round_trips_field_by_field) {
  chat_completion c;
  c.id = "chatcmpl-abc";
  c.created = 1700000000;
  c.model = "m\"odel";
  c.usage = {.prompt_tokens = 12, .completion_tokens = 3, .cached_tokens = 8};
  c.choices.push_back({.index = 0, .content = "line1\nline2 \"q\" \x01 caf\xC3\xA9 \xF0\x9F\x8E\x89",
                       .finish_reason = finish_reason::length});
  c.choices.push_back({.index = 1, .content = "x", .reasoning_content = "because",
                       .finish_reason = finish_reason::stop, .stop_reason = std::string("</s>"),
                       .logprobs = sample_logprobs()});
  c.choices.push_back({.index = 2, .content = "", .finish_reason = finish_reason::abort, .stop_reason = token_id{2}});
  const json j = json::parse(write_chat_completion(c));
  EXPECT_EQ(j["id"], "chatcmpl-abc");
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "m\"odel");
  ASSERT_EQ(j["choices"].size(), 3u);
  const json& c0 = j["choices"][0];
  EXPECT_EQ(c0["index"], 0);
  EXPECT_EQ(c0["message"]["role"], "assistant");
  EXPECT_EQ(c0["message"]["content"], "line1\nline2 \"q\" \x01 caf\xC3\xA9 \xF0\x9F\x8E\x89");
  EXPECT_TRUE(c0["message"]["refusal"].is_null());
  EXPECT_FALSE(c0["message"].contains("reasoning_content"));
  EXPECT_TRUE(c0["logprobs"].is_null());
  EXPECT_EQ(c0["finish_reason"], "length");
  EXPECT_TRUE(c0["stop_reason"].is_null());
  const json& c1 = j["choices"][1];
  EXPECT_EQ(c1["message"]["reasoning_content"], "because");
  EXPECT_EQ(c1["finish_reason"], "stop");
  EXPECT_EQ(c1["stop_reason"], "</s>");
  const json& lp = c1["logprobs"]["content"];
  ASSERT_EQ(lp.size(), 3u);
  EXPECT_EQ(lp[0]["token"], "Hello");
  EXPECT_EQ(lp[0]["logprob"], -0.25);
  EXPECT_EQ(lp[0]["bytes"], json::parse("[72,101,108,108,111]"));
  ASSERT_EQ(lp[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(lp[0]["top_logprobs"][1]["token"], "Hi");
  EXPECT_EQ(lp[0]["top_logprobs"][1]["logprob"], -1.5);
  EXPECT_EQ(lp[0]["top_logprobs"][1]["bytes"], json::parse("[72,105]"));
  EXPECT_EQ(lp[1]["token"], "\xEF\xBF\xBD");  // repaired text, raw bytes
  EXPECT_EQ(lp[1]["bytes"], json::parse("[226,130]"));
  EXPECT_EQ(lp[2]["logprob"], -9999.0);
  EXPECT_TRUE(lp[2]["top_logprobs"].is_array() && lp[2]["top_logprobs"].empty());
  EXPECT_EQ(j["choices"][2]["finish_reason"], "abort");
  EXPECT_EQ(j["choices"][2]["stop_reason"], 2);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 12);
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  EXPECT_EQ(j["usage"]["total_tokens"], 15);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
}

// Splits an SSE stream into its events' JSON, checking the framing of each.
std::vector<std::string> sse_events(const std::string& stream) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < stream.size()) {
    const size_t end = stream.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated event";
    if (end == std::string::npos) break;
    const std::string event = stream.substr(pos, end - pos);
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    EXPECT_EQ(event.find('\n'), std::string::npos) << "an event is one line";
    EXPECT_EQ(event.find('\r'), std::string::npos);
    out.push_back(event.substr(6));
    pos = end + 2;
  }
  return out;
}

TEST(openai_write, chat_stream_is_framed_as_openai_frames_it) {
  stream_info s{.id = "chatcmpl-1", .created = 42, .model = "m", .include_usage = true};
  std::string stream;
  append_chat_chunk(stream, s, {.index = 0, .role = true});
  const auto lp = sample_logprobs();
  append_chat_chunk(stream, s, {.index = 0, .content = "Hel\n\"lo\"", .logprobs = std::span(lp).first(1)});
  append_chat_chunk(stream, s, {.index = 0, .reasoning_content = "hmm"});
  append_chat_chunk(stream, s, {.index = 0, .finish_reason = finish_reason::stop, .stop_reason = std::string("\n\n")});
  append_chat_usage_chunk(stream, s, {.prompt_tokens = 5, .completion_tokens = 2, .cached_tokens = 0});
  stream += sse_done;

  const auto events = sse_events(stream);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events[0], R"({"id":"chatcmpl-1","object":"chat.completion.chunk","created":42,"model":"m","choices":)"
                       R"([{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],)"
                       R"("usage":null})");
  for (size_t i = 0; i < 5; ++i) {
    const json j = json::parse(events[i]);
    EXPECT_EQ(j["id"], "chatcmpl-1");
    EXPECT_EQ(j["object"], "chat.completion.chunk");
    EXPECT_EQ(j["created"], 42);
    EXPECT_EQ(j["model"], "m");
    ASSERT_TRUE(j.contains("usage"));
  }
  const json d1 = json::parse(events[1]);
  EXPECT_EQ(d1["choices"][0]["delta"], json::parse(R"({"content":"Hel\n\"lo\""})"));
  EXPECT_EQ(d1["choices"][0]["logprobs"]["content"][0]["token"], "Hello");
  EXPECT_TRUE(d1["usage"].is_null());
  EXPECT_EQ(json::parse(events[2])["choices"][0]["delta"], json::parse(R"({"reasoning_content":"hmm"})"));
  const json last = json::parse(events[3]);
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(last["choices"][0]["stop_reason"], "\n\n");
  const json usage = json::parse(events[4]);
  EXPECT_TRUE(usage["choices"].is_array() && usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 7);
  EXPECT_EQ(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  EXPECT_EQ(events[5], "[DONE]");

  // Without include_usage the chunks carry no usage key at all.
  std::string plain;
  append_chat_chunk(plain, {.id = "c", .created = 1, .model = "m"}, {.index = 3, .content = "x"});
  const json p = json::parse(sse_events(plain).at(0));
  EXPECT_FALSE(p.contains("usage"));
  EXPECT_EQ(p["choices"][0]["index"], 3);
}

TEST(openai_write, completion_logprobs_have_offsets_and_the_chosen_token) {
  completion c;
  c.id = "cmpl-1";
  c.created = 7;
  c.model = "m";
  c.usage = {.prompt_tokens = 4, .completion_tokens = 3};
  std::vector<logprob_entry> lp = {
      {"caf\xC3\xA9", -0.1f, {{"cafe", -0.5f}}},           // chosen not among the top: added
      {"\xE2\x82", -0.2f, {{"\xE2\x82", -0.2f}, {"\xE2\x80", -0.9f}, {" x", -3.0f}}},  // two read U+FFFD
      {"!", -0.3f, {{"!", -0.3f}}},
  };
  c.choices.push_back({.index = 0, .text = "café\xE2\x82!", .finish_reason = finish_reason::length, .logprobs = lp,
                       .text_offset_base = 10});
  const json j = json::parse(write_completion(c));
  EXPECT_EQ(j["object"], "text_completion");
  const json& ch = j["choices"][0];
  EXPECT_EQ(ch["text"], "caf\xC3\xA9\xEF\xBF\xBD!");
  EXPECT_EQ(ch["finish_reason"], "length");
  const json& l = ch["logprobs"];
  EXPECT_EQ(l["tokens"], json::parse(R"(["café","\ufffd","!"])"));
  // Floats are written in their shortest form, which reads back as the decimal.
  EXPECT_EQ(l["token_logprobs"], json::parse("[-0.1,-0.2,-0.3]"));
  EXPECT_EQ(l["top_logprobs"][0], json::parse(R"({"cafe":-0.5,"café":-0.1})"));
  // One key per text, keeping the larger logprob.
  EXPECT_EQ(l["top_logprobs"][1].size(), 2u);
  EXPECT_EQ(l["top_logprobs"][1], json::parse(R"({"\ufffd":-0.2," x":-3.0})"));
  EXPECT_EQ(l["text_offset"], json::parse("[10,14,15]"));  // code points: "café" is 4
  EXPECT_EQ(j["usage"]["total_tokens"], 7);
}

TEST(openai_write, echoed_prompt_logprobs_start_with_a_null_entry) {
  completion c;
  c.id = "cmpl-2";
  c.model = "m";
  logprob_entry first{"<s>", 0.0f, {}};
  first.none = true;
  std::vector<logprob_entry> lp = {first, {"Hi", -1.5f, {{"Hi", -1.5f}, {"Ho", -2.0f}}}, {"!", -0.25f, {{"!", -0.25f}}}};
  c.choices.push_back({.index = 0, .text = "Hi!", .logprobs = lp, .text_offset_base = 0});
  const json l = json::parse(write_completion(c))["choices"][0]["logprobs"];
  EXPECT_EQ(l["tokens"], json::parse(R"(["<s>","Hi","!"])"));
  EXPECT_EQ(l["token_logprobs"], json::parse("[null,-1.5,-0.25]"));
  EXPECT_EQ(l["top_logprobs"], json::parse(R"([null,{"Hi":-1.5,"Ho":-2.0},{"!":-0.25}])"));
  EXPECT_EQ(l["text_offset"], json::parse("[0,3,5]"));
}

TEST(openai_write, completion_stream_chunks_and_usage) {
  stream_info s{.id = "cmpl-2", .created = 9, .model = "m", .include_usage = true};
  std::string stream;
  const std::vector<logprob_entry> lp = {{"a", -1.0f, {}}};
  append_completion_chunk(stream, s, {.index = 1, .text = "a", .logprobs = lp, .text_offset = 5});
  append_completion_chunk(stream, s, {.index = 1, .text = "", .finish_reason = finish_reason::length});
  append_completion_usage_chunk(stream, s, {.prompt_tokens = 3, .completion_tokens = 1, .cached_tokens = 2});
  stream += sse_done;
  const auto events = sse_events(stream);
  ASSERT_EQ(events.size(), 4u);
  const json a = json::parse(events[0]);
  EXPECT_EQ(a["object"], "text_completion");
  EXPECT_EQ(a["choices"][0]["index"], 1);
  EXPECT_EQ(a["choices"][0]["text"], "a");
  EXPECT_EQ(a["choices"][0]["logprobs"]["text_offset"], json::parse("[5]"));
  EXPECT_EQ(a["choices"][0]["logprobs"]["top_logprobs"][0], json::parse(R"({"a":-1.0})"));
  EXPECT_TRUE(a["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(a["usage"].is_null());
  const json b = json::parse(events[1]);
  EXPECT_EQ(b["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(b["choices"][0]["logprobs"].is_null());
  const json u = json::parse(events[2]);
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
  EXPECT_EQ(events[3], "[DONE]");
}

std::vector<unsigned char> base64_decode(const std::string& s) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::vector<unsigned char> out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    const int v = val(c);
    EXPECT_GE(v, 0) << c;
    acc = acc << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<unsigned char>(acc >> bits & 0xFF));
    }
  }
  return out;
}

TEST(openai_write, embeddings_as_floats_and_as_base64) {
  embedding_response r;
  r.model = "e";
  r.prompt_tokens = 9;
  r.embeddings = {{0.1f, -2.5f, 1e-8f, 3.4028235e38f}, {0.0f, -0.0f, 123456.789f}, {}};
  const json j = json::parse(write_embeddings(r));
  EXPECT_EQ(j["object"], "list");
  EXPECT_EQ(j["model"], "e");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 9);
  EXPECT_EQ(j["usage"]["total_tokens"], 9);
  ASSERT_EQ(j["data"].size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(j["data"][i]["object"], "embedding");
    EXPECT_EQ(j["data"][i]["index"], i);
    ASSERT_EQ(j["data"][i]["embedding"].size(), r.embeddings[i].size());
    for (size_t k = 0; k < r.embeddings[i].size(); ++k)  // the shortest form reads back exactly
      EXPECT_EQ(static_cast<float>(j["data"][i]["embedding"][k].get<double>()), r.embeddings[i][k]);
  }
  // base64 lengths 0, 1 and 2 mod 3 bytes: 16, 12 and 0 bytes, plus 1 and 2 floats
  r.embeddings.push_back({1.0f});
  r.embeddings.push_back({1.0f, -1.0f});
  r.encoding_format = encoding_format::base64;
  const json b = json::parse(write_embeddings(r));
  for (size_t i = 0; i < r.embeddings.size(); ++i) {
    const auto bytes = base64_decode(b["data"][i]["embedding"].get<std::string>());
    ASSERT_EQ(bytes.size(), r.embeddings[i].size() * 4);
    EXPECT_EQ(b["data"][i]["embedding"].get<std::string>().size() % 4, 0u);
    if (!bytes.empty()) {
      EXPECT_EQ(std::memcmp(bytes.data(), r.embeddings[i].data(), bytes.size()), 0);
    }
  }
  EXPECT_EQ(b["data"][3]["embedding"], "AACAPw==");  // 1.0f little-endian
}

TEST(openai_write, model_list_error_body_and_ids) {
  const std::vector<model_card> models = {{.id = "troupe-py-7m", .created = 5, .max_model_len = 2048},
                                          {.id = "other", .created = 6, .owned_by = "me"}};
  const json l = json::parse(write_model_list(models));
  EXPECT_EQ(l["object"], "list");
  ASSERT_EQ(l["data"].size(), 2u);
  EXPECT_EQ(l["data"][0], json::parse(R"({"id":"troupe-py-7m","object":"model","created":5,"owned_by":"troupe","max_model_len":2048})"));
  EXPECT_EQ(l["data"][1], json::parse(R"({"id":"other","object":"model","created":6,"owned_by":"me"})"));
  EXPECT_EQ(json::parse(write_model(models[1])), l["data"][1]);
  EXPECT_EQ(json::parse(write_model_list({})), json::parse(R"({"object":"list","data":[]})"));
  model_card embeds{.id = "e", .created = 1};
  embeds.embedding_pooling = "mean";
  embeds.embedding_dimensions = 64;
  EXPECT_EQ(json::parse(write_model(embeds))["embedding"], json::parse(R"({"pooling":"mean","dimensions":64,"normalized":true})"));

  const json e = json::parse(write_error({.status = 401, .message = "Invalid \"key\"", .type = "authentication_error",
                                          .param = "", .code = "invalid_api_key"}));
  EXPECT_EQ(e, json::parse(R"({"error":{"message":"Invalid \"key\"","type":"authentication_error","param":null,"code":"invalid_api_key"}})"));
  const json n = json::parse(write_error(invalid_request("temperature", "bad", "")));
  EXPECT_EQ(n["error"]["param"], "temperature");
  EXPECT_TRUE(n["error"]["code"].is_null());

  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = new_request_id("chatcmpl");
    ASSERT_EQ(id.size(), 9u + 32u);
    ASSERT_EQ(id.rfind("chatcmpl-", 0), 0u);
    ASSERT_EQ(id.find_first_not_of("0123456789abcdef", 9), std::string::npos) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
  EXPECT_EQ(new_request_id("cmpl").rfind("cmpl-", 0), 0u);
  EXPECT_NEAR(static_cast<double>(unix_seconds()), static_cast<double>(std::time(nullptr)), 2.0);
}

TEST(openai_write, logprob_entries_take_token_bytes_from_the_callback) {
  const std::vector<sampled> s = {{.id = 3, .logprob = -0.5f, .top = {{3, -0.5f}, {9, -1.0f}}}, {.id = 9, .logprob = -1.0f}};
  std::vector<token_id> asked;
  const auto e = logprob_entries(s, [&](token_id id) {
    asked.push_back(id);
    return "t" + std::to_string(id);
  });
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].token, "t3");
  EXPECT_EQ(e[0].logprob, -0.5f);
  ASSERT_EQ(e[0].top.size(), 2u);
  EXPECT_EQ(e[0].top[1].token, "t9");
  EXPECT_EQ(e[0].top[1].logprob, -1.0f);
  EXPECT_EQ(e[1].token, "t9");
  EXPECT_TRUE(e[1].top.empty());
  EXPECT_EQ(asked, (std::vector<token_id>{3, 3, 9, 9}));
}

// ---------------------------------------------------------------------------------------------
// strings: escaping and UTF-8 repair (expectations from Python's bytes.decode(errors="replace"))

struct utf8_case {
  const char* name;
  std::string in;
  std::string literal;  // the JSON literal written
};

TEST(openai_json_string, escapes_controls_and_repairs_broken_utf8) {
  const std::string r = "\xEF\xBF\xBD";  // U+FFFD
  const std::vector<utf8_case> cases = {
      {"plain", "abc", "\"abc\""},
      {"empty", "", "\"\""},
      {"quote_backslash", "a\"b\\c/", R"("a\"b\\c/")"},
      {"named_controls", "\n\r\t\b\f", R"("\n\r\t\b\f")"},
      {"other_controls", std::string("\x00\x01\x1f\x7f", 4), "\"\\u0000\\u0001\\u001f\x7f\""},
      {"valid_multibyte", "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x8E\x89", "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x8E\x89\""},
      {"truncated_two_byte_at_end", "a\xC3", "\"a" + r + "\""},
      {"two_byte_lead_then_ascii", "\xC3(", "\"" + r + "(\""},
      {"truncated_three_byte_is_one_replacement", "\xE2\x82", "\"" + r + "\""},
      {"truncated_four_byte_is_one_replacement", "\xF0\x9F\x8E", "\"" + r + "\""},
      {"overlong_two_byte", "\xC0\xAF", "\"" + r + r + "\""},
      {"overlong_three_byte", "\xE0\x80\xAF", "\"" + r + r + r + "\""},
      {"surrogate", "\xED\xA0\x80", "\"" + r + r + r + "\""},
      {"above_max_code_point", "\xF4\x90\x80\x80", "\"" + r + r + r + r + "\""},
      {"overlong_four_byte", "\xF0\x80\x80\x80", "\"" + r + r + r + r + "\""},
      {"invalid_byte", "\xFF", "\"" + r + "\""},
      {"lone_continuation", "\x80" "abc", "\"" + r + "abc\""},
      {"broken_then_valid_then_broken", "\xE2\x82(\xE2", "\"" + r + "(" + r + "\""},
      {"broken_before_escape", "\xC3\"", "\"" + r + "\\\"\""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string out;
    append_json_string(out, c.in);
    EXPECT_EQ(out, c.literal);
    EXPECT_TRUE(json::accept(out));  // valid JSON and valid UTF-8 (nlohmann checks both)
  }
}

TEST(openai_json_string, every_writer_survives_every_byte) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  all += all;
  chat_completion c{.id = all, .created = 1, .model = all};
  c.choices.push_back({.content = all, .reasoning_content = all, .stop_reason = all, .logprobs = std::vector<logprob_entry>{{all, -1.0f, {{all, -2.0f}}}}});
  EXPECT_TRUE(json::accept(write_chat_completion(c)));
  completion t{.id = all, .model = all};
  t.choices.push_back({.text = all, .logprobs = std::vector<logprob_entry>{{all, -1.0f, {{all, -2.0f}}}}});
  EXPECT_TRUE(json::accept(write_completion(t)));
  std::string stream;
  append_chat_chunk(stream, {.id = all, .model = all}, {.content = all, .reasoning_content = all});
  append_completion_chunk(stream, {.id = all, .model = all}, {.text = all});
  for (const auto& e : sse_events(stream)) EXPECT_TRUE(json::accept(e));
  EXPECT_TRUE(json::accept(write_error({.message = all, .param = all, .code = all})));
  const std::vector<model_card> m = {{.id = all, .owned_by = all}};
  EXPECT_TRUE(json::accept(write_model_list(m)));
}

TEST(openai_parse, error_messages_of_broken_input_are_written_as_valid_json) {
  // A lone surrogate escape: whatever simdjson makes of it, what is written back is valid.
  for (const char* body : {R"({"model":"\udc00","messages":[{"role":"\ud800x","content":"a"}]})",
                           R"({"model":"m","messages":[{"role":"\ud83c\udf89","content":"a"}]})"}) {
    auto r = parse_chat_request(body);
    ASSERT_FALSE(r.ok());
    EXPECT_TRUE(json::accept(write_error(r.error())));
  }
}

}  // namespace
}  // namespace troupe::openai

namespace troupe::openai {
namespace {

TEST(openai_write, tool_calls_in_a_message_and_in_stream_deltas) {
  chat_completion c;
  c.id = "chatcmpl-1";
  c.model = "m";
  chat_choice ch;
  ch.finish_reason = finish_reason::tool_calls;
  ch.tool_calls.push_back({"call_abc", "get_weather", R"({"city": "Paris"})"});
  c.choices.push_back(ch);
  const auto j = nlohmann::json::parse(write_chat_completion(c));
  const auto& m = j["choices"][0]["message"];
  EXPECT_TRUE(m["content"].is_null());  // no text beside the calls
  EXPECT_EQ(j["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(m["tool_calls"][0]["id"], "call_abc");
  EXPECT_EQ(m["tool_calls"][0]["type"], "function");
  EXPECT_EQ(m["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(m["tool_calls"][0]["function"]["arguments"], R"({"city": "Paris"})");

  stream_info s{"chatcmpl-1", 1, "m", false};
  const std::vector<tool_call_delta> first = {{0, "call_abc", "get_weather", ""}};
  const std::vector<tool_call_delta> more = {{0, "", "", R"({"ci)"}};
  std::string out;
  chat_delta d;
  d.tool_calls = first;
  append_chat_chunk(out, s, d);
  d.tool_calls = more;
  append_chat_chunk(out, s, d);
  std::vector<nlohmann::json> chunks;
  for (size_t at = 0; (at = out.find("data: ", at)) != std::string::npos; at += 6)
    chunks.push_back(nlohmann::json::parse(out.substr(at + 6, out.find("\n\n", at) - at - 6)));
  ASSERT_EQ(chunks.size(), 2u);
  const auto& t0 = chunks[0]["choices"][0]["delta"]["tool_calls"][0];
  EXPECT_EQ(t0["index"], 0);
  EXPECT_EQ(t0["id"], "call_abc");
  EXPECT_EQ(t0["type"], "function");
  EXPECT_EQ(t0["function"]["name"], "get_weather");
  EXPECT_EQ(t0["function"]["arguments"], "");
  const auto& t1 = chunks[1]["choices"][0]["delta"]["tool_calls"][0];
  EXPECT_FALSE(t1.contains("id"));
  EXPECT_FALSE(t1["function"].contains("name"));
  EXPECT_EQ(t1["function"]["arguments"], R"({"ci)");
  EXPECT_FALSE(chunks[1]["choices"][0]["delta"].contains("content"));
}

}  // namespace
}  // namespace troupe::openai
