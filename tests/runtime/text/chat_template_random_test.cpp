// Proves, differentially, that the chat template interpreter behaves as jinja2 on thousands
// of random templates mixing the constructs chat templates use: scripts/random_chat_templates.py
// generates them from fixed seeds and renders them with jinja2 in transformers' environment;
// troupe must produce the same bytes, raise where jinja2 raises, and reject what it rejects.
#include <cstdlib>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/text/chat_template.hpp"
#include "tests/test_data.hpp"

namespace {

using json = nlohmann::ordered_json;

json generate(int seed, int count) {
  const std::string out = troupe::testing::build_dir() + "/chat_template_random_" + std::to_string(seed) + ".json";
  const std::string cmd = troupe::testing::python() + " '" + troupe::testing::source_dir() +
                          "/scripts/random_chat_templates.py' --seed " + std::to_string(seed) + " --count " +
                          std::to_string(count) + " --out '" + out + "'";
  if (std::system(cmd.c_str()) != 0) return json();
  std::ifstream f(out);
  return json::parse(f, nullptr, false);
}

// Python prints object addresses in some reprs (generators, bound methods); troupe prints a
// fixed address there, so such outputs can only be compared outside the address.
std::string without_addresses(const std::string& s) {
  static const std::regex address("0[xX][0-9a-fA-F]{6,}");
  return std::regex_replace(s, address, "0x?");
}

class random_templates : public ::testing::TestWithParam<int> {};

TEST_P(random_templates, render_as_jinja2_does) {
  const json all = generate(GetParam(), 1000);
  ASSERT_TRUE(all.is_object()) << "scripts/random_chat_templates.py failed (python: " << troupe::testing::python()
                               << ")";
  int rendered = 0, raised = 0, rejected = 0, failures = 0;
  for (const auto& c : all["cases"]) {
    const std::string src = c["source"].get<std::string>();
    auto t = troupe::chat_template::parse(src);
    std::string problem;
    if (c.contains("parse_error")) {
      ++rejected;
      if (t.ok()) problem = "jinja2 rejects it (" + c["parse_error"].get<std::string>() + ") but troupe parses it";
    } else if (!t.ok()) {
      // troupe rejects at parse what jinja2 compiles, e.g. an unsupported construct; it must
      // then be one that jinja2 could not render either.
      if (c["ok"].get<bool>()) problem = "troupe rejects it (" + t.message() + ") but jinja2 renders it";
    } else {
      auto out = t->render(all["context"]);
      if (c["ok"].get<bool>()) {
        ++rendered;
        const std::string want = c["output"].get<std::string>();
        if (!out.ok()) {
          problem = "troupe fails (" + out.message() + ") where jinja2 renders " + json(want).dump();
        } else if (without_addresses(*out) != without_addresses(want)) {
          problem = "jinja2: " + json(want).dump() + "\n  troupe: " + json(*out).dump();
        }
      } else {
        ++raised;
        if (out.ok()) problem = "troupe renders " + json(*out).dump() + " where jinja2 raises " + c["error"].get<std::string>();
      }
    }
    if (!problem.empty() && ++failures <= 10) ADD_FAILURE() << "template " << json(src).dump() << "\n  " << problem;
  }
  EXPECT_EQ(failures, 0);
  // The corpus must exercise all three outcomes, or it proves little.
  EXPECT_GT(rendered, 120);
  EXPECT_GT(raised, 120);
  EXPECT_GT(rejected, 40);
}

INSTANTIATE_TEST_SUITE_P(seeds, random_templates, ::testing::Values(1, 2, 3));

}  // namespace
