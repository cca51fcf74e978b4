// openai_api_prompt: what is decided once the request is parsed: the chat template's context,
// and the checks that need the tokenized prompt and the model (context length, vocabulary).
#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "actors/openai_api.hpp"

// Returns the error of an expression giving std::optional<api_error>, if it has one.
#define OPENAI_TRY(expr)                                               \
  do {                                                                 \
    if (auto openai_try_e_ = (expr)) return std::move(*openai_try_e_); \
  } while (0)

namespace troupe::openai {

api_error invalid_request(std::string param, std::string message, std::string code) {
  api_error e;
  e.status = 400;
  e.message = std::move(message);
  e.type = "invalid_request_error";
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

const char* role_name(role r) {
  switch (r) {
    case role::system: return "system";
    case role::developer: return "developer";
    case role::user: return "user";
    case role::assistant: return "assistant";
    case role::tool: return "tool";
  }
  return "user";
}

namespace {

using maybe_error = std::optional<api_error>;
using ojson = nlohmann::ordered_json;

constexpr int64_t k_int32_max = std::numeric_limits<int32_t>::max();

api_error bad_value(std::string_view param, std::string message) {
  return invalid_request(std::string(param), std::move(message), "invalid_value");
}

api_error context_error(std::string_view param, std::string_view what, int64_t max_seq_len, int64_t n_prompt,
                        std::optional<int64_t> n_completion) {
  std::string message;
  if (n_completion)
    message = fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens "
                          "({} in the {}, {} in the completion). Please reduce the length of the {} or completion.",
                          max_seq_len, n_prompt + *n_completion, n_prompt, what, *n_completion, what);
  else
    message = fmt::format("This model's maximum context length is {} tokens. However, your {} resulted in {} "
                          "tokens, which leaves no room for a completion. Please reduce the length of the {}.",
                          max_seq_len, what, n_prompt, what);
  return invalid_request(std::string(param), std::move(message), "context_length_exceeded");
}

maybe_error check_vocab(const sampling_params& p, int64_t n_vocab) {
  if (n_vocab <= 0) return {};
  for (const auto& [id, bias] : p.logit_bias)
    if (id >= n_vocab)
      return bad_value("logit_bias", fmt::format("'logit_bias' names token {}, but the model's token ids run "
                                                 "from 0 to {}", id, n_vocab - 1));
  for (size_t i = 0; i < p.stop_token_ids.size(); ++i)
    if (p.stop_token_ids[i] >= n_vocab)
      return bad_value(fmt::format("stop_token_ids[{}]", i),
                       fmt::format("'stop_token_ids[{}]' is token {}, but the model's token ids run from 0 to {}",
                                   i, p.stop_token_ids[i], n_vocab - 1));
  return {};
}

// param names the prompt ("messages", "prompt", "prompt[1]"); what is it in words.
api_result<sampling_params> resolve(const generation_request& g, std::optional<int32_t> asked, int64_t n_prompt,
                                    const model_limits& lim, std::string_view param, std::string_view what) {
  sampling_params p = g.params;
  OPENAI_TRY(check_vocab(p, lim.n_vocab));
  if (n_prompt <= 0)
    return bad_value(param, fmt::format("'{}' is empty once tokenized; give the model something to read", param));
  if (lim.max_seq_len > 0) {
    if (asked) {
      if (n_prompt + *asked > lim.max_seq_len) return context_error(param, what, lim.max_seq_len, n_prompt, *asked);
    } else if (n_prompt >= lim.max_seq_len) {
      return context_error(param, what, lim.max_seq_len, n_prompt, std::nullopt);
    }
  }
  if (asked) p.max_tokens = *asked;
  else if (lim.max_seq_len > 0) p.max_tokens = static_cast<int32_t>(std::min<int64_t>(lim.max_seq_len - n_prompt, k_int32_max));
  if (p.min_tokens > p.max_tokens)
    return bad_value("min_tokens", fmt::format("'min_tokens' ({}) must not exceed the {} tokens the completion may have",
                                               p.min_tokens, p.max_tokens));
  return p;
}

std::string prompt_param(std::string_view name, bool batch, size_t i) {
  return batch ? fmt::format("{}[{}]", name, i) : std::string(name);
}

maybe_error check_prompt_tokens(const prompt_input& in, const std::string& param, int64_t n_vocab) {
  if (!in.is_tokens || n_vocab <= 0) return {};
  for (size_t j = 0; j < in.tokens.size(); ++j)
    if (in.tokens[j] >= n_vocab)
      return bad_value(fmt::format("{}[{}]", param, j),
                       fmt::format("'{}[{}]' is token {}, but the model's token ids run from 0 to {}", param, j,
                                   in.tokens[j], n_vocab - 1));
  return {};
}

}  // namespace

api_result<sampling_params> sampling_for_prompt(const chat_request& req, int64_t n_prompt_tokens,
                                                const model_limits& limits) {
  return resolve(req, req.max_tokens, n_prompt_tokens, limits, "messages", "messages");
}

api_result<sampling_params> sampling_for_prompt(const completion_request& req, size_t prompt_index,
                                                int64_t n_prompt_tokens, const model_limits& limits) {
  const std::string param = prompt_param("prompt", req.batch, prompt_index);
  if (prompt_index < req.prompts.size())
    OPENAI_TRY(check_prompt_tokens(req.prompts[prompt_index], param, limits.n_vocab));
  return resolve(req, req.max_tokens.value_or(16), n_prompt_tokens, limits, param, "prompt");
}

std::optional<api_error> check_embedding_input(const embedding_request& req, size_t input_index, int64_t n_tokens,
                                               const model_limits& limits) {
  const std::string param = prompt_param("input", req.batch, input_index);
  if (input_index < req.inputs.size())
    OPENAI_TRY(check_prompt_tokens(req.inputs[input_index], param, limits.n_vocab));
  if (n_tokens <= 0)
    return bad_value(param, fmt::format("'{}' is empty once tokenized; give the model something to read", param));
  if (limits.max_seq_len > 0 && n_tokens > limits.max_seq_len)
    return invalid_request(param,
                           fmt::format("This model's maximum context length is {} tokens. However, '{}' has {} "
                                       "tokens. Please reduce its length.", limits.max_seq_len, param, n_tokens),
                           "context_length_exceeded");
  return {};
}

nlohmann::ordered_json chat_template_context(const chat_request& req, const template_options& opts) {
  ojson ctx = ojson::object();
  for (const auto& [key, value] : req.chat_template_kwargs.items()) ctx[key] = value;
  ojson messages = ojson::array();
  for (const chat_message& m : req.messages) {
    ojson jm = ojson::object();
    jm["role"] = m.role == role::developer && opts.developer_as_system ? "system" : role_name(m.role);
    if (opts.content_as_parts) {
      ojson parts = ojson::array();
      if (!m.content_parts.empty()) {
        for (const auto& text : m.content_parts) parts.push_back({{"type", "text"}, {"text", text}});
      } else if (m.content) {
        parts.push_back({{"type", "text"}, {"text", *m.content}});
      }
      jm["content"] = std::move(parts);
    } else {
      jm["content"] = m.content.value_or("");
    }
    if (m.name) jm["name"] = *m.name;
    if (m.role == role::assistant && !m.tool_calls.empty()) {
      ojson calls = ojson::array();
      for (const tool_call& c : m.tool_calls) {
        ojson jc = ojson::object();
        if (!c.id.empty()) jc["id"] = c.id;
        jc["type"] = "function";
        ojson args = opts.arguments_as_objects && c.arguments_object ? *c.arguments_object : ojson(c.arguments);
        jc["function"] = ojson{{"name", c.name}, {"arguments", std::move(args)}};
        calls.push_back(std::move(jc));
      }
      jm["tool_calls"] = std::move(calls);
    }
    if (m.role == role::tool && m.tool_call_id) jm["tool_call_id"] = *m.tool_call_id;
    if (m.reasoning_content) jm["reasoning_content"] = *m.reasoning_content;
    messages.push_back(std::move(jm));
  }
  ctx["messages"] = std::move(messages);
  ctx["tools"] = req.tools;
  ctx["add_generation_prompt"] = req.add_generation_prompt && !req.continue_final_message;
  return ctx;
}

}  // namespace troupe::openai

#undef OPENAI_TRY
