#include "kernels/cuda/sampling.cuh"

#include <climits>

namespace troupe::cuda {
namespace {

constexpr int n_threads = 1024;
using u64 = unsigned long long;

struct row_view {
  const float* x;
  float max_logit, inv_t, min_p;
  uint32_t lo;  // keys below are cut (top-k, then top-p)
  __device__ uint64_t weight(int32_t i, uint32_t key) const {
    const float w = token_weight(x[i], max_logit, inv_t);
    return key >= lo && w >= min_p ? to_fixed(w) : 0;
  }
};

__device__ u64 block_sum_u64(u64 v, u64* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < n_threads / 32 ? scratch[lane] : 0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Exclusive prefix sum over the block, threads in order.
__device__ u64 block_exclusive_scan_u64(u64 v, u64* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  u64 inc = v;
  for (int o = 1; o < 32; o <<= 1) {
    const u64 up = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += up;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    u64 w = scratch[lane];
    for (int o = 1; o < 32; o <<= 1) {
      const u64 up = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += up;
    }
    scratch[lane] = w;  // inclusive totals of warps 0..lane
  }
  __syncthreads();
  return (warp > 0 ? scratch[warp - 1] : 0) + inc - v;
}

__global__ void __launch_bounds__(n_threads)
    sample_kernel(const float* logits, int64_t ld, int32_t n_vocab, const sampling_row* rows, int32_t* out) {
  __shared__ uint32_t hist[256];
  __shared__ u64 mass[256];
  __shared__ u64 scratch[32];
  __shared__ float s_best[32];
  __shared__ int32_t s_best_i[32];
  __shared__ uint32_t s_prefix, s_rest;
  __shared__ u64 s_above;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const sampling_row row = rows[blockIdx.x];
  const float* x = logits + static_cast<int64_t>(blockIdx.x) * ld;

  // The first maximum: each thread's candidates come in increasing order, so ">" keeps its first.
  float best = -INFINITY;
  int32_t best_i = INT_MAX;
  for (int32_t i = tid; i < n_vocab; i += n_threads)
    if (best_i == INT_MAX || x[i] > best) {
      best = x[i];
      best_i = i;
    }
  for (int o = 16; o > 0; o >>= 1) {
    const float b = __shfl_xor_sync(0xffffffffu, best, o);
    const int32_t bi = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (b > best || (b == best && bi < best_i)) {
      best = b;
      best_i = bi;
    }
  }
  if (lane == 0) {
    s_best[warp] = best;
    s_best_i[warp] = best_i;
  }
  __syncthreads();
  if (tid == 0) {
    for (int w = 1; w < n_threads / 32; ++w)
      if (s_best[w] > s_best[0] || (s_best[w] == s_best[0] && s_best_i[w] < s_best_i[0])) {
        s_best[0] = s_best[w];
        s_best_i[0] = s_best_i[w];
      }
  }
  __syncthreads();
  if (row.greedy) {
    if (tid == 0) out[blockIdx.x] = s_best_i[0];
    return;
  }

  row_view v{x, s_best[0], 1.0f / row.temperature, row.min_p, 0u};

  // top-k: the k-th largest key, a byte at a time from the top (radix select).
  if (row.top_k > 0 && row.top_k < n_vocab) {
    uint32_t prefix = 0, mask = 0;
    if (tid == 0) s_rest = static_cast<uint32_t>(row.top_k);
    for (int shift = 24; shift >= 0; shift -= 8) {
      if (tid < 256) hist[tid] = 0;
      __syncthreads();
      for (int32_t i = tid; i < n_vocab; i += n_threads) {
        const uint32_t key = order_key(x[i]);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
      }
      __syncthreads();
      if (tid == 0) {
        uint32_t rest = s_rest;
        for (int b = 255; b >= 0; --b) {
          if (rest <= hist[b]) {
            s_prefix = prefix | static_cast<uint32_t>(b) << shift;
            break;
          }
          rest -= hist[b];
        }
        s_rest = rest;
      }
      __syncthreads();
      prefix = s_prefix;
      mask |= 255u << shift;
    }
    v.lo = prefix;
  }

  u64 z = 0;
  for (int32_t i = tid; i < n_vocab; i += n_threads) z += v.weight(i, order_key(x[i]));
  z = block_sum_u64(z, scratch);

  // top-p: the largest key whose tokens and those above weigh at least the target.
  if (row.top_p < 1.0f) {
    const u64 target = top_p_target(row.top_p, z);
    uint32_t prefix = 0, mask = 0;
    if (tid == 0) s_above = 0;
    for (int shift = 24; shift >= 0; shift -= 8) {
      if (tid < 256) mass[tid] = 0;
      __syncthreads();
      for (int32_t i = tid; i < n_vocab; i += n_threads) {
        const uint32_t key = order_key(x[i]);
        if ((key & mask) == prefix) {
          const u64 f = v.weight(i, key);
          if (f) atomicAdd(&mass[(key >> shift) & 255u], f);
        }
      }
      __syncthreads();
      if (tid == 0) {
        u64 above = s_above;
        for (int b = 255; b >= 0; --b) {
          if (above + mass[b] >= target) {
            s_prefix = prefix | static_cast<uint32_t>(b) << shift;
            break;
          }
          above += mass[b];
        }
        s_above = above;
      }
      __syncthreads();
      prefix = s_prefix;
      mask |= 255u << shift;
    }
    v.lo = max(v.lo, prefix);
    z = 0;
    for (int32_t i = tid; i < n_vocab; i += n_threads) z += v.weight(i, order_key(x[i]));
    z = block_sum_u64(z, scratch);
  }

  // The draw: the first token, in vocabulary order, whose running weight passes t.
  const u64 t = mulhi64(row_random64(row), z);
  const int32_t chunk = (n_vocab + n_threads - 1) / n_threads;
  const int32_t i0 = min(n_vocab, tid * chunk), i1 = min(n_vocab, i0 + chunk);
  u64 local = 0;
  for (int32_t i = i0; i < i1; ++i) local += v.weight(i, order_key(x[i]));
  const u64 before = block_exclusive_scan_u64(local, scratch);
  if (before <= t && t < before + local) {
    u64 cum = before;
    for (int32_t i = i0; i < i1; ++i) {
      cum += v.weight(i, order_key(x[i]));
      if (cum > t) {
        out[blockIdx.x] = i;
        break;
      }
    }
  }
}

}  // namespace

cudaError_t launch_sample(const float* logits, int64_t ld, int32_t n_rows, int32_t n_vocab, const sampling_row* rows,
                          int32_t* out, cudaStream_t stream) {
  if (n_rows == 0) return cudaSuccess;
  sample_kernel<<<n_rows, n_threads, 0, stream>>>(logits, ld, n_vocab, rows, out);
  return cudaGetLastError();
}

}  // namespace troupe::cuda
