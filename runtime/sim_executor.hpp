// sim_executor: an executor whose forward pass is a cost model, so that the real worker
// actor, scheduler and block pool (and their KV events) run at a scale one machine cannot
// compute: hundreds of simulated workers on two cores. It holds no weights and no KV memory;
// a forward's logits are placeholders that make the sampler pick the next token id in turn
// (never an end-of-sequence id), and its time is modelled:
//
//   seconds = prefill_tokens x prefill_token_s
//           + (decoding sequences > 0 ? decode_step_s(n_decoding) : 0)
//           + context_token_s x (cached tokens the decoding sequences attend to beyond
//                                measured_context each)
//
// decode_step_s(n) interpolates linearly between the measured batch sizes (and extrapolates
// from the last two). A sequence decodes when it adds one token with logits; every other
// token is prefill. The costs come from the JSON that `troupe bench engine` prints (prefill
// tokens_per_s, decode step_ms per batch), or from explicit fields (parse_sim_costs).
#pragma once

#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/executor.hpp"
#include "runtime/model_config.hpp"
#include "runtime/result.hpp"

namespace troupe {

struct sim_costs {
  double prefill_token_s = 0;
  std::vector<std::pair<int32_t, double>> decode_step_s;  // (batch, seconds), batches increasing
  double context_token_s = 0;
  int32_t measured_context = 128;  // the cached tokens per sequence decode_step_s was measured at

  double decode_seconds(int32_t batch) const;
};

// Accepts `troupe bench engine` output ({"prefill": {"tokens_per_s"}, "decode": [{"batch",
// "step_ms"}], "decode_context_tokens"?}) or {"prefill_token_ms": x, "decode_step_ms":
// {"1": a, "8": b, ...}, "context_token_us"?: c, "measured_context"?: n}. Errors name the field.
[[nodiscard]] result<sim_costs> parse_sim_costs(std::string_view json);

class sim_executor final : public executor {
 public:
  // n_blocks: KV blocks it declares (none are allocated).
  sim_executor(model_config config, sim_costs costs, int32_t block_size, int32_t n_blocks);

  const model_config& config() const override { return config_; }
  int32_t kv_block_size() const override { return block_size_; }
  int32_t kv_n_blocks() const override { return n_blocks_; }
  // What the modelled model's KV would take (bf16), for sizing the cache as a real one.
  size_t kv_bytes_per_block() const override { return bytes_per_block(config_, block_size_); }
  static size_t bytes_per_block(const model_config& c, int32_t block_size);

  // Fills the logits and returns the modelled seconds, without waiting (a device actor waits
  // on a timer instead of a thread).
  [[nodiscard]] result<double> plan(const forward_batch& batch, std::vector<float>& logits) const;
  // plan(), then sleeps for the modelled time (the blocking interface; it burns no core).
  [[nodiscard]] status forward(const forward_batch& batch, std::vector<float>& logits) override;
  void copy_blocks(std::span<const int32_t>, std::span<const int32_t>) override {}
  // A simulated worker holds no KV data to move: transfers are refused.
  [[nodiscard]] status read_blocks(std::span<const int32_t>, std::vector<uint8_t>&) override;
  [[nodiscard]] status write_blocks(std::span<const int32_t>, std::span<const uint8_t>) override;
  std::string kv_layout() const override { return "simulated"; }
  std::string describe() const override;

 private:
  model_config config_;
  sim_costs costs_;
  int32_t block_size_;
  int32_t n_blocks_;
  std::vector<bool> is_eos_;
};

}  // namespace troupe
