// Proves the pieces of the chat template interpreter against jinja2's behaviour.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/chat_template.hpp"

namespace {

std::string render(const std::string& src, const nlohmann::json& ctx = nlohmann::json::object()) {
  auto t = troupe::chat_template::parse(src);
  if (!t.ok()) return "PARSE ERROR: " + t.message();
  auto r = t->render(ctx);
  if (!r.ok()) return "RENDER ERROR: " + r.message();
  return *r;
}

TEST(chat_template, renders_text) { EXPECT_EQ(render("hello"), "hello"); }

}  // namespace
