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
// seconds per draft token (~0 for NGram).
//
// Choice. With B decoding sequences the base step takes T0 = T(B) and emits B tokens. Candidate
// draft tokens (s, j) are taken in order of falling gain g = alpha_s^j (each sequence's gains
// fall with j, so the first n of that order are the best n-token allocation); after n of them
//     R(n) = (B + g_1 + ... + g_n) / (T0 + n Delta)       expected tokens per second,
// and the next one is added iff g_{n+1} > R(n) Delta (it raises R). R is unimodal in n, so this
// stops at the maximum. A large batch on a compute-bound device (a ~ 0, T0 = B b) gives
// R(0) Delta ~ 1 > any g: no drafts. Batch 1 with a fixed cost a >> b and alpha near 1 gives the
// ceiling.
//
// Until the fit has seen two different step sizes (it cannot split a from b), steps alternate
// between the ceiling for every sequence and no drafts. While nothing drafts the fit and the acceptance stop learning, so every
// kProbeEvery-th step that chose no drafts one sequence (in turn) drafts at the ceiling.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace troupe {

// A sequence's decayed acceptance counts (kept in its sequence, read by the chooser).
struct spec_acceptance {
  double hits = 0;
  double trials = 0;
};

class draft_chooser {
 public:
  static constexpr double kDrafterDecay = 0.98;
  static constexpr double kSequenceDecay = 0.8;
  static constexpr double kPriorWeight = 4;  // m
  static constexpr double kForget = 0.99;    // per observed step
  static constexpr int32_t kProbeEvery = 32;

  // A decode/verify step (no prefill) computed n_tokens and took seconds.
  void observe_step(int32_t n_tokens, double seconds);
  // The drafter took seconds to draft n_drafted tokens (summed over a step).
  void observe_drafter(int32_t n_drafted, double seconds);
  // One verification of `drafted` tokens accepted `accepted`: updates acc and the drafter's.
  void observe_verify(spec_acceptance& acc, int32_t drafted, int32_t accepted);

  double alpha_drafter() const { return (hits_ + 1) / (trials_ + 2); }
  double alpha(const spec_acceptance& acc) const;
  bool cost_known() const { return fitted_; }
  double step_fixed_s() const { return a_; }      // a
  double step_per_token_s() const { return b_; }  // b
  double draft_token_s() const { return d_; }     // d

  // Draft lengths for B = alphas.size() decoding sequences (caps[i]: sequence i's own room,
  // at most the ceiling). Counts one step (for probing).
  std::vector<int32_t> choose(std::span<const double> alphas, std::span<const int32_t> caps);
  // The same decision for given estimates (no state: the formula above), for tests and tools.
  static std::vector<int32_t> allocate(std::span<const double> alphas, std::span<const int32_t> caps, double a,
                                       double b, double d);

 private:
  double hits_ = 0, trials_ = 0;
  // Weighted sums of the step-time fit.
  double sw_ = 0, sx_ = 0, sy_ = 0, sxx_ = 0, sxy_ = 0;
  double a_ = 0, b_ = 0, d_ = 0;
  bool fitted_ = false;
  double drafter_s_ = 0, drafter_tokens_ = 0;
  int64_t idle_steps_ = 0;  // steps in a row that chose no drafts
  int64_t unfitted_steps_ = 0;
  uint64_t probe_turn_ = 0;
};

}  // namespace troupe
