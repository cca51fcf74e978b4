// engine: the serving engine a worker owns. Requests in (prompt tokens, sampling parameters,
// id, priority), token deltas out, one batched forward per step.
//
// Three parts joined by plain structs (runtime/engine/step.hpp):
//   scheduler        -> step_plan     queues, budget, priorities and aging, hybrid cap,
//                                     preemption, drafts to verify (scheduler.hpp)
//   kv_cache_manager                  block tables, hash chains, prefix cache, slots for
//                                     draft tokens, truncation, export/import (kv_cache_manager.hpp)
//   output_processor -> step_result   sampling or verification, detokenizing, stop strings
//                                     (output_processor.hpp)
// The engine owns the sequences and those three, and applies each step's result (accepted
// tokens advance a sequence's computed KV; rejected drafts' slots are truncated; finished
// sequences free their blocks). It does not own the device: schedule() yields a step_plan
// whose forward_batch any executor can run (the worker may hand it to a device actor), and
// complete() takes the logits back; step() does both with an executor in hand.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/constraint.hpp"
#include "runtime/engine/kv_cache_manager.hpp"
#include "runtime/engine/proposer.hpp"
#include "runtime/engine/step.hpp"
#include "runtime/executor.hpp"
#include "runtime/kv_events.hpp"
#include "runtime/result.hpp"
#include "runtime/sampler.hpp"

namespace troupe {

class tokenizer;

enum class prefill_mode { chunked, hybrid };

struct engine_config {
  int32_t max_batch_size = 256;   // running sequences at most
  int32_t max_num_tokens = 8192;  // tokens per step (prefill chunks, decodes and draft tokens)
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
  // Draft tokens a decoding sequence may verify per step, when the engine has a proposer.
  int32_t max_draft_len = 0;
  // spec_draft_length 0: each step's draft length is chosen from measured acceptance and step
  // cost, from 0 up to max_draft_len (runtime/engine/draft_chooser.hpp); false: always
  // max_draft_len (as far as the drafter finds tokens).
  bool adaptive_draft_len = false;
  // speculative_config.spec_tree_width: 1 drafts a chain; w > 1 a tree of at most w children
  // per node (runtime/engine/draft_tree.hpp), verified in one forward with a tree attention
  // mask, the longest accepted path kept (its KV moved where a chain's would be).
  int32_t spec_tree_width = 1;
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
  // Not none: an embedding request. Its prompt is computed (never sampled; params other than
  // prompt_logprobs are ignored) and its one output holds the pooled, L2-normalised final
  // hidden state. It may fill the whole context (no room for a completion is needed).
  troupe::pooling pool = pooling::none;
};

struct usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;  // prompt tokens served from the prefix cache
};

struct request_output {
  std::string id;
  std::vector<token_id> tokens;    // new tokens this step
  std::vector<sampled> logprobs;   // one per new token, when asked
  // params.prompt_logprobs: one per prompt token but the first (which has none), in the
  // output with the first new token.
  std::vector<sampled> prompt_logprobs;
  std::vector<float> embedding;    // an embedding request's result, in its last output
  std::string text;                // new text this step (complete UTF-8, stop strings cut)
  std::optional<finish_reason> finished;
  std::string stop_string;         // the stop string that ended it, if one did
  usage use;
  int32_t n_drafted = 0;           // draft tokens verified this step
  int32_t n_draft_accepted = 0;    // of those, accepted
};

struct step_output {
  std::vector<request_output> outputs;
  step_stats stats;
};

// A request's KV, ready to move to another engine: its tokens and the blocks (of this engine)
// that hold the keys and values of the first n_computed.
struct request_kv {
  std::vector<token_id> prompt;
  std::vector<token_id> generated;
  int32_t n_computed = 0;
  kv_export blocks;
};

class engine {
 public:
  // tok may be null (then no text, and stop strings are refused); prop may be null (no
  // speculation; config.max_draft_len is then ignored).
  [[nodiscard]] static result<std::unique_ptr<engine>> create(const engine_config& config,
                                                              const engine_model_info& model,
                                                              const tokenizer* tok,
                                                              std::unique_ptr<proposer> prop = nullptr);
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

  step_plan schedule();
  // forward_seconds: how long the step's forward took (it tunes the hybrid chunk size); < 0
  // when unknown. logits: [plan.batch.n_logit_rows(), n_vocab]; hidden: [plan.batch.n_hidden_rows(),
  // n_embd] (executor::forward_hidden).
  step_output complete(step_plan&& plan, const std::vector<float>& logits, double forward_seconds = -1,
                       std::span<const float> hidden = {});
  // schedule, forward, complete.
  [[nodiscard]] result<step_output> step(executor& ex);

  // KV transfer between engines (disaggregated prefill and decode). export_kv names a running
  // request's computed blocks (they stay its own until it finishes or is aborted). begin_import
  // admits a request that another engine has started: `generated` are the tokens it sampled
  // there (replayed here into sampling, detokenizing and stop strings without being emitted
  // again), and the keys and values of the first n_computed tokens of prompt + generated will
  // be written into the blocks the result names (blocks its prefix cache holds already are not
  // asked for). end_import makes it run; abort drops it.
  [[nodiscard]] result<request_kv> export_kv(const std::string& id);
  [[nodiscard]] result<kv_import> begin_import(request r, std::span<const token_id> generated, int32_t n_computed);
  [[nodiscard]] status end_import(const std::string& id);
  // Stops scheduling a running request and keeps its blocks (a prefill worker holds the
  // request it hands off while its blocks cross); abort frees them. False if unknown.
  bool hold(const std::string& id);

  std::vector<kv_event> drain_kv_events();
  std::vector<uint64_t> cached_block_hashes() const;  // sorted
  int32_t kv_blocks_free() const;
  int32_t kv_blocks_total() const;
  uint64_t block_hash_salt() const;
  const engine_config& config() const;
  // The proposer's name (its decoding type, e.g. "NGram"); "" when the engine does not draft.
  const char* decoding_type() const;

  struct impl;

 private:
  explicit engine(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

// engine_model_info for a model served by an executor and a tokenizer (may be null).
engine_model_info model_info_of(const executor& ex, const tokenizer* tok);

}  // namespace troupe
