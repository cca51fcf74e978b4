// Proves the start-up report of `troupe serve --config`: every field a config.yaml sets gets a
// line naming it (applied, not applied here, or stored until its feature lands), the llm_config
// lines come from feature_status.hpp's rows, and the facts of the machine and the command line
// (GPUs, --model, --threads) decide what applies.
#include "config/config_effect.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "config/config.hpp"
#include "config/feature_status.hpp"

namespace troupe::config {
namespace {

// Every top-level block and most fields set.
const char* kFull = R"(model_name: my-model
description: a test deployment
model_metadata:
  tags: [openai-compatible]
environment_variables:
  HF_HUB_OFFLINE: 1
  TROUPE_TEST_VAR: hello
secrets:
  hf_access_token: null
resources:
  accelerator: H100:2
  use_gpu: true
  cpu: "3"
  memory: 16Gi
  node_count: 2
trt_llm:
  inference_stack: v2
  build:
    checkpoint_repository:
      source: HF
      repo: org/model
      revision: main
      runtime_secret_name: hf_access_token
    quantization_type: fp8
    num_builder_gpus: 2
  runtime:
    max_batch_size: 8
    tensor_parallel_size: 2
    served_model_name: served
    kv_cache_memory: 0.5
    patch_kwargs:
      x: 1
llm_config:
  b10_routing_config:
    router_overlap_score_weight: 2.0
  speculative_config:
    decoding_type: NGram
    max_draft_len: 4
autoscaling_settings:
  target_in_flight_tokens: 60000
)";

std::map<std::string, field_effect> by_field(const std::vector<field_effect>& v) {
  std::map<std::string, field_effect> m;
  for (const auto& e : v) m.emplace(e.field, e);
  return m;
}

config_file parse(const std::string& yaml) {
  auto c = parse_config_yaml(yaml);
  EXPECT_TRUE(c.ok()) << format_errors(c.errors);
  return c.value;
}

TEST(config_effect, every_field_set_gets_a_line_that_names_it) {
  const config_file c = parse(kFull);
  EXPECT_EQ(c.environment_variables,
            (std::vector<std::pair<std::string, std::string>>{{"HF_HUB_OFFLINE", "1"}, {"TROUPE_TEST_VAR", "hello"}}));
  EXPECT_EQ(c.secrets, std::vector<std::string>{"hf_access_token"});
  EXPECT_EQ(c.model_metadata_json, R"({"tags":["openai-compatible"]})");
  const auto effects = config_effects(c, {});
  for (const auto& e : effects) EXPECT_EQ(e.message.rfind(e.field + (e.kind == effect_kind::not_yet_active ? " " : ": "), 0), 0u) << e.message;
  const auto m = by_field(effects);
  for (const char* f : {"model_name", "description", "model_metadata", "environment_variables", "secrets",
                        "resources.accelerator", "resources.cpu", "resources.memory", "resources.node_count",
                        "trt_llm.build.checkpoint_repository",
                        "trt_llm.build.checkpoint_repository.runtime_secret_name",
                        "trt_llm.build.quantization_type", "trt_llm.build.num_builder_gpus", "trt_llm.runtime",
                        "trt_llm.runtime.tensor_parallel_size", "trt_llm.runtime.served_model_name",
                        "trt_llm.runtime.patch_kwargs", "llm_config.b10_routing_config",
                        "llm_config.speculative_config", "autoscaling_settings"})
    EXPECT_TRUE(m.count(f)) << "no line for " << f;
  EXPECT_EQ(m.at("environment_variables").kind, effect_kind::applied);
  EXPECT_EQ(m.at("secrets").kind, effect_kind::not_applied);
  EXPECT_EQ(m.at("resources.memory").kind, effect_kind::not_applied);
  EXPECT_EQ(m.at("trt_llm.build.quantization_type").kind, effect_kind::not_applied);
  EXPECT_NE(m.at("trt_llm.build.quantization_type").message.find("fp8"), std::string::npos);
  EXPECT_EQ(m.at("trt_llm.runtime").kind, effect_kind::applied);
  EXPECT_NE(m.at("trt_llm.runtime").message.find("max_batch_size 8"), std::string::npos);
  EXPECT_EQ(m.at("trt_llm.runtime.tensor_parallel_size").kind, effect_kind::not_applied);
}

TEST(config_effect, llm_config_lines_follow_the_feature_status_rows) {
  const auto m = by_field(config_effects(parse(kFull), {}));
  const std::pair<const char*, const char*> rows[] = {{"b10_routing_config", "llm_config.b10_routing_config"},
                                                      {"speculative_config", "llm_config.speculative_config"},
                                                      {"autoscaling_settings", "autoscaling_settings"}};
  for (const auto& [row, path] : rows) {
    const feature_status* f = find_feature(row);
    ASSERT_NE(f, nullptr) << row;
    const field_effect& e = m.at(path);
    if (f->state == feature_state::stored) {
      EXPECT_EQ(e.kind, effect_kind::not_yet_active) << path;
      EXPECT_EQ(e.message, not_yet_active_message(*f, path));
    } else {
      EXPECT_EQ(e.kind, effect_kind::applied) << path;
    }
  }
  // In llm_config, autoscaling is named there.
  const std::string nested = std::string(kFull).substr(0, std::string(kFull).find("autoscaling_settings:")) +
                             "  autoscaling_settings:\n    target_in_flight_tokens: 60000\n";
  EXPECT_TRUE(by_field(config_effects(parse(nested), {})).count("llm_config.autoscaling_settings"));
}

TEST(config_effect, the_machine_and_the_command_line_decide) {
  const config_file c = parse(kFull);
  start_facts none;
  auto m = by_field(config_effects(c, none));
  EXPECT_EQ(m.at("resources.accelerator").kind, effect_kind::not_applied);
  EXPECT_NE(m.at("resources.accelerator").message.find("has none"), std::string::npos);
  EXPECT_EQ(device_for(c.res, none), "cpu");
  EXPECT_EQ(m.at("resources.cpu").kind, effect_kind::applied);
  EXPECT_EQ(cpu_threads(c.res), 3);
  EXPECT_EQ(m.at("trt_llm.build.checkpoint_repository").kind, effect_kind::applied);

  start_facts gpu;
  gpu.gpus = 1;
  EXPECT_EQ(device_for(c.res, gpu), "cuda");
  EXPECT_NE(by_field(config_effects(c, gpu)).at("resources.accelerator").message.find("one GPU"), std::string::npos);

  start_facts flags;
  flags.model_flag = "/models/x";
  flags.threads_flag = true;
  flags.served_name_flag = true;
  m = by_field(config_effects(c, flags));
  EXPECT_EQ(m.at("trt_llm.build.checkpoint_repository").kind, effect_kind::not_applied);
  EXPECT_EQ(m.at("trt_llm.build.checkpoint_repository").message,
            "trt_llm.build.checkpoint_repository: not applied: --model /models/x overrides it");
  EXPECT_EQ(m.at("resources.cpu").kind, effect_kind::not_applied);
  EXPECT_EQ(m.at("trt_llm.runtime.served_model_name").kind, effect_kind::not_applied);
}

TEST(config_effect, cpu_counts_read_like_kubernetes) {
  resources r;
  for (const auto& [text, n] : std::vector<std::pair<std::string, int>>{
           {"4", 4}, {"2.5", 2}, {"500m", 1}, {"3000m", 3}, {"", 0}, {"many", 0}, {"-1", 0}}) {
    r.cpu = text;
    EXPECT_EQ(cpu_threads(r), n) << text;
  }
}

TEST(config_effect, environment_variable_names_are_checked) {
  auto c = parse_config_yaml(std::string("environment_variables:\n  1BAD: x\n  OK:\n    nested: map\n") +
                             "trt_llm:\n  inference_stack: v2\n  build:\n    checkpoint_repository:\n"
                             "      source: HF\n      repo: org/model\n");
  ASSERT_EQ(c.errors.size(), 2u) << format_errors(c.errors);
  EXPECT_EQ(c.errors[0].path, "environment_variables.1BAD");
  EXPECT_EQ(c.errors[1].path, "environment_variables.OK");
}

}  // namespace
}  // namespace troupe::config
