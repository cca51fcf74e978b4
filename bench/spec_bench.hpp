// spec_bench: `troupe bench spec`: speculative decoding against plain decoding on one engine,
// greedy, at several batch sizes, for two workloads over held-out Python code: an edit of code
// the prompt already holds (the prompt ends by starting the code over) and free continuation.
// Figures: generated tokens/s (prefill included, the same in both modes), target forward
// passes, the mean accepted length (tokens one verification emits), and per mode what a step
// costs (a plain decode step's forward, a verify step's, the drafter's). NGram on both
// workloads ("results"); MTP and Eagle-3 on free continuation, fixed and adaptive draft length
// ("mtp_results", "eagle_results"); Eagle-3 also one-model (eagle3_one_model true: the head's
// catch-up inside the target's forward), beside two-model in the same rows ("..._one_model").
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe::bench {

struct spec_bench_options {
  std::string model;                          // "" = the project's default model (models/troupe-py-7m)
  std::string code_dir = "/usr/lib/python3.11";  // where the held-out files are
  int threads = 0;                            // 0: every core this process may use
  std::vector<int> batches = {1, 8, 32};
  int max_tokens = 128;                       // generated per sequence
  int max_draft_len = 4;
  // MTP drafts per step (the model's own MTP layer), measured on the free-continuation workload
  // into "mtp_results"; 0: not measured (a model without MTP layers is skipped, saying so).
  int mtp_draft_len = 3;
  // Eagle-3's head (relative: also from the project's root), run on the free-continuation
  // workload with mtp_draft_len drafts per step (3 when that is 0) into "eagle_results"; "" skips it.
  std::string eagle_dir = "models/troupe-py-eagle3";
  int reps = 1;                               // runs per (workload, batch, mode); the fastest counts
  // Sequences per measurement at least: a batch size below it runs ceil(sequences / batch)
  // rounds over different prompts (batch 1 times 8 prompts, not one), figures summed.
  int sequences = 8;
  // DraftTarget's draft model, run (adaptive) on the continuation workload; "" skips it.
  std::string draft_model = "models/troupe-py-draft";
  // spec_tree_width > 1: also NGram trees of this width (fixed draft length) on both workloads,
  // and DraftTarget trees against DraftTarget chains (both fixed) on continuation; and trees with
  // the adaptive draft length (spec_draft_length 0) for NGram, DraftTarget, MTP and Eagle, beside
  // each one's adaptive chains; 1: chains only.
  int tree_width = 1;
};

[[nodiscard]] result<nlohmann::json> run_spec_bench(const spec_bench_options& o);

// The models' validation split among the Python standard library's files (paths relative to
// code_dir; models/MODEL_CARD.md): code the shipped models never trained on.
const std::vector<std::string>& held_out_python_files();

}  // namespace troupe::bench
