#include "runtime/text/chat_template.hpp"

#include <new>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "runtime/text/jinja_eval.hpp"
#include "runtime/text/jinja_parser.hpp"

namespace troupe {

struct chat_template::impl {
  jinja::program prog;
  std::unordered_map<std::string, int> ids;  // interned names, to bind the context's keys
};

namespace {

error template_failure(const jinja::template_error& e) {
  if (e.line > 0) return make_error("chat template line " + std::to_string(e.line) + ": " + e.message);
  return make_error("chat template: " + e.message);
}

}  // namespace

chat_template::chat_template(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
chat_template::chat_template(chat_template&&) noexcept = default;
chat_template& chat_template::operator=(chat_template&&) noexcept = default;
chat_template::~chat_template() = default;

result<chat_template> chat_template::parse(std::string_view source) {
  try {
    auto p = std::make_unique<impl>();
    p->prog = jinja::parse_program(source);
    for (size_t i = 0; i < p->prog.names.size(); ++i) p->ids.emplace(p->prog.names[i], static_cast<int>(i));
    return chat_template(std::move(p));
  } catch (const jinja::template_error& e) {
    return template_failure(e);
  } catch (const std::bad_alloc&) {
    return make_error("chat template: out of memory while parsing");
  }
}

namespace {

template <class Json>
result<std::string> render_json(const chat_template::impl& t, const Json& context) {
  if (!context.is_object()) return make_error("chat template: the context must be a JSON object");
  std::vector<std::pair<int, jinja::value>> vars;
  vars.reserve(context.size() + 3);
  for (auto it = context.begin(); it != context.end(); ++it) {
    auto id = t.ids.find(it.key());
    if (id == t.ids.end()) continue;  // the template never names it
    vars.emplace_back(id->second, jinja::value::from_json(it.value()));
  }
  // transformers' apply_chat_template always passes these three, even when the caller has
  // none: templates test `tools is not none` and `add_generation_prompt` without a default.
  auto default_var = [&](const char* name, jinja::value v) {
    auto id = t.ids.find(name);
    if (id != t.ids.end() && !context.contains(name)) vars.emplace_back(id->second, std::move(v));
  };
  default_var("tools", jinja::value::none());
  default_var("documents", jinja::value::none());
  default_var("add_generation_prompt", jinja::value(false));
  try {
    jinja::evaluator ev(t.prog, jinja::limits{});
    return ev.render(std::move(vars));
  } catch (const jinja::template_error& e) {
    return template_failure(e);
  } catch (const std::bad_alloc&) {
    return make_error("chat template: out of memory while rendering");
  }
}

}  // namespace

result<std::string> chat_template::render(const nlohmann::json& context) const { return render_json(*impl_, context); }

result<std::string> chat_template::render(const nlohmann::ordered_json& context) const {
  return render_json(*impl_, context);
}

}  // namespace troupe
