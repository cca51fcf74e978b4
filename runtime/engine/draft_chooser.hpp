// draft_chooser: the adaptive draft length (speculative_config.spec_draft_length 0, MLC's
// adaptive mode). Each step the scheduler asks it how many draft tokens each decoding sequence
// verifies, from 0 (plain decoding) up to max_draft_len (the ceiling), so as to maximise the
// expected tokens per second of that step.
//
// It owns two online estimates and the choice; it does not own sequences, drafts or the device.
//
// Acceptance. A verification of k drafts that accepted a of them is a + [a < k] Bernoulli trials
// of which a succeeded (drafts are accepted in order until the first rejection). Per drafter:
// decayed counts H, T (x0.98 per verification) give alpha_g = (H + 1) / (T + 2). Per sequence:
// decayed counts h, t (x0.8 per verification) shrunk toward the drafter's:
//     alpha_s = (h + m alpha_g) / (t + m),  m = 4.
// Draft token j of s (j = 1..k) is emitted only if drafts 1..j are all accepted, with
// probability alpha_s^j; a verification of k drafts emits E_s(k) = sum_{j=0..k} alpha_s^j.
//
// Cost. A step's forward time on steps without prefill, against x = tokens computed (decodes +
// drafts, one logit row each), fitted online by exponentially weighted least squares (forgetting
// 0.99 per step): T(x) = a + b x. A draft token costs Delta = b + d, d the drafter's measured
// seconds per draft token (~0 for NGram). A drafter that catches up lazily (a head drafter runs
// its layer over every position the target kept, when the sequence next drafts) charges c_e =
// c r per token a drafting sequence emits, c its measured seconds per catch-up row and r its
// rows per emitted token (proposer::catch_up_rows_per_token: 1 for MTP and Eagle-3, 0 for a
// draft model, whose accepted drafts were computed while drafting): a sequence drafting k
// tokens costs k Delta + c_e E_s(k) more than decoding plainly, which costs it nothing.
//
// Choice. With B decoding sequences the base step takes T0 = T(B) and emits B tokens. Candidate
// draft tokens (s, j) are taken in order of falling gain g = alpha_s^j (each sequence's gains
// fall with j, so the first n of that order are the best n-token allocation); after n of them
//     R(n) = (B + g_1 + ... + g_n) / (T0 + cost_1 + ... + cost_n)    expected tokens per second,
// cost = Delta + c_e g (+ c_e for a sequence's first draft: its own token's catch-up), and one
// is added iff g > R(n) cost (it raises R); a sequence whose next draft does not pay drafts no
// further. choose asks for a margin: g > kMargin R(n) cost, and nothing from a sequence whose
// draft cannot pay even with free verification (may_pay, below): its estimates (a, b, d, c and
// alpha) are noisy on a loaded machine, and a draft chosen where it barely pays by them loses
// more often than not (what it could gain there is at most the margin), while one that pays well
// (NGram's repeats, a draft model at batch 1) clears it. A large batch on a compute-bound device (a ~ 0, T0 = B b) gives R(0) Delta ~ 1 > any
// g: no drafts. Batch 1 with a fixed cost a >> b and alpha near 1 gives the ceiling.
//
// For the first kFitSteps steps, and until the fit has seen two different step sizes (it cannot
// split a from b), steps alternate between the ceiling for one sequence (the one owing the least
// catch-up) and no drafts: a fit from one step of each size is at the mercy of a loaded
// machine's noise, and once nothing drafts it learns no more. A fitting draft is skipped where
// it cannot pay whatever the fit: once the drafter's cost d (and c_e) and a plain step's time
// per token t_p = T(B) / B are measured, a draft accepted with probability alpha gains at most
// alpha t_p and costs at least d + c_e alpha (verifying it free), so alpha t_p <= d + c_e alpha
// drafts nothing (may_pay; at batch 1 a head drafter whose first verification shows poor
// acceptance stops there instead of paying three more fitting drafts and their verification;
// at batch 8 or 32, where t_p is a fraction of a decode step, after the first). A step taking more than kOutlier
// times the fit's prediction counts as that much. While
// nothing drafts the fit and the acceptance stop learning, so after kProbeEvery steps in a row
// that chose no drafts one sequence (the one owing the least catch-up) drafts at the ceiling,
// once the time those steps took is at least 1 / kProbeShare times the probe's estimated cost
// (its catch-up and its drafts): probing costs at most ~2% of the time it has none.
//
// Trees (spec_tree_width w > 1 with the adaptive length; choose_tree, allocate_tree and the
// observe_tree_* functions, apart from the chain's above). Each step each decoding sequence gets
// a depth and a shape: a chain (the tree's spine) or the tree. The drafter always proposes the
// tree (its siblings cost no extra drafter forward; NGram's matches none at all) and the
// scheduler keeps only the spine where a chain was chosen. The tree mode has its own acceptance:
// per level of the tree's longest accepted path, a verification of a tree of depth D whose
// accepted path has a nodes is a + [a < D] trials (decayed counts beside the chain's, the same
// decays and shrinkage), so a tree of depth j emits E_t(j) = sum_{i=0..j} alpha_t^i. A tree
// verification also teaches the chain's acceptance: the length of the accepted path's common
// prefix with the spine is what the spine alone would have accepted (greedy: exactly). A tree
// level costs c b + d, c the measured nodes per level of the trees verified (decayed, w until
// one is seen; a level of a model drafter's tree is one draft forward, so d is per level). The
// choice maximises R = (B + sum of gains) / (T0 + sum of costs) over every sequence's (depth,
// shape): Dinkelbach's iteration from R0 = B / T0, each round giving each sequence the shape and
// depth of largest surplus sum_j (g_j - R cost), until R stops rising (a few rounds). Equal
// acceptance makes chains (a tree level costs more), so trees are verified only where their
// extra acceptance pays for their extra rows. Unfitted steps that draft (every second one) draft
// chains at the ceiling but one sequence (in turn) a tree; every kProbeEvery-th step that drafted
// only chains one drafting sequence (in turn) verifies a tree, so the tree's acceptance keeps
// learning; a probe of a step that drafted nothing is a tree at the ceiling.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace troupe {

// A sequence's decayed acceptance counts (kept in its sequence, read by the chooser).
struct spec_acceptance {
  double hits = 0;
  double trials = 0;
  // Trees with the adaptive length: the tree mode's counts, and whether this step's draft was
  // chosen as a tree (set by the scheduler from choose_tree).
  double tree_hits = 0;
  double tree_trials = 0;
  bool tree = false;
};

// A sequence's draft this step with trees and the adaptive length: depth 0 is plain decoding.
struct draft_shape {
  int32_t depth = 0;
  bool tree = false;
  bool operator==(const draft_shape&) const = default;
};

class draft_chooser {
 public:
  static constexpr double kDrafterDecay = 0.98;
  static constexpr double kSequenceDecay = 0.8;
  static constexpr double kPriorWeight = 4;  // m
  static constexpr double kForget = 0.99;    // per observed step
  static constexpr int32_t kProbeEvery = 32;
  static constexpr double kProbeShare = 0.02;
  static constexpr int64_t kFitSteps = 8;   // the first steps alternate, to fit from (see below)
  static constexpr double kOutlier = 3;     // a step time counts as at most 3x the fit's
  static constexpr double kMargin = 1.1;    // choose drafts a token only where g > 1.1 R cost

  // A decode/verify step (no prefill) computed n_tokens (n_drafts of them drafts) and took seconds.
  void observe_step(int32_t n_tokens, double seconds, int32_t n_drafts = 0);
  // The drafter took seconds to draft n_drafted tokens (summed over a step).
  void observe_drafter(int32_t n_drafted, double seconds);
  // The drafter caught up `rows` rows in `seconds` (summed over a step).
  void observe_catch_up(int64_t rows, double seconds);
  // r: catch-up rows a drafting sequence owes per token it emits (see Cost).
  void set_catch_up_per_token(double r) { catch_up_per_token_ = r; }
  // One verification of `drafted` tokens accepted `accepted`: updates acc and the drafter's.
  void observe_verify(spec_acceptance& acc, int32_t drafted, int32_t accepted);

  double alpha_drafter() const { return (hits_ + 1) / (trials_ + 2); }
  double alpha(const spec_acceptance& acc) const;
  bool cost_known() const { return fitted_; }
  double step_fixed_s() const { return a_; }      // a
  double step_per_token_s() const { return b_; }  // b
  double draft_token_s() const { return d_; }     // d
  double catch_up_row_s() const { return c_; }    // c
  // Seconds per token of the steps that verified no drafts (decayed mean; 0: none seen).
  double plain_token_s() const { return plain_tok_w_ > 0 ? plain_tok_s_ / plain_tok_w_ : 0; }
  // Whether a draft accepted with probability alpha could pay even if verifying it were free
  // (b = 0): alpha times a plain step's seconds per token above the drafter's cost of it (its
  // draft, and its own and its emitted token's catch-up). False: it cannot, whatever the fit
  // says; true also while the drafter's cost or a plain step's is unmeasured.
  bool may_pay(double alpha) const;

  // Whether the next choose reads owed (fitting or probing): else it may be left empty.
  bool wants_owed() const { return !fitted_ || unfitted_steps_ < kFitSteps || idle_steps_ + 1 >= kProbeEvery; }
  // Draft lengths for B = alphas.size() decoding sequences (caps[i]: sequence i's own room,
  // at most the ceiling; owed[i]: the rows it would catch up before drafting, empty: none).
  // Counts one step (for probing).
  std::vector<int32_t> choose(std::span<const double> alphas, std::span<const int32_t> caps,
                              std::span<const int32_t> owed = {});
  // The same decision for given estimates (no state: the formula above), for tests and tools.
  // margin: a draft token is added only where its gain beats margin times what it costs (see
  // kMargin).
  static std::vector<int32_t> allocate(std::span<const double> alphas, std::span<const int32_t> caps, double a,
                                       double b, double d, double c_e = 0, double margin = 1);

  // Trees (spec_tree_width > 1 with the adaptive length: see above; draft_chooser_tree.cpp).
  // A verification in tree mode (acc.tree) or of a tree: the tree's depth and the accepted
  // path's length; the spine's length and its accepted prefix (the chain's counts).
  void observe_tree_verify(spec_acceptance& acc, int32_t depth, int32_t accepted, int32_t spine, int32_t spine_accepted);
  // A tree-mode draft about to be verified: its nodes and depth.
  void observe_tree_shape(int32_t nodes, int32_t depth);
  double alpha_tree_drafter() const { return (tree_hits_ + 1) / (tree_trials_ + 2); }
  double alpha_tree(const spec_acceptance& acc) const;
  // Nodes per tree level (width until a tree is seen).
  double nodes_per_level(int32_t width) const;
  // Each sequence's depth and shape (trees of width `width`); counts one step (for probing).
  std::vector<draft_shape> choose_tree(std::span<const double> alphas, std::span<const double> tree_alphas,
                                       std::span<const int32_t> caps, int32_t width);
  // The same decision for given estimates (c: nodes per tree level), for tests and tools.
  static std::vector<draft_shape> allocate_tree(std::span<const double> alphas, std::span<const double> tree_alphas,
                                                std::span<const int32_t> caps, double c, double a, double b, double d);

 private:
  double hits_ = 0, trials_ = 0;
  // Weighted sums of the step-time fit.
  double sw_ = 0, sx_ = 0, sy_ = 0, sxx_ = 0, sxy_ = 0;
  double a_ = 0, b_ = 0, d_ = 0;
  bool fitted_ = false;
  double drafter_s_ = 0, drafter_tokens_ = 0;
  double catch_up_s_ = 0, catch_up_rows_ = 0, c_ = 0, catch_up_per_token_ = 0;
  double plain_tok_s_ = 0, plain_tok_w_ = 0;  // decayed sums of plain steps' seconds per token
  int64_t idle_steps_ = 0;  // steps in a row that chose no drafts
  double idle_s_ = 0;       // their estimated time
  int64_t unfitted_steps_ = 0;
  uint64_t probe_turn_ = 0;
  // Trees: the tree mode's decayed counts, nodes and levels verified, chain-only steps in a row.
  double tree_hits_ = 0, tree_trials_ = 0;
  double tree_nodes_ = 0, tree_levels_ = 0;
  int64_t chain_only_steps_ = 0;
  uint64_t tree_probe_turn_ = 0;
};

}  // namespace troupe
