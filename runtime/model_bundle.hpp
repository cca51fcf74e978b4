// model_bundle: what serving one model needs, loaded together: the checkpoint (weights and
// configuration), its tokenizer and its chat template, shared by every engine that serves it.
#pragma once

#include <memory>
#include <string>

#include "runtime/checkpoint.hpp"
#include "runtime/result.hpp"

namespace troupe {

class tokenizer;
class chat_template;

struct model_bundle {
  std::string name;  // the served model name: the directory or file stem
  std::shared_ptr<const checkpoint> weights;
  std::shared_ptr<const tokenizer> tok;         // null when the model ships none
  std::shared_ptr<const chat_template> chat;    // null when it ships none or it does not parse
  std::string chat_error;                        // why chat is null, if it ships one
  // The format its chat template writes tool calls in (structured/tool_calls.hpp's
  // tool_format), read off the template; "none" when it shows no tools.
  std::string tool_format = "none";
};

// path: a Hugging Face directory, a .gguf file, or a directory holding one .gguf. `options`
// go to checkpoint::open; its observer also hears phase "loading the tokenizer" (0 then 1).
[[nodiscard]] result<model_bundle> load_model(const std::string& path, const open_options& options = {});

// The model `troupe serve` and `troupe generate` use without --model: $TROUPE_MODEL, else the
// project's own default model in models/.
std::string default_model_path();

}  // namespace troupe
