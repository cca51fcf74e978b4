// settings_json: typed settings -> JSON with the config files' field names.
#include "config/settings_json.hpp"

namespace troupe::config {

using nlohmann::json;

json to_json(const engine_settings& e) {
  json kv;
  if (e.kv_memory.kind == kv_cache_memory::unit::fraction) kv = e.kv_memory.fraction;
  else kv = e.kv_memory.bytes;
  json j{{"max_seq_len", e.max_seq_len},
          {"max_batch_size", e.max_batch_size},
          {"max_num_tokens", e.max_num_tokens},
          {"enable_chunked_prefill", e.enable_chunked_prefill},
          {"prefill_mode", to_string(e.prefill)},
          {"prefix_cache_mode", to_string(e.prefix_cache)},
          {"kv_block_size", e.kv_block_size},
          {"kv_cache_memory", kv}};
  // Only meaningful with a prefix cache (and rejected without one).
  if (e.prefix_cache == prefix_cache_mode::radix)
    j["prefix_cache_max_num_recycling_seqs"] = e.prefix_cache_max_num_recycling_seqs;
  return j;
}

json to_json(const runtime_settings& r) {
  json j = to_json(r.engine);
  j["tensor_parallel_size"] = r.tensor_parallel_size;
  if (!r.served_model_name.empty()) j["served_model_name"] = r.served_model_name;
  if (!r.patch_kwargs_json.empty()) j["patch_kwargs"] = json::parse(r.patch_kwargs_json);
  return j;
}

json to_json(const routing_settings& r) {
  return json{{"router_queue_policy", to_string(r.router_queue_policy)},
              {"router_overlap_score_weight", r.router_overlap_score_weight},
              {"router_temperature", r.router_temperature}};
}

json to_json(const speculative_settings& s) {
  json j{{"decoding_type", to_string(s.type)}};
  if (!s.speculative_model_dir.empty()) j["speculative_model_dir"] = s.speculative_model_dir;
  if (s.num_nextn_predict_layers) j["num_nextn_predict_layers"] = *s.num_nextn_predict_layers;
  if (s.max_draft_len) j["max_draft_len"] = *s.max_draft_len;
  if (s.spec_draft_length) j["spec_draft_length"] = *s.spec_draft_length;
  if (s.spec_tree_width) j["spec_tree_width"] = *s.spec_tree_width;
  if (s.eagle3_one_model) j["eagle3_one_model"] = *s.eagle3_one_model;
  if (s.max_matching_ngram_size) j["max_matching_ngram_size"] = *s.max_matching_ngram_size;
  if (s.min_matching_ngram_size) j["min_matching_ngram_size"] = *s.min_matching_ngram_size;
  return j;
}

json to_json(const autoscaling_settings& a) {
  return json{{"target_in_flight_tokens", a.target_in_flight_tokens},
              {"min_replica", a.min_replica},
              {"max_replica", a.max_replica},
              {"scale_up_delay", a.scale_up_delay},
              {"scale_down_delay", a.scale_down_delay},
              {"autoscaling_window", a.autoscaling_window}};
}

json to_json(const llm_config& l, const runtime_settings& r) {
  json j{{"runtime", to_json(r)},
         {"b10_routing_config", to_json(l.routing)},
         {"is_disaggregated", l.disaggregation.is_disaggregated},
         {"autoscaling_settings", to_json(l.autoscaling)}};
  if (l.disaggregation.is_disaggregated)
    j["b10_disagg_config"] = {
        {"prefill_workers_per_replica", l.disaggregation.prefill_workers_per_replica},
        {"decode_workers_per_replica", l.disaggregation.decode_workers_per_replica}};
  if (l.speculative) j["speculative_config"] = to_json(*l.speculative);
  return j;
}

}  // namespace troupe::config
