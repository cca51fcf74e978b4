// Proves config.yaml validation: each documented rule and message, unknown fields with a
// did-you-mean, type errors with their line, and every error of a file reported together.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/readers.hpp"

namespace troupe::config {
namespace {

// The canonical configuration of the overview page (a DeepSeek V3 deployment on B200),
// with places to add lines under build:, runtime: and the top level.
std::string canonical(const std::string& build_extra = "", const std::string& runtime_extra = "",
                      const std::string& top_extra = "") {
  return "model_name: deepseek-v3-1-nvfp4\n"
         "resources:\n"
         "  accelerator: B200:4\n"
         "  use_gpu: true\n"
         "trt_llm:\n"
         "  inference_stack: v2\n"
         "  build:\n"
         "    checkpoint_repository:\n"
         "      source: HF\n"
         "      repo: \"nvidia/DeepSeek-V3.1-NVFP4\"\n"
         "      runtime_secret_name: hf_access_token\n"
         "    quantization_type: no_quant  # ModelOpt-quantized checkpoint\n" +
         build_extra +
         "  runtime:\n"
         "    max_seq_len: 131072\n"
         "    max_batch_size: 256\n"
         "    tensor_parallel_size: 4\n"
         "    enable_chunked_prefill: true\n"
         "    served_model_name: \"deepseek-v3\"\n" +
         runtime_extra + top_extra;
}

constexpr int kBuildExtraLine = 13;    // first line of build_extra
constexpr int kRuntimeExtraLine = 19;  // first line of runtime_extra (with no build_extra)

std::string all_messages(const error_list& errors) { return format_errors(errors); }

TEST(config_validate, canonical_overview_config_is_valid_with_its_values) {
  auto c = parse_config_yaml(canonical());
  ASSERT_TRUE(c.ok()) << all_messages(c.errors);
  const config_file& f = c.value;
  EXPECT_EQ(f.model_name, "deepseek-v3-1-nvfp4");
  EXPECT_EQ(f.res.accelerator, "B200:4");
  EXPECT_EQ(f.res.accelerator_count, 4);
  EXPECT_TRUE(f.res.use_gpu);
  EXPECT_EQ(f.build.checkpoint.source, checkpoint_source::hf);
  EXPECT_EQ(f.build.checkpoint.repo, "nvidia/DeepSeek-V3.1-NVFP4");
  EXPECT_EQ(f.build.checkpoint.runtime_secret_name, "hf_access_token");
  EXPECT_EQ(f.build.checkpoint.revision, "main");
  EXPECT_EQ(f.build.quantization, quantization_type::no_quant);
  EXPECT_EQ(f.runtime.engine.max_seq_len, 131072);
  EXPECT_EQ(f.runtime.engine.max_batch_size, 256);
  EXPECT_EQ(f.runtime.tensor_parallel_size, 4);
  EXPECT_TRUE(f.runtime.engine.enable_chunked_prefill);
  EXPECT_EQ(f.runtime.served_model_name, "deepseek-v3");
}

TEST(config_validate, defaults_of_the_v2_reference_and_the_engine) {
  auto c = parse_config_yaml(
      "trt_llm:\n  inference_stack: v2\n  build:\n    checkpoint_repository:\n"
      "      repo: Qwen/Qwen3-4B\nmodel_name: qwen\n");
  ASSERT_TRUE(c.ok()) << all_messages(c.errors);
  const engine_settings& e = c.value.runtime.engine;
  EXPECT_EQ(e.max_seq_len, 32768);
  EXPECT_EQ(e.max_batch_size, 256);
  EXPECT_EQ(e.max_num_tokens, 8192);
  EXPECT_TRUE(e.enable_chunked_prefill);
  EXPECT_EQ(e.prefill, prefill_mode::hybrid);
  EXPECT_EQ(e.prefix_cache, prefix_cache_mode::radix);
  EXPECT_EQ(e.prefix_cache_max_num_recycling_seqs, 256);  // = max_batch_size
  EXPECT_EQ(e.kv_block_size, 16);
  EXPECT_EQ(e.kv_memory.kind, kv_cache_memory::unit::fraction);
  EXPECT_DOUBLE_EQ(e.kv_memory.fraction, 0.9);
  EXPECT_EQ(c.value.runtime.tensor_parallel_size, 1);
  EXPECT_EQ(c.value.runtime.served_model_name, "qwen");  // model_name by default
  EXPECT_EQ(c.value.build.checkpoint.source, checkpoint_source::hf);  // "HF (default)"
  EXPECT_EQ(c.value.build.quantization, quantization_type::no_quant);
  EXPECT_FALSE(c.value.build.skip_build_result);
  const routing_settings& r = c.value.llm.routing;
  EXPECT_EQ(r.router_queue_policy, queue_policy::fcfs);
  EXPECT_DOUBLE_EQ(r.router_overlap_score_weight, 3.5);
  EXPECT_DOUBLE_EQ(r.router_temperature, 0.05);
  EXPECT_FALSE(c.value.llm.disaggregation.is_disaggregated);
  EXPECT_FALSE(c.value.llm.speculative.has_value());
}

TEST(config_validate, engine_settings_are_read) {
  auto c = parse_config_yaml(canonical(
      "", "    max_num_tokens: 4096\n    prefill_mode: chunked\n    prefix_cache_mode: radix\n"
          "    prefix_cache_max_num_recycling_seqs: 8\n    kv_block_size: 32\n"
          "    kv_cache_memory: 16GiB\n"));
  ASSERT_TRUE(c.ok()) << all_messages(c.errors);
  const engine_settings& e = c.value.runtime.engine;
  EXPECT_EQ(e.max_num_tokens, 4096);
  EXPECT_EQ(e.prefill, prefill_mode::chunked);
  EXPECT_EQ(e.prefix_cache_max_num_recycling_seqs, 8);
  EXPECT_EQ(e.kv_block_size, 32);
  EXPECT_EQ(e.kv_memory.kind, kv_cache_memory::unit::bytes);
  EXPECT_EQ(e.kv_memory.bytes, 16ull << 30);
}

struct kv_case {
  const char* value;
  bool ok;
  kv_cache_memory::unit kind;
  double fraction;
  uint64_t bytes;
};

const kv_case cases_of_kv_cache_memory[] = {
    {"0.9", true, kv_cache_memory::unit::fraction, 0.9, 0},
    {"1.0", true, kv_cache_memory::unit::fraction, 1.0, 0},
    {"\"85%\"", true, kv_cache_memory::unit::fraction, 0.85, 0},
    {"17179869184", true, kv_cache_memory::unit::bytes, 0, 17179869184ull},
    {"512MiB", true, kv_cache_memory::unit::bytes, 0, 512ull << 20},
    {"16GB", true, kv_cache_memory::unit::bytes, 0, 16000000000ull},
    {"1.5 GiB", true, kv_cache_memory::unit::bytes, 0, 3ull << 29},
    {"0", false, {}, 0, 0},
    {"1", false, {}, 0, 0},  // ambiguous: 1 byte is never meant
    {"1.5", false, {}, 0, 0},
    {"-0.5", false, {}, 0, 0},
    {"lots", false, {}, 0, 0},
    {"16 parsecs", false, {}, 0, 0},
    {"9000000TB", false, {}, 0, 0},  // beyond an exbibyte
    {"true", false, {}, 0, 0},
};

TEST(config_validate, kv_cache_memory_is_bytes_or_a_fraction_of_free_memory) {
  for (const auto& k : cases_of_kv_cache_memory) {
    auto c = parse_config_yaml(canonical("", std::string("    kv_cache_memory: ") + k.value + "\n"));
    ASSERT_EQ(c.ok(), k.ok) << k.value << "\n" << all_messages(c.errors);
    if (!k.ok) {
      ASSERT_EQ(c.errors.size(), 1u) << k.value;
      EXPECT_EQ(c.errors[0].path, "trt_llm.runtime.kv_cache_memory");
      EXPECT_EQ(c.errors[0].line, kRuntimeExtraLine) << k.value;
      continue;
    }
    const kv_cache_memory& m = c.value.runtime.engine.kv_memory;
    EXPECT_EQ(m.kind, k.kind) << k.value;
    if (k.kind == kv_cache_memory::unit::fraction) {
      EXPECT_DOUBLE_EQ(m.fraction, k.fraction);
    } else {
      EXPECT_EQ(m.bytes, k.bytes) << k.value;
    }
  }
}

// --kv-cache-memory takes the field's text: the same values are accepted, with the same meaning.
TEST(config_validate, kv_cache_memory_text_reads_as_the_field_does) {
  for (const auto& k : cases_of_kv_cache_memory) {
    std::string text = k.value;
    if (text.front() == '"') text = text.substr(1, text.size() - 2);
    const auto m = parse_kv_cache_memory(text);
    ASSERT_EQ(m.has_value(), k.ok) << text;
    if (!m) continue;
    EXPECT_EQ(m->kind, k.kind) << text;
    if (k.kind == kv_cache_memory::unit::fraction) {
      EXPECT_DOUBLE_EQ(m->fraction, k.fraction) << text;
    } else {
      EXPECT_EQ(m->bytes, k.bytes) << text;
    }
  }
  EXPECT_FALSE(parse_kv_cache_memory(""));
  EXPECT_FALSE(parse_kv_cache_memory("99999999999999999999"));  // beyond 64 bits
}

// One row per documented (or troupe) rule: the lines added, the field path of the error,
// its exact message, and its fix when the migration page gives one.
struct rule_case {
  const char* name;
  std::string build_extra;
  std::string runtime_extra;
  std::string top_extra;
  std::string path;
  std::string message;
  std::string hint;  // "" = not checked
  int line;          // 0 = not checked
  std::string replace_from = "";  // then replaced in the file
  std::string replace_to = "";
};

TEST(config_validate, each_rule_gives_its_message_for_its_field) {
  const std::string v2 = "when using v2 inference stack";
  const std::vector<rule_case> cases = {
      // The migration page's table: v1-only fields under build:, word for word.
      {"base_model", "    base_model: decoder\n", "", "", "trt_llm.build.base_model",
       "Field trt_llm.build.base_model is not allowed to be set " + v2,
       "Remove. v2 auto-detects from the checkpoint.", kBuildExtraLine},
      {"max_seq_len", "    max_seq_len: 32768\n", "", "", "trt_llm.build.max_seq_len",
       "Field trt_llm.build.max_seq_len is not allowed to be set " + v2, "Move it to runtime:.",
       kBuildExtraLine},
      {"max_batch_size", "    max_batch_size: 256\n", "", "", "trt_llm.build.max_batch_size",
       "Field trt_llm.build.max_batch_size is not allowed to be set " + v2, "", kBuildExtraLine},
      {"max_num_tokens", "    max_num_tokens: 8192\n", "", "", "trt_llm.build.max_num_tokens",
       "Field trt_llm.build.max_num_tokens is not allowed to be set " + v2, "", kBuildExtraLine},
      {"tensor_parallel_count", "    tensor_parallel_count: 1\n", "", "",
       "trt_llm.build.tensor_parallel_count",
       "Field trt_llm.build.tensor_parallel_count is not allowed to be set " + v2,
       "Move it to runtime: and rename it to tensor_parallel_size.", kBuildExtraLine},
      {"plugin_configuration", "    plugin_configuration:\n      paged_kv_cache: true\n", "", "",
       "trt_llm.build.plugin_configuration",
       "Field trt_llm.build.plugin_configuration is not allowed to be set " + v2, "",
       kBuildExtraLine},
      {"speculator", "    speculator:\n      speculative_decoding_mode: LOOKAHEAD_DECODING\n", "",
       "", "trt_llm.build.speculator",
       "Field trt_llm.build.speculator is not allowed to be set " + v2,
       "Remove. Use the Management API speculative_config block instead.", kBuildExtraLine},
      // Unknown fields, with a did-you-mean.
      {"typo in runtime", "", "    max_batch_sise: 8\n", "", "trt_llm.runtime.max_batch_sise",
       "trt_llm.runtime.max_batch_sise: unknown field; did you mean max_batch_size?", "",
       kRuntimeExtraLine},
      {"typo in build", "    quantisation_type: fp8\n", "", "", "trt_llm.build.quantisation_type",
       "trt_llm.build.quantisation_type: unknown field; did you mean quantization_type?", "",
       kBuildExtraLine},
      {"typo at top", "", "", "model_nme: x\n", "model_nme",
       "model_nme: unknown field; did you mean model_name?", "", 0},
      {"typo of an engine setting", "", "    prefix_cache_mod: radix\n", "",
       "trt_llm.runtime.prefix_cache_mod",
       "trt_llm.runtime.prefix_cache_mod: unknown field; did you mean prefix_cache_mode?", "",
       kRuntimeExtraLine},
      {"v1 name in v2 runtime", "", "    enable_chunked_context: true\n", "",
       "trt_llm.runtime.enable_chunked_context",
       "trt_llm.runtime.enable_chunked_context: unknown field; v2 calls it "
       "enable_chunked_prefill", "", kRuntimeExtraLine},
      {"runtime field under build", "    tensor_parallel_size: 2\n", "", "",
       "trt_llm.build.tensor_parallel_size",
       "trt_llm.build.tensor_parallel_size: unknown field; it belongs under trt_llm.runtime", "",
       kBuildExtraLine},
      // Types, with the field and the expected type.
      {"integer expected", "", "    max_num_tokens: lots\n", "", "trt_llm.runtime.max_num_tokens",
       "trt_llm.runtime.max_num_tokens: expected an integer >= 1, got \"lots\" (a string)", "",
       kRuntimeExtraLine},
      {"quoted integer is a string", "", "    kv_block_size: \"32\"\n", "",
       "trt_llm.runtime.kv_block_size",
       "trt_llm.runtime.kv_block_size: expected an integer from 1 to 1024, got \"32\" (a "
       "string)", "", kRuntimeExtraLine},
      {"boolean expected", "    skip_build_result: yes\n", "", "",
       "trt_llm.build.skip_build_result",
       "trt_llm.build.skip_build_result: expected a boolean (true or false), got \"yes\" (a "
       "string)", "", kBuildExtraLine},
      {"map expected", "    quantization_config: 3\n", "", "", "trt_llm.build.quantization_config",
       "trt_llm.build.quantization_config: expected a map, got 3 (an integer)", "",
       kBuildExtraLine},
      {"range", "", "    max_num_tokens: 0\n", "", "trt_llm.runtime.max_num_tokens",
       "trt_llm.runtime.max_num_tokens: must be an integer >= 1, got 0", "", kRuntimeExtraLine},
      // Choices, with a did-you-mean.
      {"prefill_mode", "", "    prefill_mode: hybird\n", "", "trt_llm.runtime.prefill_mode",
       "trt_llm.runtime.prefill_mode: must be one of chunked or hybrid, got \"hybird\"; did you "
       "mean hybrid?", "", kRuntimeExtraLine},
      {"prefix_cache_mode", "", "    prefix_cache_mode: lru\n", "",
       "trt_llm.runtime.prefix_cache_mode",
       "trt_llm.runtime.prefix_cache_mode: must be one of radix or disable, got \"lru\"", "",
       kRuntimeExtraLine},
      {"quantization_type", "", "", "", "trt_llm.build.quantization_type",
       "trt_llm.build.quantization_type: must be one of no_quant, fp8, fp8_kv, fp4, fp4_kv, or "
       "fp4_mlp_only, got \"int4\"", "", 12, "quantization_type: no_quant",
       "quantization_type: int4"},
      // Engine consistency.
      {"kv_block_size power of two", "", "    kv_block_size: 24\n", "",
       "trt_llm.runtime.kv_block_size",
       "trt_llm.runtime.kv_block_size: must be a power of two (1, 2, 4, ... 1024), got 24", "",
       kRuntimeExtraLine},
      {"token budget below batch", "", "    max_num_tokens: 128\n", "",
       "trt_llm.runtime.max_num_tokens",
       "trt_llm.runtime.max_num_tokens: max_num_tokens must be at least max_batch_size (128 < "
       "256): every running sequence needs one token of a step's budget", "", kRuntimeExtraLine},
      {"hybrid needs chunked prefill", "", "    prefill_mode: hybrid\n", "",
       "trt_llm.runtime.prefill_mode",
       "trt_llm.runtime.prefill_mode: hybrid (split-fuse) prefill needs enable_chunked_prefill: "
       "true", "", kRuntimeExtraLine, "enable_chunked_prefill: true",
       "enable_chunked_prefill: false"},
      {"recycling without a prefix cache", "",
       "    prefix_cache_mode: disable\n    prefix_cache_max_num_recycling_seqs: 4\n", "",
       "trt_llm.runtime.prefix_cache_max_num_recycling_seqs",
       "trt_llm.runtime.prefix_cache_max_num_recycling_seqs: applies only when "
       "prefix_cache_mode is radix (it is disable)", "", kRuntimeExtraLine + 1},
      {"tensor parallel over the GPUs there are", "", "", "",
       "trt_llm.runtime.tensor_parallel_size",
       "trt_llm.runtime.tensor_parallel_size: 8 is more than the 4 GPU(s) of "
       "resources.accelerator (B200:4)", "", 16, "tensor_parallel_size: 4",
       "tensor_parallel_size: 8"},
      {"accelerator format", "", "", "", "resources.accelerator",
       "resources.accelerator: expected NAME or NAME:COUNT with COUNT >= 1 (\"H100\", "
       "\"B200:4\"), got \"B200:x\"", "", 3, "B200:4", "B200:x"},
      // Autoscaling: the v1 request-concurrency fields point to the token target.
      {"concurrency_target", "", "", "autoscaling_settings:\n  concurrency_target: 10\n",
       "autoscaling_settings.concurrency_target",
       "autoscaling_settings.concurrency_target: the v2 deployment API rejects "
       "concurrency_target: v2 scales on tokens in flight, set target_in_flight_tokens instead",
       "target_in_flight_tokens = concurrency_target x (average input + output tokens per "
       "request): 10 at 4K input and 1K output tokens is about 50,000; `troupe config migrate "
       "FILE` converts it", 20},
      {"target_utilization_percentage", "", "",
       "autoscaling_settings:\n  target_utilization_percentage: 70\n",
       "autoscaling_settings.target_utilization_percentage",
       "autoscaling_settings.target_utilization_percentage: the v2 deployment API rejects "
       "target_utilization_percentage: v2 scales on tokens in flight, set "
       "target_in_flight_tokens instead", "", 20},
      {"checkpoint source", "", "", "", "trt_llm.build.checkpoint_repository.source",
       "trt_llm.build.checkpoint_repository.source: must be one of HF, LOCAL, GCS, S3, AZURE, "
       "REMOTE_URL, or BASETEN_TRAINING (case-insensitive), got \"FTP\"", "", 9, "source: HF",
       "source: FTP"},
  };
  for (const auto& rc : cases) {
    std::string yaml = canonical(rc.build_extra, rc.runtime_extra, rc.top_extra);
    if (!rc.replace_from.empty()) {
      auto at = yaml.find(rc.replace_from);
      ASSERT_NE(at, std::string::npos) << rc.name;
      yaml.replace(at, rc.replace_from.size(), rc.replace_to);
    }
    auto c = parse_config_yaml(yaml);
    ASSERT_EQ(c.errors.size(), 1u) << rc.name << "\n" << all_messages(c.errors) << yaml;
    const config_error& e = c.errors[0];
    EXPECT_EQ(e.path, rc.path) << rc.name;
    EXPECT_EQ(e.message, rc.message) << rc.name;
    if (!rc.hint.empty()) {
      EXPECT_EQ(e.hint, rc.hint) << rc.name;
    }
    if (rc.line) {
      EXPECT_EQ(e.line, rc.line) << rc.name;
    }
    EXPECT_GT(e.line, 0) << rc.name << ": every error in a YAML file has a line";
  }
}

TEST(config_validate, the_v1_example_gets_every_error_at_once) {
  // The migration page's v1 file, with inference_stack: v2 added but nothing else changed.
  const std::string yaml =
      "trt_llm:\n"
      "  inference_stack: v2\n"
      "  build:\n"
      "    base_model: decoder\n"
      "    checkpoint_repository:\n"
      "      source: HF\n"
      "      repo: \"Qwen/Qwen3-4B\"\n"
      "    max_seq_len: 32768\n"
      "    max_batch_size: 256\n"
      "    max_num_tokens: 8192\n"
      "    quantization_type: fp8_kv\n"
      "    tensor_parallel_count: 1\n"
      "    plugin_configuration:\n"
      "      paged_kv_cache: true\n"
      "      use_paged_context_fmha: true\n"
      "      use_fp8_context_fmha: true\n"
      "    speculator:\n"
      "      lookahead_windows_size: 4\n"
      "  runtime:\n"
      "    kv_cache_free_gpu_mem_fraction: 0.9\n"
      "    enable_chunked_context: true\n";
  auto c = parse_config_yaml(yaml);
  std::vector<std::string> messages;
  for (const auto& e : c.errors) messages.push_back(e.message);
  const std::vector<std::string> expected = {
      "Field trt_llm.build.base_model is not allowed to be set when using v2 inference stack",
      "Field trt_llm.build.max_seq_len is not allowed to be set when using v2 inference stack",
      "Field trt_llm.build.max_batch_size is not allowed to be set when using v2 inference stack",
      "Field trt_llm.build.max_num_tokens is not allowed to be set when using v2 inference stack",
      "Field trt_llm.build.tensor_parallel_count is not allowed to be set when using v2 "
      "inference stack",
      "Field trt_llm.build.plugin_configuration is not allowed to be set when using v2 "
      "inference stack",
      "Field trt_llm.build.speculator is not allowed to be set when using v2 inference stack",
      "trt_llm.runtime.kv_cache_free_gpu_mem_fraction: unknown field; v2 calls it "
      "kv_cache_memory (a fraction such as 0.9, or a size such as 16GiB)",
      "trt_llm.runtime.enable_chunked_context: unknown field; v2 calls it "
      "enable_chunked_prefill",
  };
  EXPECT_EQ(messages, expected);
  std::vector<int> lines;
  for (const auto& e : c.errors) lines.push_back(e.line);
  EXPECT_EQ(lines, (std::vector<int>{4, 8, 9, 10, 12, 13, 17, 20, 21}));
}

TEST(config_validate, inference_stack_must_be_v2) {
  auto missing = parse_config_yaml(
      "trt_llm:\n  build:\n    checkpoint_repository:\n      repo: a/b\n");
  ASSERT_EQ(missing.errors.size(), 1u) << all_messages(missing.errors);
  EXPECT_EQ(missing.errors[0].path, "trt_llm.inference_stack");
  EXPECT_EQ(missing.errors[0].message,
            "Field trt_llm.inference_stack is not set: troupe runs the v2 inference stack "
            "(BIS-LLM) only");
  EXPECT_NE(missing.errors[0].hint.find("troupe config migrate"), std::string::npos);

  auto v1 = parse_config_yaml(
      "trt_llm:\n  inference_stack: v1\n  build:\n    checkpoint_repository:\n      repo: a/b\n");
  ASSERT_EQ(v1.errors.size(), 1u);
  EXPECT_EQ(v1.errors[0].line, 2);
  EXPECT_EQ(v1.errors[0].message,
            "Field trt_llm.inference_stack is v1 (Engine-Builder-LLM): troupe runs the v2 "
            "inference stack (BIS-LLM) only");

  auto other = parse_config_yaml(
      "trt_llm:\n  inference_stack: v3\n  build:\n    checkpoint_repository:\n      repo: a/b\n");
  ASSERT_EQ(other.errors.size(), 1u);
  EXPECT_EQ(other.errors[0].message,
            "trt_llm.inference_stack: must be one of v1 or v2, got \"v3\"; did you mean v1?");
}

TEST(config_validate, required_blocks) {
  struct required_case {
    std::string yaml;
    std::string message;
  };
  const std::vector<required_case> cases = {
      {"model_name: x\n", "trt_llm: required (the block that configures the build and runtime)"},
      {"trt_llm:\n  inference_stack: v2\n",
       "trt_llm.build: required (it names the checkpoint_repository)"},
      {"trt_llm:\n  inference_stack: v2\n  build:\n    quantization_type: fp8\n",
       "trt_llm.build.checkpoint_repository: required (where the model checkpoint is: source "
       "and repo)"},
      {"trt_llm:\n  inference_stack: v2\n  build:\n    checkpoint_repository:\n      source: HF\n",
       "trt_llm.build.checkpoint_repository.repo: required"},
      {"", "the file is empty; expected a map with a trt_llm block"},
      {"- a\n- b\n", ": expected a map, got a list"},
  };
  for (const auto& rc : cases) {
    auto c = parse_config_yaml(rc.yaml);
    ASSERT_EQ(c.errors.size(), 1u) << rc.yaml << all_messages(c.errors);
    EXPECT_EQ(c.errors[0].message, rc.message) << rc.yaml;
  }
}

TEST(config_validate, many_errors_are_reported_together_in_document_order) {
  const std::string yaml = canonical("    base_model: decoder\n    num_builder_gpus: 0\n",
                                     "    max_batch_sise: 8\n    prefill_mode: fast\n",
                                     "llm_config:\n  b10_routing_config:\n"
                                     "    router_queue_policy: lifo\n");
  auto c = parse_config_yaml(yaml);
  ASSERT_EQ(c.errors.size(), 5u) << all_messages(c.errors);
  std::vector<std::string> paths;
  for (const auto& e : c.errors) paths.push_back(e.path);
  EXPECT_EQ(paths, (std::vector<std::string>{
                       "trt_llm.build.base_model", "trt_llm.build.num_builder_gpus",
                       "trt_llm.runtime.max_batch_sise", "trt_llm.runtime.prefill_mode",
                       "llm_config.b10_routing_config.router_queue_policy"}));
}

TEST(config_validate, yaml_syntax_errors_have_a_line) {
  auto c = parse_config_yaml("trt_llm:\n  build: [\n");
  ASSERT_EQ(c.errors.size(), 1u);
  EXPECT_NE(c.errors[0].message.find("YAML syntax error"), std::string::npos);
  EXPECT_GT(c.errors[0].line, 0);
  auto dup = parse_config_yaml("model_name: a\nmodel_name: b\n");
  ASSERT_EQ(dup.errors.size(), 1u);
  EXPECT_EQ(dup.errors[0].message, "duplicate key \"model_name\"");
  EXPECT_EQ(dup.errors[0].line, 2);
}

TEST(config_validate, llm_config_block_and_top_level_autoscaling) {
  auto c = parse_config_yaml(canonical(
      "", "",
      "llm_config:\n  b10_routing_config:\n    router_queue_policy: wspt\n"
      "    router_temperature: 0.1\n  speculative_config:\n    decoding_type: mtp\n"
      "    num_nextn_predict_layers: 1\nautoscaling_settings:\n  target_in_flight_tokens: 80000\n"
      "  min_replica: 1\n  max_replica: 4\n"));
  ASSERT_TRUE(c.ok()) << all_messages(c.errors);
  EXPECT_EQ(c.value.llm.routing.router_queue_policy, queue_policy::wspt);
  EXPECT_DOUBLE_EQ(c.value.llm.routing.router_temperature, 0.1);
  ASSERT_TRUE(c.value.llm.speculative.has_value());
  EXPECT_EQ(c.value.llm.speculative->type, decoding_type::mtp);
  EXPECT_EQ(c.value.llm.autoscaling.target_in_flight_tokens, 80000);
  EXPECT_EQ(c.value.llm.autoscaling.max_replica, 4);

  auto both = parse_config_yaml(canonical(
      "", "", "llm_config:\n  autoscaling_settings:\n    max_replica: 2\n"
              "autoscaling_settings:\n  max_replica: 3\n"));
  ASSERT_EQ(both.errors.size(), 1u);
  EXPECT_EQ(both.errors[0].message,
            "autoscaling_settings: set both at the top level and in llm_config; keep one");

  auto runtime_in_llm = parse_config_yaml(canonical("", "", "llm_config:\n  runtime: {}\n"));
  ASSERT_EQ(runtime_in_llm.errors.size(), 1u);
  EXPECT_EQ(runtime_in_llm.errors[0].message,
            "llm_config.runtime: unknown field; in config.yaml the engine settings go under "
            "trt_llm.runtime");
}

}  // namespace
}  // namespace troupe::config
