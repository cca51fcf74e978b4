// fill_random: random weights generated on the device (for benchmarks of shapes no file here
// has): uniform values from Philox, so a seed gives the same weights on every GPU.
#pragma once

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// p[i] = uniform in [-scale, scale) for i < n, from Philox keyed by seed with counter i / 4.
cudaError_t launch_fill_uniform(bf16* p, size_t n, float scale, uint64_t seed, cudaStream_t stream);
cudaError_t launch_fill_uniform(float* p, size_t n, float scale, uint64_t seed, cudaStream_t stream);
// p[i] = value for i < n.
cudaError_t launch_fill_constant(float* p, size_t n, float value, cudaStream_t stream);

}  // namespace troupe::cuda
