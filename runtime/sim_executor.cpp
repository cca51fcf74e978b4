#include "runtime/sim_executor.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace troupe {

double sim_costs::decode_seconds(int32_t batch) const {
  if (decode_step_s.empty() || batch <= 0) return 0;
  if (decode_step_s.size() == 1 || batch <= decode_step_s.front().first) return decode_step_s.front().second;
  size_t hi = 1;
  while (hi + 1 < decode_step_s.size() && decode_step_s[hi].first < batch) ++hi;
  const auto [b0, t0] = decode_step_s[hi - 1];
  const auto [b1, t1] = decode_step_s[hi];
  return std::max(0.0, t0 + (t1 - t0) * static_cast<double>(batch - b0) / static_cast<double>(b1 - b0));
}

result<sim_costs> parse_sim_costs(std::string_view text) {
  using nlohmann::json;
  const json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error("not a JSON object");
  sim_costs c;
  auto number = [](const json& v) { return v.is_number() ? v.get<double>() : -1.0; };
  if (j.contains("prefill") && j["prefill"].is_object()) {  // `troupe bench engine` output
    const double tps = j["prefill"].contains("tokens_per_s") ? number(j["prefill"]["tokens_per_s"]) : -1;
    if (!(tps > 0)) return make_error("prefill.tokens_per_s: expected a positive number");
    c.prefill_token_s = 1.0 / tps;
    if (!j.contains("decode") || !j["decode"].is_array() || j["decode"].empty())
      return make_error("decode: expected the array of {batch, step_ms} that `troupe bench engine` prints");
    for (size_t i = 0; i < j["decode"].size(); ++i) {
      const json& d = j["decode"][i];
      const double b = d.is_object() && d.contains("batch") ? number(d["batch"]) : -1;
      const double ms = d.is_object() && d.contains("step_ms") ? number(d["step_ms"]) : -1;
      if (!(b >= 1) || !(ms > 0)) return make_error(fmt::format("decode[{}]: expected a batch >= 1 and a positive step_ms", i));
      c.decode_step_s.emplace_back(static_cast<int32_t>(b), ms / 1000.0);
    }
    if (j.contains("decode_context_tokens")) c.measured_context = static_cast<int32_t>(std::max(0.0, number(j["decode_context_tokens"])));
  } else {
    const double p = j.contains("prefill_token_ms") ? number(j["prefill_token_ms"]) : -1;
    if (!(p >= 0)) return make_error("prefill_token_ms: expected a number >= 0 (or give the JSON of `troupe bench engine`)");
    c.prefill_token_s = p / 1000.0;
    if (!j.contains("decode_step_ms") || !j["decode_step_ms"].is_object() || j["decode_step_ms"].empty())
      return make_error("decode_step_ms: expected an object of batch size -> milliseconds, e.g. {\"1\": 20, \"8\": 25}");
    for (auto& [k, v] : j["decode_step_ms"].items()) {
      char* end = nullptr;
      const long b = std::strtol(k.c_str(), &end, 10);
      if (end == k.c_str() || *end || b < 1) return make_error("decode_step_ms." + k + ": the key must be a batch size >= 1");
      if (!(number(v) >= 0)) return make_error("decode_step_ms." + k + ": expected a number >= 0");
      c.decode_step_s.emplace_back(static_cast<int32_t>(b), number(v) / 1000.0);
    }
    if (j.contains("measured_context")) c.measured_context = static_cast<int32_t>(std::max(0.0, number(j["measured_context"])));
  }
  if (j.contains("context_token_us")) {
    const double u = number(j["context_token_us"]);
    if (!(u >= 0)) return make_error("context_token_us: expected a number >= 0");
    c.context_token_s = u / 1e6;
  }
  std::sort(c.decode_step_s.begin(), c.decode_step_s.end());
  return c;
}

size_t sim_executor::bytes_per_block(const model_config& c, int32_t block_size) {
  return 2 * 2 * static_cast<size_t>(c.n_layer * c.n_head_kv * c.head_dim) * static_cast<size_t>(block_size);
}

sim_executor::sim_executor(model_config config, sim_costs costs, int32_t block_size, int32_t n_blocks)
    : config_(std::move(config)), costs_(std::move(costs)), block_size_(block_size), n_blocks_(n_blocks),
      is_eos_(static_cast<size_t>(std::max<int64_t>(config_.n_vocab, 1)), false) {
  for (int32_t t : config_.eos_ids)
    if (t >= 0 && t < config_.n_vocab) is_eos_[static_cast<size_t>(t)] = true;
}

result<double> sim_executor::plan(const forward_batch& b, std::vector<float>& logits) const {
  TROUPE_CHECK(validate_batch(b, config_.n_vocab, block_size_, n_blocks_, config_.max_position));
  const auto V = static_cast<size_t>(config_.n_vocab);
  logits.assign(static_cast<size_t>(b.n_logit_rows()) * V, 0.0f);
  int64_t prefill = 0, decoding = 0, extra_context = 0;
  size_t row = 0, at = 0;
  for (const auto& s : b.seqs) {
    if (s.n_new == 1 && s.n_logits == 1) {
      ++decoding;
      extra_context += std::max<int64_t>(0, s.n_past - costs_.measured_context);
    } else {
      prefill += s.n_new;
    }
    at += static_cast<size_t>(s.n_new);
    for (int32_t r = 0; r < s.n_logits; ++r, ++row) {
      // The next id after the row's own input token, skipping end-of-sequence ids.
      auto next = static_cast<size_t>(b.tokens[at - static_cast<size_t>(s.n_logits - r)] + 1) % V;
      while (is_eos_[next]) next = (next + 1) % V;
      logits[row * V + next] = 30.0f;
    }
  }
  return static_cast<double>(prefill) * costs_.prefill_token_s + costs_.decode_seconds(static_cast<int32_t>(decoding)) +
         static_cast<double>(extra_context) * costs_.context_token_s;
}

status sim_executor::forward(const forward_batch& b, std::vector<float>& logits) {
  TROUPE_TRY(const double seconds, plan(b, logits));
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return {};
}

status sim_executor::read_blocks(std::span<const int32_t>, std::vector<uint8_t>&) {
  return make_error("a simulated worker holds no KV data to read");
}
status sim_executor::write_blocks(std::span<const int32_t>, std::span<const uint8_t>) {
  return make_error("a simulated worker holds no KV data to write");
}

std::string sim_executor::describe() const {
  return fmt::format("simulated ({:.3f} ms per prefill token, {:.2f} ms per decode step at batch 1), {} KV blocks of {} tokens",
                     1000 * costs_.prefill_token_s, 1000 * costs_.decode_seconds(1), n_blocks_, block_size_);
}

}  // namespace troupe
