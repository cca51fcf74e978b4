// factory: the one place that builds an executor and an engine from settings. `troupe serve`,
// `troupe node`, `troupe generate` and the benchmarks all come here, so a new kind of executor
// or a new engine setting is added once.
//
// It owns what the executors of one process share: CUDA weights uploaded once per (model,
// device). It does not own the executors it makes (callers hold them) nor anything of CAF.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/engine/engine.hpp"
#include "runtime/executor.hpp"
#include "runtime/result.hpp"

namespace troupe {

class checkpoint;
class tokenizer;

// How one engine and its executor are set up (a worker's settings; it travels between nodes
// inside worker_spec, actors/protocol.hpp).
struct engine_spec {
  // The executor.
  std::string device = "cpu";     // cpu, cuda or cuda:N
  int32_t threads = 0;            // cpu: 0 = every core this process may run on
  int32_t kv_block_size = 16;     // tokens per KV block
  int32_t kv_n_blocks = 0;        // > 0: exactly this many blocks
  int64_t kv_cache_bytes = 0;     // else this many bytes of KV cache
  double kv_cache_fraction = 0;   // cuda, when both are 0: the share of device memory free after weights
  // The engine (engine_config).
  int32_t max_batch_size = 256;
  int32_t max_num_tokens = 8192;
  int32_t max_seq_len = 0;
  bool enable_chunked_prefill = true;
  bool hybrid_prefill = true;
  bool prefix_cache = true;
  int64_t max_recycling_seqs = 256;
  // Speculative decoding (llm_config.speculative_config): decoding_type "" (off), "NGram", "MTP",
  // "Eagle" (with speculative_model_dir: the Eagle-3 head's directory) or "DraftTarget" (with
  // speculative_model_dir: the draft model's directory; relative ones also looked up from the
  // project's root);
  // drafts per step (0: the drafter's default) and the NGram drafter's match sizes (0: its
  // defaults, runtime/spec/ngram_proposer.hpp). Types troupe has not built are refused.
  std::string decoding_type;
  int32_t max_draft_len = 0;
  int64_t num_nextn_predict_layers = 0;  // MTP: the model's MTP layers to run (its checkpoint's)
  // speculative_config.spec_draft_length: < 0 unset (always max_draft_len), 0 adaptive (each
  // step's length chosen up to max_draft_len, runtime/engine/draft_chooser.hpp), > 0 that many.
  int32_t spec_draft_length = -1;
  // speculative_config.spec_tree_width: 1 chains; w > 1 tree drafts (NGram, DraftTarget; CPU).
  int32_t spec_tree_width = 1;
  int32_t max_matching_ngram_size = 0;
  int32_t min_matching_ngram_size = 0;
  std::string speculative_model_dir;
  // Eagle: speculative_config.eagle3_one_model: the head's catch-up runs inside the target's
  // forward (runtime/spec/eagle3_proposer.hpp); CPU executor only (make_engine refuses others).
  bool eagle3_one_model = false;
  // A cost model (runtime/sim_executor.hpp, JSON) instead of the forward: a simulated worker
  // with no weights read and no KV memory; "" for a real one.
  std::string simulate;
};

// The cpu executor's KV cache when a spec names neither blocks nor bytes.
inline constexpr int64_t kDefaultCpuKvBytes = int64_t{512} << 20;

engine_config engine_config_of(const engine_spec& spec, std::string model_identity);

class executor_factory {
 public:
  executor_factory();
  ~executor_factory();
  executor_factory(const executor_factory&) = delete;
  executor_factory& operator=(const executor_factory&) = delete;

  // An executor of model on spec.device. model_key names the model (its path) so that CUDA
  // weights are uploaded once per (model, device) and shared by every executor made here. On a
  // build without CUDA, or a machine without the device, it says so.
  [[nodiscard]] result<std::shared_ptr<executor>> make_executor(std::shared_ptr<const checkpoint> model,
                                                                const std::string& model_key,
                                                                const engine_spec& spec);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// The NGram drafter's max_draft_len when speculative_config sets none.
inline constexpr int32_t kDefaultNgramMaxDraftLen = 4;

// The MTP drafter's max_draft_len when speculative_config sets none.
inline constexpr int32_t kDefaultMtpMaxDraftLen = 3;

// The drafter spec.decoding_type names (null when it names none), or why it cannot be made.
// DraftTarget loads spec.speculative_model_dir and makes its executor on spec.device, its KV
// cache as many tokens as the target's (target: the target's facts; tok: its tokenizer, which
// the draft model's must equal token for token). MTP needs the target's checkpoint (its MTP
// layers live there: target_weights) and sizes its KV to the target's kv_n_blocks.
[[nodiscard]] result<std::unique_ptr<proposer>> make_proposer(const engine_spec& spec, const tokenizer* tok = nullptr,
                                                              const engine_model_info* target = nullptr,
                                                              std::shared_ptr<const checkpoint> target_weights = nullptr);

// An engine over ex's KV cache with spec's settings; tok may be null. prop: the drafter; null
// makes the one spec.decoding_type names (none when it names none) over target (MTP needs it).
[[nodiscard]] result<std::unique_ptr<engine>> make_engine(const engine_spec& spec, const executor& ex,
                                                          const tokenizer* tok, std::string model_identity,
                                                          std::unique_ptr<proposer> prop = nullptr,
                                                          std::shared_ptr<const checkpoint> target = nullptr);

}  // namespace troupe
