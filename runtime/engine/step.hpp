// step: the plain structs that join the engine's parts. The scheduler writes a step_plan (which
// sequences run, how many tokens each, which logit rows, which draft tokens); an executor runs
// its forward_batch; the output processor turns the logits into a step_result (what each
// sequence accepted). Nothing here points back into the engine, so a plan can be handed to
// another thread or actor and its result applied later.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/executor.hpp"
#include "runtime/sampler.hpp"

namespace troupe {

// What a sequence does in a step, decided by the scheduler (never inferred from counts).
enum class seq_phase : uint8_t {
  prefill,  // computes prompt tokens (or recomputes after preemption); a logit row only if it
            // reaches the last token
  decode,   // computes its last token and samples the next: one logit row
  verify,   // computes its last token and k draft tokens: k + 1 logit rows, checked in order
};
const char* seq_phase_name(seq_phase p);

// How an embedding request pools its prompt's final hidden states (after the final norm) into
// one vector, which is then L2-normalised: none for a generation request.
enum class pooling : uint8_t { none, mean, last };
const char* pooling_name(pooling p);

// Draft tokens a proposer offers for one sequence. probs holds the drafter's distribution at
// each drafted position ([n][n_vocab]) when it sampled them; empty means the drafts are
// deterministic (an n-gram match, or greedy drafting), i.e. probability 1 each.
//
// A tree draft (speculative_config.spec_tree_width > 1) also has parents: parents[i] is the
// index of token i's parent, -1 for a child of the root (the sequence's last token); a parent
// always comes before its children, and the first child listed at each node is the drafter's
// best (so the chain along first children, the spine, needs no KV move when accepted). Empty
// parents: a chain (parents[i] = i - 1). Tree drafts are deterministic (probs empty).
struct draft {
  std::vector<token_id> tokens;
  std::vector<float> probs;
  std::vector<int32_t> parents;
  bool empty() const { return tokens.empty(); }
  bool is_tree() const { return !parents.empty(); }
};

struct step_stats {
  int32_t n_scheduled_tokens = 0;  // every token computed, drafts included
  int32_t n_prefill_tokens = 0;
  int32_t n_decode_seqs = 0;       // sequences decoding or verifying
  int32_t n_draft_tokens = 0;      // draft tokens verified this step
  int32_t n_running = 0;
  int32_t n_waiting = 0;
  int32_t n_preempted = 0;         // this step
  int32_t kv_blocks_used = 0;
  int32_t kv_blocks_total = 0;
  int32_t hybrid_chunk_cap = 0;    // prefill tokens allowed beside decodes this step (0: none set)
};

// One sequence in a step, in the order of the batch.
struct scheduled_seq {
  uint64_t seq = 0;               // the engine's sequence number
  seq_phase phase = seq_phase::prefill;
  int32_t n_past = 0;             // tokens whose keys and values were computed before this step
  int32_t n_new = 0;              // tokens computed this step (a verify: 1 + draft tokens)
  int32_t n_logits = 0;           // logit rows: 0, 1, or 1 + draft tokens; a prefill chunk of
                                  // a sequence that wants its prompt's logprobs: every token's
  int32_t n_hidden = 0;           // hidden rows (an embedding request): its last n_hidden tokens'
  draft drafted;                  // verify only
  std::vector<int32_t> new_blocks;  // block ids its table gained this step (what changed)
};

struct step_plan {
  forward_batch batch;              // for the executor: tokens, positions, block tables, rows
  std::vector<scheduled_seq> seqs;  // parallel to batch.seqs
  step_stats stats;
  bool empty() const { return seqs.empty(); }
};

enum class finish_reason { stop, length, abort };
const char* finish_reason_name(finish_reason r);

// What one sequence got out of a step's logits.
struct seq_result {
  uint64_t seq = 0;
  std::vector<token_id> tokens;   // emitted, in order (a verify: accepted drafts, then one more)
  std::vector<sampled> logprobs;  // one per token, when asked
  std::string text;               // new text (complete UTF-8, stop strings cut)
  std::optional<finish_reason> finished;
  std::string stop_string;
  int32_t n_drafted = 0;          // draft tokens verified
  int32_t n_draft_accepted = 0;   // of those, accepted
  std::vector<int32_t> accepted_nodes;  // a tree: the accepted path's node indices, root first
};

struct step_result {
  std::vector<seq_result> seqs;  // sequences that sampled or verified this step
};

}  // namespace troupe
