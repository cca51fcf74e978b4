// Proves the llm_config rules of the advanced-features page: routing defaults and choices,
// both disaggregation rejections, speculative_config per decoding type, and token-based
// autoscaling, for JSON (the Management API) and YAML (config.yaml's llm_config block).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.hpp"

namespace troupe::config {
namespace {

checked<llm_config_request> parse(const std::string& json) { return parse_llm_config_json(json); }

std::string messages(const error_list& errors) { return format_errors(errors); }

TEST(llm_config, documented_examples_parse) {
  // The advanced-features page's examples, as written there.
  auto routing = parse(R"({"b10_routing_config": {"router_queue_policy": "fcfs",
      "router_overlap_score_weight": 3.5, "router_temperature": 0.05}})");
  ASSERT_TRUE(routing.ok()) << messages(routing.errors);
  EXPECT_TRUE(routing.value.llm.has_routing);

  auto disagg = parse(R"({"is_disaggregated": true, "b10_disagg_config":
      {"prefill_workers_per_replica": 1, "decode_workers_per_replica": 2}})");
  ASSERT_TRUE(disagg.ok()) << messages(disagg.errors);
  EXPECT_TRUE(disagg.value.llm.disaggregation.is_disaggregated);
  EXPECT_EQ(disagg.value.llm.disaggregation.prefill_workers_per_replica, 1);
  EXPECT_EQ(disagg.value.llm.disaggregation.decode_workers_per_replica, 2);

  auto eagle = parse(R"({"speculative_config": {"decoding_type": "Eagle",
      "speculative_model_dir": "/models/eagle", "max_draft_len": 3, "eagle3_one_model": true}})");
  ASSERT_TRUE(eagle.ok()) << messages(eagle.errors);
  ASSERT_TRUE(eagle.value.llm.speculative);
  EXPECT_EQ(eagle.value.llm.speculative->type, decoding_type::eagle);
  EXPECT_EQ(eagle.value.llm.speculative->speculative_model_dir, "/models/eagle");
  EXPECT_EQ(eagle.value.llm.speculative->max_draft_len, 3);
  EXPECT_EQ(eagle.value.llm.speculative->eagle3_one_model, true);

  auto mtp = parse(R"({"speculative_config": {"decoding_type": "MTP",
      "num_nextn_predict_layers": 1}})");
  ASSERT_TRUE(mtp.ok()) << messages(mtp.errors);
  EXPECT_EQ(mtp.value.llm.speculative->type, decoding_type::mtp);
  EXPECT_EQ(mtp.value.llm.speculative->num_nextn_predict_layers, 1);

  auto ngram = parse(R"({"speculative_config": {"decoding_type": "NGram"}})");
  ASSERT_TRUE(ngram.ok()) << messages(ngram.errors);
  EXPECT_EQ(ngram.value.llm.speculative->type, decoding_type::ngram);
  EXPECT_FALSE(unbuilt_decoding_type(*ngram.value.llm.speculative)) << "NGram is built";
  EXPECT_FALSE(unbuilt_decoding_type(*mtp.value.llm.speculative)) << "MTP is built";

  // troupe's extensions: DraftTarget with its model, and spec_draft_length (0: adaptive).
  auto draft = parse(R"({"speculative_config": {"decoding_type": "drafttarget",
      "speculative_model_dir": "models/troupe-py-draft", "max_draft_len": 4, "spec_draft_length": 0}})");
  ASSERT_TRUE(draft.ok()) << messages(draft.errors);
  EXPECT_EQ(draft.value.llm.speculative->type, decoding_type::draft_target);
  EXPECT_EQ(draft.value.llm.speculative->speculative_model_dir, "models/troupe-py-draft");
  EXPECT_EQ(draft.value.llm.speculative->spec_draft_length, 0);
  EXPECT_FALSE(unbuilt_decoding_type(*draft.value.llm.speculative)) << "DraftTarget is built";

  auto tree = parse(R"({"speculative_config": {"decoding_type": "NGram", "max_draft_len": 4, "spec_tree_width": 3}})");
  ASSERT_TRUE(tree.ok()) << messages(tree.errors);
  EXPECT_EQ(tree.value.llm.speculative->spec_tree_width, 3);
  // Trees with the adaptive draft length (it chooses each step's depth and tree or chain).
  auto adaptive_tree = parse(R"({"speculative_config": {"decoding_type": "NGram", "max_draft_len": 4,
      "spec_tree_width": 3, "spec_draft_length": 0}})");
  ASSERT_TRUE(adaptive_tree.ok()) << messages(adaptive_tree.errors);
  EXPECT_EQ(adaptive_tree.value.llm.speculative->spec_tree_width, 3);
  EXPECT_EQ(adaptive_tree.value.llm.speculative->spec_draft_length, 0);

  auto sizes = parse(R"({"speculative_config": {"decoding_type": "NGram", "max_draft_len": 6,
      "max_matching_ngram_size": 3, "min_matching_ngram_size": 2}})");
  ASSERT_TRUE(sizes.ok()) << messages(sizes.errors);
  EXPECT_EQ(sizes.value.llm.speculative->max_matching_ngram_size, 3);
  EXPECT_EQ(sizes.value.llm.speculative->min_matching_ngram_size, 2);

  // Eagle is built both ways: the head inside the target's step (eagle3_one_model true; an
  // executor other than the CPU's refuses it when its engine is made, naming the field) and as
  // its own model (false, or unset).
  {
    EXPECT_FALSE(unbuilt_decoding_type(*eagle.value.llm.speculative)) << "Eagle (one-model) is built";
    speculative_settings two_model = *eagle.value.llm.speculative;
    two_model.eagle3_one_model = false;
    EXPECT_FALSE(unbuilt_decoding_type(two_model)) << "Eagle (two-model) is built";
    two_model.eagle3_one_model.reset();
    EXPECT_FALSE(unbuilt_decoding_type(two_model)) << "Eagle (two-model) is built";
  }
}

TEST(llm_config, defaults) {
  auto empty = parse("{}");
  ASSERT_TRUE(empty.ok());
  const llm_config& l = empty.value.llm;
  EXPECT_EQ(l.routing.router_queue_policy, queue_policy::fcfs);
  EXPECT_DOUBLE_EQ(l.routing.router_overlap_score_weight, 3.5);
  EXPECT_DOUBLE_EQ(l.routing.router_temperature, 0.05);
  EXPECT_FALSE(l.disaggregation.is_disaggregated);
  EXPECT_FALSE(l.speculative);
  EXPECT_EQ(l.autoscaling.target_in_flight_tokens, 50000);
  EXPECT_EQ(l.autoscaling.min_replica, 1);
  EXPECT_EQ(l.autoscaling.max_replica, 1);
  EXPECT_FALSE(l.has_routing || l.has_disaggregation || l.has_autoscaling);
  // A partial block keeps the other defaults.
  auto partial = parse(R"({"b10_routing_config": {"router_queue_policy": "wspt"}})");
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(partial.value.llm.routing.router_queue_policy, queue_policy::wspt);
  EXPECT_DOUBLE_EQ(partial.value.llm.routing.router_overlap_score_weight, 3.5);
}

TEST(llm_config, decoding_type_is_case_insensitive) {
  const std::vector<std::pair<std::string, decoding_type>> cases = {
      {"eagle", decoding_type::eagle}, {"EAGLE", decoding_type::eagle},
      {"mtp", decoding_type::mtp},     {"Mtp", decoding_type::mtp},
      {"ngram", decoding_type::ngram}, {"NGRAM", decoding_type::ngram},
      {"nGram", decoding_type::ngram}};
  for (const auto& [name, type] : cases) {
    std::string extra = type == decoding_type::eagle ? R"(, "speculative_model_dir": "/e")"
                        : type == decoding_type::mtp ? R"(, "num_nextn_predict_layers": 2)"
                                                     : "";
    auto r = parse(R"({"speculative_config": {"decoding_type": ")" + name + "\"" + extra + "}}");
    ASSERT_TRUE(r.ok()) << name << messages(r.errors);
    EXPECT_EQ(r.value.llm.speculative->type, type) << name;
  }
}

struct rule_case {
  const char* name;
  std::string json;
  std::vector<std::pair<std::string, std::string>> errors;  // path, message
};

TEST(llm_config, each_rule_gives_its_message_for_its_field) {
  const std::string d = "llm_config.b10_disagg_config";
  const std::string s = "llm_config.speculative_config";
  const std::string r = "llm_config.b10_routing_config";
  const std::string a = "llm_config.autoscaling_settings";
  const std::vector<rule_case> cases = {
      // Disaggregation: the backend's two documented rejections.
      {"disagg config without is_disaggregated",
       R"({"b10_disagg_config": {"prefill_workers_per_replica": 1, "decode_workers_per_replica": 1}})",
       {{d, d + ": b10_disagg_config is set without is_disaggregated: true (is_disaggregated is "
                "absent); is_disaggregated must be true for b10_disagg_config to take effect"}}},
      {"disagg config with is_disaggregated false",
       R"({"is_disaggregated": false, "b10_disagg_config": {"prefill_workers_per_replica": 1,
           "decode_workers_per_replica": 1}})",
       {{d, d + ": b10_disagg_config is set without is_disaggregated: true (is_disaggregated is "
                "false); is_disaggregated must be true for b10_disagg_config to take effect"}}},
      {"is_disaggregated without counts", R"({"is_disaggregated": true})",
       {{d + ".prefill_workers_per_replica",
         d + ".prefill_workers_per_replica: required when is_disaggregated is true; must be an "
             "integer >= 1"},
        {d + ".decode_workers_per_replica",
         d + ".decode_workers_per_replica: required when is_disaggregated is true; must be an "
             "integer >= 1"}}},
      {"one count missing",
       R"({"is_disaggregated": true, "b10_disagg_config": {"prefill_workers_per_replica": 2}})",
       {{d + ".decode_workers_per_replica",
         d + ".decode_workers_per_replica: required when is_disaggregated is true; must be an "
             "integer >= 1"}}},
      {"count below one",
       R"({"is_disaggregated": true, "b10_disagg_config": {"prefill_workers_per_replica": 0,
           "decode_workers_per_replica": 1}})",
       {{d + ".prefill_workers_per_replica",
         d + ".prefill_workers_per_replica: must be an integer >= 1, got 0"}}},
      {"count not an integer",
       R"({"is_disaggregated": true, "b10_disagg_config": {"prefill_workers_per_replica": 1.5,
           "decode_workers_per_replica": "2"}})",
       {{d + ".prefill_workers_per_replica",
         d + ".prefill_workers_per_replica: expected an integer >= 1, got 1.5 (a number)"},
        {d + ".decode_workers_per_replica",
         d + ".decode_workers_per_replica: expected an integer >= 1, got \"2\" (a string)"}}},
      {"is_disaggregated not a boolean", R"({"is_disaggregated": "yes"})",
       {{"llm_config.is_disaggregated",
         "llm_config.is_disaggregated: expected a boolean (true or false), got \"yes\" (a "
         "string)"}}},
      // Speculative decoding.
      {"decoding_type missing", R"({"speculative_config": {"max_draft_len": 3}})",
       {{s + ".decoding_type",
         s + ".decoding_type: required; one of Eagle, MTP, or NGram (case-insensitive; troupe also runs "
             "DraftTarget)"}}},
      {"decoding_type unknown", R"({"speculative_config": {"decoding_type": "Medusa"}})",
       {{s + ".decoding_type",
         s + ".decoding_type: must be one of Eagle, MTP, NGram, or DraftTarget (case-insensitive), got "
             "\"Medusa\""}}},
      {"Eagle needs speculative_model_dir", R"({"speculative_config": {"decoding_type": "Eagle"}})",
       {{s + ".speculative_model_dir",
         s + ".speculative_model_dir: required when decoding_type is Eagle"}}},
      {"MTP needs num_nextn_predict_layers", R"({"speculative_config": {"decoding_type": "mtp"}})",
       {{s + ".num_nextn_predict_layers",
         s + ".num_nextn_predict_layers: required when decoding_type is MTP"}}},
      {"eagle3_one_model is Eagle only",
       R"({"speculative_config": {"decoding_type": "NGram", "eagle3_one_model": true}})",
       {{s + ".eagle3_one_model",
         s + ".eagle3_one_model: allowed only when decoding_type is Eagle (decoding_type is "
             "NGram)"}}},
      {"eagle3_one_model with MTP",
       R"({"speculative_config": {"decoding_type": "MTP", "num_nextn_predict_layers": 1,
           "eagle3_one_model": false}})",
       {{s + ".eagle3_one_model",
         s + ".eagle3_one_model: allowed only when decoding_type is Eagle (decoding_type is "
             "MTP)"}}},
      {"model dir with NGram",
       R"({"speculative_config": {"decoding_type": "NGram", "speculative_model_dir": "/x"}})",
       {{s + ".speculative_model_dir",
         s + ".speculative_model_dir: used only when decoding_type is Eagle or DraftTarget (decoding_type is "
             "NGram)"}}},
      {"DraftTarget needs speculative_model_dir", R"({"speculative_config": {"decoding_type": "DraftTarget"}})",
       {{s + ".speculative_model_dir",
         s + ".speculative_model_dir: required when decoding_type is DraftTarget"}}},
      {"spec_draft_length within max_draft_len",
       R"({"speculative_config": {"decoding_type": "NGram", "max_draft_len": 3, "spec_draft_length": 5}})",
       {{s + ".spec_draft_length", s + ".spec_draft_length: must not exceed max_draft_len (5 > 3)"}}},
      {"spec_tree_width within its range",
       R"({"speculative_config": {"decoding_type": "NGram", "spec_tree_width": 9}})",
       {{s + ".spec_tree_width", s + ".spec_tree_width: must be an integer from 1 to 8, got 9"}}},
      {"max_draft_len positive",
       R"({"speculative_config": {"decoding_type": "NGram", "max_draft_len": 0}})",
       {{s + ".max_draft_len", s + ".max_draft_len: must be an integer from 1 to 32, got 0"}}},
      {"n-gram sizes are NGram only",
       R"({"speculative_config": {"decoding_type": "MTP", "num_nextn_predict_layers": 1,
           "max_matching_ngram_size": 3}})",
       {{s + ".max_matching_ngram_size",
         s + ".max_matching_ngram_size: used only when decoding_type is NGram (decoding_type is MTP)"}}},
      {"n-gram minimum above maximum",
       R"({"speculative_config": {"decoding_type": "NGram", "max_matching_ngram_size": 2,
           "min_matching_ngram_size": 3}})",
       {{s + ".min_matching_ngram_size", s + ".min_matching_ngram_size: must not exceed max_matching_ngram_size (3 > 2)"}}},
      {"speculative_config typo",
       R"({"speculative_config": {"decoding_type": "NGram", "max_draft_length": 4}})",
       {{s + ".max_draft_length",
         s + ".max_draft_length: unknown field; did you mean max_draft_len?"}}},
      // Routing.
      {"queue policy", R"({"b10_routing_config": {"router_queue_policy": "wsp"}})",
       {{r + ".router_queue_policy",
         r + ".router_queue_policy: must be one of fcfs or wspt, got \"wsp\"; did you mean "
             "wspt?"}}},
      {"overlap weight type", R"({"b10_routing_config": {"router_overlap_score_weight": "high"}})",
       {{r + ".router_overlap_score_weight",
         r + ".router_overlap_score_weight: expected a number, got \"high\" (a string)"}}},
      {"temperature range", R"({"b10_routing_config": {"router_temperature": -1}})",
       {{r + ".router_temperature", r + ".router_temperature: must be a number >= 0, got -1"}}},
      // Autoscaling: the v1 fields point to the token target.
      {"concurrency_target", R"({"autoscaling_settings": {"concurrency_target": 10}})",
       {{a + ".concurrency_target",
         a + ".concurrency_target: the v2 deployment API rejects concurrency_target: v2 scales "
             "on tokens in flight, set target_in_flight_tokens instead"}}},
      {"target_utilization_percentage",
       R"({"autoscaling_settings": {"target_utilization_percentage": 70}})",
       {{a + ".target_utilization_percentage",
         a + ".target_utilization_percentage: the v2 deployment API rejects "
             "target_utilization_percentage: v2 scales on tokens in flight, set "
             "target_in_flight_tokens instead"}}},
      {"replicas", R"({"autoscaling_settings": {"min_replica": 3, "max_replica": 2}})",
       {{a + ".min_replica", a + ".min_replica: must not exceed max_replica (3 > 2)"}}},
      {"target tokens", R"({"autoscaling_settings": {"target_in_flight_tokens": 0}})",
       {{a + ".target_in_flight_tokens",
         a + ".target_in_flight_tokens: must be an integer >= 1, got 0"}}},
      {"negative delay", R"({"autoscaling_settings": {"scale_down_delay": -5}})",
       {{a + ".scale_down_delay", a + ".scale_down_delay: must be an integer >= 0, got -5"}}},
      // The llm_config level.
      {"unknown block", R"({"b10_routing_confg": {}})",
       {{"llm_config.b10_routing_confg",
         "llm_config.b10_routing_confg: unknown field; did you mean b10_routing_config?"}}},
      {"engine settings in runtime", R"({"runtime": {"prefill_mode": "split"}})",
       {{"llm_config.runtime.prefill_mode",
         "llm_config.runtime.prefill_mode: must be one of chunked or hybrid, got \"split\""}}},
      {"duplicate key", R"({"is_disaggregated": true, "is_disaggregated": false})",
       {{"", "JSON input: duplicate key \"is_disaggregated\""}}},
      {"not an object", R"([1, 2])", {{"llm_config", "llm_config: expected a JSON object, got a list"}}},
  };
  for (const auto& c : cases) {
    auto res = parse(c.json);
    std::vector<std::pair<std::string, std::string>> got;
    for (const auto& e : res.errors) got.emplace_back(e.path, e.message);
    EXPECT_EQ(got, c.errors) << c.name;
  }
}

TEST(llm_config, every_error_of_a_request_is_reported) {
  auto r = parse(R"({
    "b10_routing_config": {"router_queue_policy": "lifo", "router_temperature": "hot"},
    "b10_disagg_config": {"prefill_workers_per_replica": 0},
    "speculative_config": {"decoding_type": "Eagle", "eagle3_one_model": 1},
    "autoscaling_settings": {"concurrency_target": 10, "target_utilization_percentage": 70},
    "runtime": {"max_batch_sise": 4}
  })");
  std::vector<std::string> paths;
  for (const auto& e : r.errors) paths.push_back(e.path);
  EXPECT_EQ(paths, (std::vector<std::string>{
                       "llm_config.runtime.max_batch_sise",
                       "llm_config.b10_routing_config.router_queue_policy",
                       "llm_config.b10_routing_config.router_temperature",
                       "llm_config.b10_disagg_config",
                       "llm_config.b10_disagg_config.prefill_workers_per_replica",
                       "llm_config.speculative_config.eagle3_one_model",
                       "llm_config.speculative_config.speculative_model_dir",
                       "llm_config.autoscaling_settings.concurrency_target",
                       "llm_config.autoscaling_settings.target_utilization_percentage"}))
      << messages(r.errors);
}

TEST(llm_config, yaml_block_follows_the_same_rules_with_lines) {
  auto c = parse_config_yaml(
      "trt_llm:\n  inference_stack: v2\n  build:\n    checkpoint_repository:\n      repo: a/b\n"
      "llm_config:\n  is_disaggregated: true\n  b10_disagg_config:\n"
      "    prefill_workers_per_replica: 1\n    decode_workers_per_replica: 0\n"
      "  speculative_config:\n    decoding_type: eagle\n");
  ASSERT_EQ(c.errors.size(), 2u) << messages(c.errors);
  EXPECT_EQ(c.errors[0].path, "llm_config.b10_disagg_config.decode_workers_per_replica");
  EXPECT_EQ(c.errors[0].line, 10);
  EXPECT_EQ(c.errors[1].message,
            "llm_config.speculative_config.speculative_model_dir: required when decoding_type "
            "is Eagle");
  EXPECT_EQ(c.errors[1].line, 12);  // where the speculative_config block starts (no field)
}

TEST(llm_config, runtime_block_carries_engine_settings) {
  auto r = parse(R"({"runtime": {"max_batch_size": 8, "max_num_tokens": 512,
                     "kv_cache_memory": "2GiB", "prefix_cache_mode": "disable"}})");
  ASSERT_TRUE(r.ok()) << messages(r.errors);
  EXPECT_EQ(r.value.runtime.engine.max_batch_size, 8);
  EXPECT_EQ(r.value.runtime.engine.max_num_tokens, 512);
  EXPECT_EQ(r.value.runtime.engine.kv_memory.bytes, 2ull << 30);
  EXPECT_EQ(r.value.runtime.engine.prefix_cache, prefix_cache_mode::disable);
  // JSON numbers that are whole are integers; a JSON string is never a number.
  auto whole = parse(R"({"runtime": {"max_batch_size": 8.0, "max_num_tokens": 512}})");
  EXPECT_TRUE(whole.ok()) << messages(whole.errors);
}

}  // namespace
}  // namespace troupe::config
