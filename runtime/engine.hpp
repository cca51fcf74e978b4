// engine: the serving engine a worker owns. Requests in (prompt tokens, sampling parameters,
// id, priority), token deltas out, one batched forward per step.
//
// It owns: the waiting and running queues and the scheduling policy (continuous batching
// inside max_batch_size and the max_num_tokens budget; chunked prefill; hybrid split-fuse
// or chunked alternating; priority with aging; preemption by recompute), each request's KV
// blocks through the block pool (prefix cache, KV events), sampling, detokenization and
// stop conditions. It does not own the device: schedule() yields a forward_batch that any
// executor can run (the worker may hand it to a device actor) and complete() takes the
// logits back; step() does both with an executor in hand.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/constraint.hpp"
#include "runtime/executor.hpp"
#include "runtime/kv_events.hpp"
#include "runtime/result.hpp"
#include "runtime/sampler.hpp"

namespace troupe {

class tokenizer;

enum class prefill_mode { chunked, hybrid };

struct engine_config {
  int32_t max_batch_size = 256;   // running sequences at most
  int32_t max_num_tokens = 8192;  // tokens per step (prefill chunks plus decodes)
  int32_t max_seq_len = 0;        // prompt + completion; 0: the model's context length
  bool enable_chunked_prefill = true;
  // hybrid: decodes and prefill chunks share every forward (split-fuse); chunked: prefill
  // steps and decode steps alternate.
  prefill_mode prefill = prefill_mode::hybrid;
  bool prefix_cache = true;                           // prefix_cache_mode radix | disable
  int64_t prefix_cache_max_num_recycling_seqs = 256;  // < 0: no bound
  int32_t aging_steps = 64;  // a waiting request gains one priority level per this many steps
  // Hybrid mode, while sequences decode: the prefill tokens fused into one step are capped so
  // that the step takes at most this many times a decode-only step (split-fuse's promise that
  // a long prompt never stalls decoding). The cap adapts to measured step times; 0 turns it
  // off (prefill chunks then fill the whole token budget).
  double hybrid_step_time_factor = 1.5;
  std::string model_identity;  // salts the block hashes (the served model's name)
};

// The model facts the engine needs, whatever executor runs it.
struct engine_model_info {
  int64_t n_vocab = 0;          // logits per row
  int64_t n_tokens = 0;         // tokens the tokenizer knows (<= n_vocab): ids beyond never sampled
  int64_t max_position = 0;     // the model's context length
  std::vector<token_id> eos_ids;
  int32_t kv_block_size = 16;
  int32_t kv_n_blocks = 0;
};

struct request {
  std::string id;
  std::vector<token_id> prompt;
  sampling_params params;
  int32_t priority = 0;  // lower runs first
  // What the output must match (structured output, forced tool calls); null: anything. Its
  // mask applies before sampling; it decides where the output may end (min_tokens then does
  // not hold back end tokens), and the sequence stops as soon as it has ended.
  std::shared_ptr<token_constraint> constraint;
};

enum class finish_reason { stop, length, abort };
const char* finish_reason_name(finish_reason r);

struct usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;  // prompt tokens served from the prefix cache
};

struct request_output {
  std::string id;
  std::vector<token_id> tokens;    // new tokens this step
  std::vector<sampled> logprobs;   // one per new token, when asked
  std::string text;                // new text this step (complete UTF-8, stop strings cut)
  std::optional<finish_reason> finished;
  std::string stop_string;         // the stop string that ended it, if one did
  usage use;
};

struct step_stats {
  int32_t n_scheduled_tokens = 0;
  int32_t n_prefill_tokens = 0;
  int32_t n_decode_seqs = 0;
  int32_t n_running = 0;
  int32_t n_waiting = 0;
  int32_t n_preempted = 0;    // this step
  int32_t kv_blocks_used = 0;
  int32_t kv_blocks_total = 0;
  int32_t hybrid_chunk_cap = 0;  // prefill tokens allowed beside decodes this step (0: none set)
};

struct step_output {
  std::vector<request_output> outputs;
  step_stats stats;
};

// What schedule() decided; complete() needs it back with the logits.
struct scheduled_step {
  forward_batch batch;
  struct entry {
    uint64_t seq = 0;     // engine-internal sequence number
    int32_t n_new = 0;
    bool sample = false;  // its last row has logits to sample from
  };
  std::vector<entry> entries;
  step_stats stats;
  bool empty() const { return entries.empty(); }
};

class engine {
 public:
  // tok may be null (then no text, and stop strings are refused).
  [[nodiscard]] static result<std::unique_ptr<engine>> create(const engine_config& config,
                                                              const engine_model_info& model,
                                                              const tokenizer* tok);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // Refuses, with the reason, what could never run: an empty prompt, a prompt plus
  // max_tokens beyond max_seq_len, more KV than the whole cache, a prompt over the token
  // budget without chunked prefill, invalid sampling parameters, a duplicate id.
  [[nodiscard]] status add_request(request r);
  // Stops a request and frees its blocks at once; false if it is unknown or finished.
  bool abort(const std::string& id);

  bool has_work() const;
  size_t n_running() const;
  size_t n_waiting() const;

  scheduled_step schedule();
  // forward_seconds: how long the step's forward took (it tunes the hybrid chunk size); < 0
  // when unknown.
  step_output complete(scheduled_step&& step, const std::vector<float>& logits, double forward_seconds = -1);
  // schedule, forward, complete.
  [[nodiscard]] result<step_output> step(executor& ex);

  std::vector<kv_event> drain_kv_events();
  std::vector<uint64_t> cached_block_hashes() const;  // sorted
  int32_t kv_blocks_free() const;
  int32_t kv_blocks_total() const;
  uint64_t block_hash_salt() const;
  const engine_config& config() const;

  struct impl;

 private:
  explicit engine(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

// engine_model_info for a model served by an executor and a tokenizer (may be null).
engine_model_info model_info_of(const executor& ex, const tokenizer* tok);

}  // namespace troupe
