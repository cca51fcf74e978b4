#include "runtime/model_bundle.hpp"

#include <cstdlib>
#include <filesystem>

#include "runtime/structured/tool_calls.hpp"
#include "runtime/text/chat_template.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/gguf.hpp"
#include "runtime/text/tokenizer.hpp"

#ifndef TROUPE_DEFAULT_MODEL
#define TROUPE_DEFAULT_MODEL "models/troupe-py-7m"
#endif

namespace troupe {

result<model_bundle> load_model(const std::string& path, const open_options& options) {
  model_bundle b;
  TROUPE_TRY(checkpoint ck, checkpoint::open(path, options));
  if (options.observer) options.observer({"loading the tokenizer", 0, 1, ""});
  b.weights = std::make_shared<const checkpoint>(std::move(ck));
  std::filesystem::path p(path);
  if (p.filename().empty()) p = p.parent_path();
  b.name = p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
  const checkpoint& c = *b.weights;
  if (c.gguf()) {
    TROUPE_TRY(tokenizer t, tokenizer::from_gguf(*c.gguf()));
    b.tok = std::make_shared<const tokenizer>(std::move(t));
  } else if (!c.tokenizer_json_path().empty()) {
    TROUPE_TRY(tokenizer t, tokenizer::from_hf_files(c.tokenizer_json_path(), c.tokenizer_config_path()));
    b.tok = std::make_shared<const tokenizer>(std::move(t));
  }
  if (options.observer) options.observer({"loading the tokenizer", 1, 1, ""});
  if (!c.chat_template().empty()) {
    auto t = chat_template::parse(c.chat_template());
    if (t.ok()) b.chat = std::make_shared<const chat_template>(std::move(*t));
    else b.chat_error = t.message();
    b.tool_format = structured::tool_format_name(structured::tool_format_of_template(c.chat_template()));
  }
  return b;
}

std::string default_model_path() {
  if (const char* m = std::getenv("TROUPE_MODEL"); m && *m) return m;
  return TROUPE_DEFAULT_MODEL;
}

}  // namespace troupe
