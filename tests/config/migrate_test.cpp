// Proves `troupe config migrate`: the migration page's example as a golden file, each of the
// seven steps, comments kept, the concurrency -> token conversion, and the fallbacks.
#include "config/migrate.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "config/config.hpp"
#include "config/node.hpp"
#include "tests/test_data.hpp"

namespace troupe::config {
namespace {

std::string read_data(const std::string& name) {
  std::ifstream in(testing::source_dir() + "/tests/config/data/" + name, std::ios::binary);
  EXPECT_TRUE(in) << name;
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string notes_of(const migration& m) {
  std::string out;
  for (const auto& n : m.notes) out += n + "\n";
  return out;
}

bool has_note(const migration& m, const std::string& part) {
  for (const auto& n : m.notes)
    if (n.find(part) != std::string::npos) return true;
  return false;
}

TEST(config_migrate, migration_page_example_is_golden) {
  auto m = migrate_to_v2(read_data("migrate_page_v1.yaml"));
  ASSERT_TRUE(m.ok()) << format_errors(m.errors);
  EXPECT_EQ(m.value.text, read_data("migrate_page_v2.yaml")) << notes_of(m.value);
  EXPECT_TRUE(m.value.comments_kept);
  // The result is a valid v2 file.
  auto v = parse_config_yaml(m.value.text);
  EXPECT_TRUE(v.ok()) << format_errors(v.errors);
  EXPECT_EQ(v.value.runtime.engine.max_seq_len, 32768);
  EXPECT_EQ(v.value.runtime.engine.max_num_tokens, 8192);
  EXPECT_TRUE(v.value.runtime.engine.enable_chunked_prefill);
  EXPECT_EQ(v.value.build.quantization, quantization_type::fp8_kv);
}

TEST(config_migrate, comments_layout_and_autoscaling_are_golden) {
  auto m = migrate_to_v2(read_data("migrate_comments_v1.yaml"));
  ASSERT_TRUE(m.ok()) << format_errors(m.errors);
  EXPECT_EQ(m.value.text, read_data("migrate_comments_v2.yaml")) << notes_of(m.value);
  EXPECT_TRUE(m.value.comments_kept);
  EXPECT_TRUE(has_note(m.value, "ASSUMING requests average 4000 input and 1000 output tokens"));
  auto v = parse_config_yaml(m.value.text);
  EXPECT_TRUE(v.ok()) << format_errors(v.errors);
  EXPECT_EQ(v.value.llm.autoscaling.target_in_flight_tokens, 50000);
  EXPECT_EQ(v.value.runtime.tensor_parallel_size, 2);
}

TEST(config_migrate, migrating_a_v2_file_changes_nothing) {
  const std::string v2 = read_data("migrate_page_v2.yaml");
  auto m = migrate_to_v2(v2);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m.value.text, v2);
  EXPECT_TRUE(has_note(m.value, "step 1: inference_stack is already v2"));
}

// Each documented step on its own: input lines of trt_llm, and the expected result.
struct step_case {
  const char* name;
  std::string in;
  std::string out;
  std::string note;
};

TEST(config_migrate, each_documented_step) {
  const std::string head = "trt_llm:\n  build:\n    checkpoint_repository:\n      repo: a/b\n";
  const std::string v2head =
      "trt_llm:\n  inference_stack: v2\n  build:\n    checkpoint_repository:\n      repo: a/b\n";
  const std::vector<step_case> cases = {
      {"1: inference_stack first", head, v2head,
       "step 1: added inference_stack: v2 at the top of trt_llm"},
      {"1: v1 becomes v2 and moves first", head + "  inference_stack: v1\n", v2head,
       "step 1: set inference_stack: v2 (was \"v1\" (a string)) at the top of trt_llm"},
      {"2: base_model removed", head + "    base_model: decoder\n", v2head,
       "step 2: removed trt_llm.build.base_model"},
      {"3: moved to runtime", head + "    max_num_tokens: 4096\n    max_seq_len: 8192\n",
       v2head + "  runtime:\n    max_num_tokens: 4096\n    max_seq_len: 8192\n",
       "step 3: moved max_num_tokens, max_seq_len from build: to runtime:"},
      {"3: moved before existing runtime fields",
       head + "    max_batch_size: 8\n  runtime:\n    served_model_name: m\n",
       v2head + "  runtime:\n    max_batch_size: 8\n    served_model_name: m\n", "step 3: moved"},
      {"3: into an empty runtime", head + "    max_batch_size: 8\n  runtime:\n",
       v2head + "  runtime:\n    max_batch_size: 8\n", "step 3: moved max_batch_size"},
      {"3: runtime's own value wins", head + "    max_seq_len: 8\n  runtime:\n    max_seq_len: 16\n",
       v2head + "  runtime:\n    max_seq_len: 16\n",
       "step 3: removed trt_llm.build.max_seq_len: runtime already sets max_seq_len, which is "
       "kept"},
      {"4: renamed and moved", head + "    tensor_parallel_count: 4\n",
       v2head + "  runtime:\n    tensor_parallel_size: 4\n",
       "step 4: renamed tensor_parallel_count to tensor_parallel_size and moved it to runtime:"},
      {"5: plugin_configuration removed",
       head + "    plugin_configuration:\n      paged_kv_cache: true\n", v2head,
       "step 5: removed trt_llm.build.plugin_configuration"},
      {"6: speculator removed",
       head + "    speculator:\n      speculative_decoding_mode: LOOKAHEAD_DECODING\n", v2head,
       "step 6: removed trt_llm.build.speculator: v1 lookahead decoding is not supported in v2"},
      {"7: chunked context", head + "  runtime:\n    enable_chunked_context: true\n",
       v2head + "  runtime:\n    enable_chunked_prefill: true\n",
       "step 7: replaced enable_chunked_context: true with enable_chunked_prefill: true"},
      {"kv fraction other than the default",
       head + "  runtime:\n    kv_cache_free_gpu_mem_fraction: 0.8\n",
       v2head + "  runtime:\n    kv_cache_memory: 0.8\n",
       "kv_cache_free_gpu_mem_fraction: 0.8 became kv_cache_memory: 0.8"},
      {"v1-only runtime fields",
       head + "  runtime:\n    batch_scheduler_policy: guaranteed_no_evict\n"
              "    total_token_limit: 500000\n    served_model_name: m\n",
       v2head + "  runtime:\n    served_model_name: m\n", "removed batch_scheduler_policy"},
  };
  for (const auto& c : cases) {
    auto m = migrate_to_v2(c.in);
    ASSERT_TRUE(m.ok()) << c.name << format_errors(m.errors);
    EXPECT_EQ(m.value.text, c.out) << c.name << "\n" << notes_of(m.value);
    EXPECT_TRUE(m.value.comments_kept) << c.name << notes_of(m.value);
    EXPECT_TRUE(has_note(m.value, c.note)) << c.name << "\n" << notes_of(m.value);
    auto v = parse_config_yaml(m.value.text);
    EXPECT_TRUE(v.ok()) << c.name << "\n" << format_errors(v.errors);
  }
}

TEST(config_migrate, concurrency_target_becomes_tokens_with_stated_averages) {
  const std::string in =
      "trt_llm:\n  build:\n    checkpoint_repository:\n      repo: a/b\n"
      "autoscaling_settings:\n  concurrency_target: 10\n  target_utilization_percentage: 70\n";
  auto page = migrate_to_v2(in);
  ASSERT_TRUE(page.ok());
  EXPECT_NE(page.value.text.find("  target_in_flight_tokens: 50000  # from v1 concurrency_target "
                                 "10 x (4000 input + 1000 output tokens)\n"),
            std::string::npos)
      << page.value.text;
  EXPECT_EQ(page.value.text.find("target_utilization_percentage"), std::string::npos);
  EXPECT_TRUE(has_note(page.value, "removed autoscaling_settings.target_utilization_percentage"));

  migrate_options o;
  o.avg_input_tokens = 4096;
  o.avg_output_tokens = 1024;
  auto kib = migrate_to_v2(in, o);
  ASSERT_TRUE(kib.ok());
  EXPECT_NE(kib.value.text.find("target_in_flight_tokens: 51200"), std::string::npos);
  EXPECT_TRUE(has_note(kib.value, "ASSUMING requests average 4096 input and 1024 output tokens"));

  migrate_options bad;
  bad.avg_input_tokens = 0;
  bad.avg_output_tokens = 0;
  EXPECT_FALSE(migrate_to_v2(in, bad).ok());
}

TEST(config_migrate, flow_style_falls_back_to_the_parsed_tree_without_comments) {
  const std::string in =
      "# a comment that cannot be kept\n"
      "trt_llm: {build: {base_model: decoder, checkpoint_repository: {repo: a/b}, "
      "max_seq_len: 100, tensor_parallel_count: 2}}\n";
  auto m = migrate_to_v2(in);
  ASSERT_TRUE(m.ok()) << format_errors(m.errors);
  EXPECT_FALSE(m.value.comments_kept);
  EXPECT_TRUE(has_note(m.value, "comments and layout: NOT kept"));
  auto v = parse_config_yaml(m.value.text);
  ASSERT_TRUE(v.ok()) << m.value.text << format_errors(v.errors);
  EXPECT_EQ(v.value.runtime.engine.max_seq_len, 100);
  EXPECT_EQ(v.value.runtime.tensor_parallel_size, 2);
  EXPECT_EQ(v.value.build.checkpoint.repo, "a/b");
}

TEST(config_migrate, strings_that_look_like_numbers_stay_strings_in_the_fallback) {
  auto m = migrate_to_v2(
      "trt_llm: {build: {checkpoint_repository: {repo: a/b, revision: \"1234\"}}}\n");
  ASSERT_TRUE(m.ok());
  EXPECT_FALSE(m.value.comments_kept);
  EXPECT_NE(m.value.text.find("\"1234\""), std::string::npos) << m.value.text;
}

TEST(config_migrate, crlf_line_endings_are_kept) {
  auto m = migrate_to_v2("trt_llm:\r\n  build:\r\n    base_model: decoder\r\n"
                         "    checkpoint_repository:\r\n      repo: a/b\r\n");
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m.value.comments_kept);
  EXPECT_EQ(m.value.text, "trt_llm:\r\n  inference_stack: v2\r\n  build:\r\n"
                          "    checkpoint_repository:\r\n      repo: a/b\r\n");
}

TEST(config_migrate, control_characters_survive_the_fallback) {
  // Fuzzer find: yaml-cpp's emitter wrote a key with '\r' unquoted, which did not read back.
  const std::string in = "trt_llm:\n  key\rwith\rcr: \"a\\rb\"\n  build: {base_model: x}\n";
  auto m = migrate_to_v2(in);
  ASSERT_TRUE(m.ok()) << format_errors(m.errors);
  auto back = parse_yaml(m.value.text);
  ASSERT_TRUE(back.ok()) << m.value.text;
  const node* trt = back.value.find("trt_llm");
  ASSERT_NE(trt, nullptr);
  ASSERT_NE(trt->find("key\rwith\rcr"), nullptr) << m.value.text;
  EXPECT_EQ(trt->find("key\rwith\rcr")->text, "a\rb");
  EXPECT_EQ(trt->find("build")->find("base_model"), nullptr);
}

TEST(config_migrate, long_keys_survive_the_fallback) {
  // Fuzzer find: a key over 1024 characters was emitted as an implicit key, unreadable.
  const std::string key(2000, 'k');
  auto m = migrate_to_v2("trt_llm:\n  build: {base_model: x}\n  ? " + key + "\n  : 1\n");
  ASSERT_TRUE(m.ok()) << format_errors(m.errors);
  EXPECT_FALSE(m.value.comments_kept);
  auto back = parse_yaml(m.value.text);
  ASSERT_TRUE(back.ok()) << format_errors(back.errors);
  EXPECT_EQ(back.value.find("trt_llm")->find(key)->integer, 1);
}

TEST(config_migrate, errors) {
  auto none = migrate_to_v2("model_name: x\n");
  ASSERT_EQ(none.errors.size(), 1u);
  EXPECT_EQ(none.errors[0].message, "trt_llm: the file has no trt_llm block to migrate");
  auto syntax = migrate_to_v2("trt_llm: [\n");
  ASSERT_FALSE(syntax.ok());
  EXPECT_GT(syntax.errors[0].line, 0);
  auto build = migrate_to_v2("trt_llm:\n  build: 3\n");
  ASSERT_EQ(build.errors.size(), 1u);
  EXPECT_EQ(build.errors[0].message, "trt_llm.build: expected a map, got 3 (an integer)");
}

}  // namespace
}  // namespace troupe::config
