// draft_chooser's tree mode (spec_tree_width > 1 with the adaptive draft length): see the
// block comment in draft_chooser.hpp. Kept apart from the chain's functions in draft_chooser.cpp.
#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/engine/draft_chooser.hpp"

namespace troupe {

void draft_chooser::observe_tree_verify(spec_acceptance& acc, int32_t depth, int32_t accepted, int32_t spine,
                                        int32_t spine_accepted) {
  observe_verify(acc, spine, std::min(spine_accepted, spine));  // what the spine alone would have done
  if (depth <= 0) return;
  const int32_t a = std::min(accepted, depth);
  const double trials = a + (a < depth ? 1 : 0);
  acc.tree_hits = kSequenceDecay * acc.tree_hits + a;
  acc.tree_trials = kSequenceDecay * acc.tree_trials + trials;
  tree_hits_ = kDrafterDecay * tree_hits_ + a;
  tree_trials_ = kDrafterDecay * tree_trials_ + trials;
}

void draft_chooser::observe_tree_shape(int32_t nodes, int32_t depth) {
  if (nodes <= 0 || depth <= 0) return;
  tree_nodes_ = kDrafterDecay * tree_nodes_ + nodes;
  tree_levels_ = kDrafterDecay * tree_levels_ + depth;
}

double draft_chooser::alpha_tree(const spec_acceptance& acc) const {
  const double a = (acc.tree_hits + kPriorWeight * alpha_tree_drafter()) / (acc.tree_trials + kPriorWeight);
  return std::clamp(a, 0.0, 0.999);
}

double draft_chooser::nodes_per_level(int32_t width) const {
  if (tree_levels_ <= 0) return std::max(1, width);
  return std::max(1.0, tree_nodes_ / tree_levels_);
}

std::vector<draft_shape> draft_chooser::allocate_tree(std::span<const double> alphas, std::span<const double> tree_alphas,
                                                      std::span<const int32_t> caps, double c, double a, double b,
                                                      double d) {
  const size_t B = alphas.size();
  std::vector<draft_shape> best(B);
  if (B == 0) return best;
  const double cost[2] = {b + d, std::max(1.0, c) * b + d};  // a chain token, a tree level
  const double base_tokens = static_cast<double>(B), base_time = a + b * static_cast<double>(B);
  // R0: plain decoding. A step measured as free (a = b = d = 0) makes every draft pay.
  double rate = base_time > 0 ? base_tokens / base_time : std::numeric_limits<double>::max();
  std::vector<draft_shape> pick(B);
  for (int round = 0; round < 64; ++round) {
    double tokens = base_tokens, time = base_time;
    for (size_t s = 0; s < B; ++s) {
      double best_surplus = 0, best_gain = 0;
      pick[s] = {};
      for (int shape = 0; shape < 2; ++shape) {
        const double alpha = shape ? tree_alphas[s] : alphas[s];
        const double price = rate * cost[shape];
        double g = 1, surplus = 0, gain = 0;
        int32_t k = 0;
        for (int32_t j = 1; j <= caps[s]; ++j) {
          g *= alpha;
          if (!(g > price)) break;  // gains fall with j: no later level pays either
          surplus += g - price;
          gain += g;
          k = j;
        }
        if (k > 0 && surplus > best_surplus) {  // a tree only where it beats the chain outright
          best_surplus = surplus;
          best_gain = gain;
          pick[s] = {k, shape == 1};
        }
      }
      tokens += best_gain;
      time += pick[s].depth * cost[pick[s].tree ? 1 : 0];
    }
    const double next = time > 0 ? tokens / time : std::numeric_limits<double>::max();
    if (!(next > rate * (1 + 1e-12))) break;  // no selection beats the last one's rate
    rate = next;
    best = pick;
  }
  return best;
}

std::vector<draft_shape> draft_chooser::choose_tree(std::span<const double> alphas, std::span<const double> tree_alphas,
                                                    std::span<const int32_t> caps, int32_t width) {
  std::vector<draft_shape> out(caps.size());
  if (!fitted_) {
    // As choose(): the ceiling and nothing, in turn; on the ceiling steps chains, but one
    // sequence in turn a tree (a large batch of trees at the ceiling would cost c times the
    // rows of chains before anything is known; a tree also teaches the chain's acceptance).
    if (unfitted_steps_++ % 2 == 0 && !caps.empty()) {
      const size_t t = static_cast<size_t>(tree_probe_turn_++ % caps.size());
      for (size_t s = 0; s < caps.size(); ++s) out[s] = {caps[s], s == t && caps[s] > 0};
    }
    return out;
  }
  out = allocate_tree(alphas, tree_alphas, caps, nodes_per_level(width), a_, b_, d_);
  bool any = false, tree = false;
  for (const draft_shape& x : out) {
    any |= x.depth > 0;
    tree |= x.tree;
  }
  if (out.empty()) return out;
  if (!any) {
    chain_only_steps_ = 0;
    if (++idle_steps_ >= kProbeEvery) {
      idle_steps_ = 0;
      const size_t s = static_cast<size_t>(probe_turn_++ % out.size());
      out[s] = {caps[s], caps[s] > 0};
    }
    return out;
  }
  idle_steps_ = 0;
  if (tree) {
    chain_only_steps_ = 0;
    return out;
  }
  if (++chain_only_steps_ >= kProbeEvery) {  // a drafting sequence, in turn, verifies a tree
    chain_only_steps_ = 0;
    std::vector<size_t> drafting;
    for (size_t s = 0; s < out.size(); ++s)
      if (out[s].depth > 0) drafting.push_back(s);
    out[drafting[static_cast<size_t>(tree_probe_turn_++ % drafting.size())]].tree = true;
  }
  return out;
}

}  // namespace troupe
