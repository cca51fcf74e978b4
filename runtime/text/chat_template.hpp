// chat_template: renders a model's own Jinja chat template (from tokenizer_config.json or
// GGUF metadata) over a conversation, as Python's jinja2 would.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe {

class chat_template {
 public:
  // Parses the template. A syntax error, or a construct the interpreter does not support,
  // is an error naming the construct and its line.
  [[nodiscard]] static result<chat_template> parse(std::string_view source);

  chat_template(chat_template&&) noexcept;
  chat_template& operator=(chat_template&&) noexcept;
  ~chat_template();

  // context holds the template's variables: messages, tools, add_generation_prompt,
  // bos_token, eos_token and any extra keyword (enable_thinking, ...). raise_exception in
  // the template and runtime type errors come back as errors.
  [[nodiscard]] result<std::string> render(const nlohmann::json& context) const;
  // The same, keeping the context's key order: Python dicts keep the order of the request's
  // JSON, and templates print it (tojson of tool schemas, loops over arguments), while
  // nlohmann::json sorts keys. Byte-exact prompts need this overload.
  [[nodiscard]] result<std::string> render(const nlohmann::ordered_json& context) const;

  struct impl;

 private:
  explicit chat_template(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
