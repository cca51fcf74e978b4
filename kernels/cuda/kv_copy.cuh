// kv_copy: copies whole KV blocks (every layer's keys and values) for copy-on-write of
// shared prefix blocks. One launch copies one wave of pairs (batch_plan.hpp: copy_waves).
#pragma once

#include "kernels/cuda/common.cuh"

namespace troupe::cuda {

// For i < n_pairs and each of n_planes planes (a layer's keys or values, plane_bytes apart):
// block dst[i] = block src[i], each block_bytes long (a multiple of 4). pairs: [n_pairs][2]
// (src, dst) on the device.
cudaError_t launch_kv_copy(void* cache, size_t plane_bytes, int32_t n_planes, size_t block_bytes,
                           const int32_t* pairs, int32_t n_pairs, cudaStream_t stream);

}  // namespace troupe::cuda
