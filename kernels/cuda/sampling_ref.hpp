// sampling_ref: what device sampling does, in plain C++: packing a request's sampling
// parameters into the kernel's per-row form, and a host reference of the kernel's algorithm
// that gives the same token for the same logits and seed (tests compare the two exactly).
//
// The algorithm, per row: greedy rows take the first maximum. Otherwise each token weighs
// w = exp((logit - max) / temperature); top-k keeps tokens whose logit is at least the k-th
// largest (ties with it included), min-p those with w >= min_p, and top-p then the fewest most
// likely tokens (ties included) whose weight reaches top_p of what is left. A Philox draw keyed
// by the seed, with the sequence's token count as counter, picks in vocabulary order among the
// kept tokens in proportion to their weights, summed in fixed point so that order cannot matter.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cuda/sampling_math.hpp"
#include "runtime/result.hpp"
#include "runtime/sampler.hpp"

namespace troupe::cuda {

// The kernel's row for one sequence's next token. counter counts the tokens it sampled before,
// so that a seeded sequence draws the same numbers in any batch. Penalties, logit bias and
// logprobs are not applied on the device: such a request is an error here, sampled on the host.
[[nodiscard]] result<sampling_row> pack_sampling(const sampling_params& p, uint64_t seed, uint64_t counter,
                                                 int64_t n_vocab);

// The token the sampling kernel chooses for these logits.
int32_t sample_reference(std::span<const float> logits, const sampling_row& row);

}  // namespace troupe::cuda
