#include "actors/protocol.hpp"

namespace troupe {

wire_sampling to_wire(const sampling_params& p) {
  wire_sampling w;
  w.temperature = p.temperature;
  w.top_p = p.top_p;
  w.min_p = p.min_p;
  w.repetition_penalty = p.repetition_penalty;
  w.presence_penalty = p.presence_penalty;
  w.frequency_penalty = p.frequency_penalty;
  w.top_k = p.top_k;
  w.logprobs = p.logprobs;
  w.prompt_logprobs = p.prompt_logprobs;
  w.max_tokens = p.max_tokens;
  w.min_tokens = p.min_tokens;
  for (auto& [id, b] : p.logit_bias) {
    w.bias_ids.push_back(id);
    w.bias_values.push_back(b);
  }
  w.has_seed = p.seed.has_value();
  w.seed = p.seed.value_or(0);
  w.stop_token_ids = p.stop_token_ids;
  w.stop = p.stop;
  w.ignore_eos = p.ignore_eos;
  return w;
}

sampling_params from_wire(const wire_sampling& w) {
  sampling_params p;
  p.temperature = w.temperature;
  p.top_p = w.top_p;
  p.min_p = w.min_p;
  p.repetition_penalty = w.repetition_penalty;
  p.presence_penalty = w.presence_penalty;
  p.frequency_penalty = w.frequency_penalty;
  p.top_k = w.top_k;
  p.logprobs = w.logprobs;
  p.prompt_logprobs = w.prompt_logprobs;
  p.max_tokens = w.max_tokens;
  p.min_tokens = w.min_tokens;
  for (size_t i = 0; i < w.bias_ids.size() && i < w.bias_values.size(); ++i)
    p.logit_bias.emplace_back(w.bias_ids[i], w.bias_values[i]);
  if (w.has_seed) p.seed = w.seed;
  p.stop_token_ids = w.stop_token_ids;
  p.stop = w.stop;
  p.ignore_eos = w.ignore_eos;
  return p;
}

wire_kv_event to_wire(kv_event e) {
  wire_kv_event w;
  w.event_id = e.event_id;
  w.type = e.type;
  w.hashes = std::move(e.block_hashes);
  w.has_parent = e.parent_hash.has_value();
  w.parent = e.parent_hash.value_or(0);
  w.block_size = e.block_size;
  return w;
}

kv_event from_wire(const wire_kv_event& w) {
  kv_event e;
  e.event_id = w.event_id;
  e.type = w.type;
  e.block_hashes = w.hashes;
  if (w.has_parent) e.parent_hash = w.parent;
  e.block_size = w.block_size;
  return e;
}

token_delta failure_delta(std::string id, int status, std::string message, std::string worker) {
  token_delta d;
  d.id = std::move(id);
  d.finished = true;
  d.finish_reason = "error";
  d.error_status = status;
  d.error = std::move(message);
  d.worker = std::move(worker);
  return d;
}

void observe(histogram_data& h, double v) {
  size_t i = 0;
  while (i < h.bounds.size() && v > h.bounds[i]) ++i;
  ++h.counts[i];
  h.sum += v;
  ++h.count;
}

histogram_data make_histogram(const std::vector<double>& bounds) {
  histogram_data h;
  h.bounds = bounds;
  h.counts.assign(bounds.size() + 1, 0);
  return h;
}

actor_stats make_stats(const actor_meter& m, size_t mailbox_size) {
  actor_stats st;
  st.node = m.node;
  st.actor = m.actor;
  st.role = m.role;
  st.mailbox_size = static_cast<int64_t>(mailbox_size);
  st.messages_total = m.messages;
  st.handling_seconds = m.seconds;
  return st;
}

void add_troupe_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::troupe>();
}

}  // namespace troupe
