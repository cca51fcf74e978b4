// Proves the tool-call parsers on crafted outputs of each format: the calls and content they
// find, that a stream cut at every byte gives the same events as the whole text, that text
// which only looks like a call stays content, and that real chat templates (Qwen 2.5, Hermes,
// Llama 3.1, Mistral) are recognised and render a tool round trip (tools, the assistant's
// call, the tool's result) that the parser reads back.
#include "runtime/structured/tool_calls.hpp"

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/text/chat_template.hpp"
#include "tests/test_data.hpp"

namespace troupe::structured {
namespace {

struct outcome {
  std::string content;
  std::vector<parsed_call> calls;
};

// The events folded into content and calls.
outcome fold(const std::vector<tool_event>& events) {
  outcome o;
  for (const auto& e : events) {
    if (e.what == tool_event::kind::content) o.content += e.text;
    else if (e.what == tool_event::kind::call_start) o.calls.push_back({e.text, ""});
    else o.calls.at(e.index).arguments += e.text;
  }
  return o;
}

outcome parse_whole(tool_format f, std::string_view text, std::string forced = "") {
  tool_call_parser p(f, forced);
  auto ev = p.push(text);
  auto tail = p.finish();
  ev.insert(ev.end(), tail.begin(), tail.end());
  const outcome o = fold(ev);
  // The parser's own record agrees with its events.
  EXPECT_EQ(o.content, p.content());
  EXPECT_EQ(o.calls.size(), p.calls().size());
  return o;
}

// Streaming in pieces of `step` bytes gives what parsing at once gives.
void expect_stream_equals_whole(tool_format f, std::string_view text, std::string forced = "") {
  const outcome whole = parse_whole(f, text, forced);
  for (size_t step : {1, 2, 3, 7}) {
    tool_call_parser p(f, forced);
    std::vector<tool_event> ev;
    for (size_t i = 0; i < text.size(); i += step) {
      auto e = p.push(text.substr(i, step));
      ev.insert(ev.end(), e.begin(), e.end());
    }
    auto e = p.finish();
    ev.insert(ev.end(), e.begin(), e.end());
    const outcome s = fold(ev);
    EXPECT_EQ(s.content, whole.content) << tool_format_name(f) << " step " << step << ": " << text;
    ASSERT_EQ(s.calls.size(), whole.calls.size()) << text;
    for (size_t i = 0; i < s.calls.size(); ++i) {
      EXPECT_EQ(s.calls[i].name, whole.calls[i].name);
      EXPECT_EQ(s.calls[i].arguments, whole.calls[i].arguments);
    }
  }
}

TEST(tool_calls, hermes_calls_with_text_around_them) {
  const std::string text =
      "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n"
      "</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>";
  const outcome o = parse_whole(tool_format::hermes, text);
  EXPECT_EQ(o.content, "Let me check.\n\n");
  ASSERT_EQ(o.calls.size(), 2u);
  EXPECT_EQ(o.calls[0].name, "get_weather");
  EXPECT_EQ(o.calls[0].arguments, R"({"city": "Paris", "unit": "c"})");
  EXPECT_EQ(o.calls[1].name, "now");
  EXPECT_EQ(o.calls[1].arguments, "{}");
  expect_stream_equals_whole(tool_format::hermes, text);
  // Arguments before the name, escapes and braces inside strings.
  const std::string tricky =
      "<tool_call>{\"arguments\": {\"q\": \"a}\\\"b{\", \"n\": [1, {\"x\": null}]}, \"name\": \"search\"}</tool_call>";
  const outcome t = parse_whole(tool_format::hermes, tricky);
  ASSERT_EQ(t.calls.size(), 1u);
  EXPECT_EQ(t.calls[0].name, "search");
  EXPECT_EQ(t.calls[0].arguments, R"({"q": "a}\"b{", "n": [1, {"x": null}]})");
  expect_stream_equals_whole(tool_format::hermes, tricky);
}

TEST(tool_calls, what_only_looks_like_a_call_stays_content) {
  for (const char* text : {"no calls here, just <tool_ text", "<tool_call>not json</tool_call> after",
                           "<tool_call>{\"city\": \"Paris\"}</tool_call>", "a < b and <tool_call"}) {
    const outcome o = parse_whole(tool_format::hermes, text);
    EXPECT_TRUE(o.calls.empty()) << text;
    EXPECT_EQ(o.content, text);
    expect_stream_equals_whole(tool_format::hermes, text);
  }
  const outcome j = parse_whole(tool_format::llama3_json, R"({"answer": 42})");
  EXPECT_TRUE(j.calls.empty());
  EXPECT_EQ(j.content, R"({"answer": 42})");
  const outcome plain = parse_whole(tool_format::llama3_json, "The weather is fine.");
  EXPECT_EQ(plain.content, "The weather is fine.");
}

TEST(tool_calls, cut_short_calls_keep_what_they_sent) {
  const outcome o = parse_whole(tool_format::hermes, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1");
  ASSERT_EQ(o.calls.size(), 1u);
  EXPECT_EQ(o.calls[0].arguments, "{\"a\": 1");
  EXPECT_EQ(o.content, "");
}

TEST(tool_calls, llama3_json_with_python_tag_and_several_calls) {
  const std::string text =
      R"(<|python_tag|>{"name": "get_weather", "parameters": {"city": "Oslo"}}; {"name": "now", "parameters": {}})";
  const outcome o = parse_whole(tool_format::llama3_json, text);
  ASSERT_EQ(o.calls.size(), 2u);
  EXPECT_EQ(o.calls[0].arguments, R"({"city": "Oslo"})");
  EXPECT_EQ(o.calls[1].name, "now");
  EXPECT_EQ(o.content, "");
  expect_stream_equals_whole(tool_format::llama3_json, text);
  expect_stream_equals_whole(tool_format::llama3_json, R"({"name": "f", "parameters": {"x": [1, 2]}})");
}

TEST(tool_calls, mistral_array_and_v11_forms) {
  const std::string arr = R"([TOOL_CALLS][{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}])";
  const outcome o = parse_whole(tool_format::mistral, arr);
  ASSERT_EQ(o.calls.size(), 2u);
  EXPECT_EQ(o.calls[0].arguments, R"({"x": 1})");
  expect_stream_equals_whole(tool_format::mistral, arr);
  const std::string v11 = R"(Sure.[TOOL_CALLS]get_weather[ARGS]{"city": "Rome"}[TOOL_CALLS]now[ARGS]{})";
  const outcome v = parse_whole(tool_format::mistral, v11);
  EXPECT_EQ(v.content, "Sure.");
  ASSERT_EQ(v.calls.size(), 2u);
  EXPECT_EQ(v.calls[0].name, "get_weather");
  EXPECT_EQ(v.calls[0].arguments, R"({"city": "Rome"})");
  EXPECT_EQ(v.calls[1].arguments, "{}");
  expect_stream_equals_whole(tool_format::mistral, v11);
}

TEST(tool_calls, json_array_and_forced_arguments) {
  const std::string text = "[\n  {\"name\": \"f\", \"parameters\": {\"a\": \"x\"}},\n  {\"name\": \"g\", \"parameters\": {}}\n]";
  const outcome o = parse_whole(tool_format::json_array, text);
  ASSERT_EQ(o.calls.size(), 2u);
  EXPECT_EQ(o.calls[0].arguments, R"({"a": "x"})");
  expect_stream_equals_whole(tool_format::json_array, text);
  const outcome a = parse_whole(tool_format::arguments, R"({"city": "Lima"})", "get_weather");
  ASSERT_EQ(a.calls.size(), 1u);
  EXPECT_EQ(a.calls[0].name, "get_weather");
  EXPECT_EQ(a.calls[0].arguments, R"({"city": "Lima"})");
  expect_stream_equals_whole(tool_format::arguments, R"({"city": "Lima"})", "get_weather");
}

std::string read_template(const std::string& name) {
  std::ifstream in(testing::test_data_dir() + "/templates/" + name);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(tool_calls, real_templates_are_recognised_and_round_trip) {
  EXPECT_EQ(tool_format_of_template(read_template("Qwen-Qwen2.5-7B-Instruct.jinja")), tool_format::hermes);
  EXPECT_EQ(tool_format_of_template(read_template("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja")),
            tool_format::hermes);
  EXPECT_EQ(tool_format_of_template(read_template("meta-llama-Llama-3.1-8B-Instruct.jinja")), tool_format::llama3_json);
  EXPECT_EQ(tool_format_of_template(read_template("mistralai-Mistral-Nemo-Instruct-2407.jinja")), tool_format::mistral);
  EXPECT_EQ(tool_format_of_template("{% for m in messages %}{{ m.content }}{% endfor %}"), tool_format::none);

  // Qwen 2.5: tools in the prompt, the assistant's call and the tool's answer rendered back.
  auto t = chat_template::parse(read_template("Qwen-Qwen2.5-7B-Instruct.jinja"));
  ASSERT_TRUE(t.ok()) << t.message();
  const auto tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
      "required": ["city"]}}}])");
  const std::string reply = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
  const outcome o = parse_whole(tool_format::hermes, reply);
  ASSERT_EQ(o.calls.size(), 1u);
  nlohmann::ordered_json ctx = {
      {"messages",
       {{{"role", "user"}, {"content", "Weather in Paris?"}},
        {{"role", "assistant"},
         {"content", ""},
         {"tool_calls",
          {{{"id", "call_1"},
            {"type", "function"},
            {"function", {{"name", o.calls[0].name}, {"arguments", nlohmann::ordered_json::parse(o.calls[0].arguments)}}}}}}},
        {{"role", "tool"}, {"tool_call_id", "call_1"}, {"content", "18 C, sunny"}}}},
      {"tools", tools},
      {"add_generation_prompt", true}};
  auto r = t->render(ctx);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_NE(r->find("\"name\": \"get_weather\""), std::string::npos) << *r;
  EXPECT_NE(r->find(reply.substr(0, reply.size() - 13)), std::string::npos) << *r;  // the call, as the model wrote it
  EXPECT_NE(r->find("<tool_response>\n18 C, sunny\n</tool_response>"), std::string::npos) << *r;
  EXPECT_TRUE(r->ends_with("<|im_start|>assistant\n")) << *r;
}

}  // namespace
}  // namespace troupe::structured
