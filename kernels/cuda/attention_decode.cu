#include "kernels/cuda/attention_decode.cuh"

#include <cmath>
#include <type_traits>

namespace troupe::cuda {
namespace {

constexpr int n_warps = 4;
constexpr int max_heads = 8;  // query heads per block; larger groups take several blocks

// Warps take the split's keys in turn; lanes hold head_dim / 32 columns of each head's query,
// key and accumulator. Each warp keeps an online softmax per head; the warps' states are
// merged through shared memory into the split's partial state (unnormalised output, max, sum).
template <class T, int DPL>
__global__ void __launch_bounds__(n_warps * 32)
    decode_split_kernel(const T* q, int64_t ldq, const decode_item* items, const int32_t* tables,
                        const T* k_cache, const T* v_cache, int32_t block_size, int32_t n_head, int32_t n_head_kv,
                        int32_t head_dim, int32_t window, float scale, int32_t n_splits, int32_t split_len,
                        float* partial) {
  __shared__ float s_m[n_warps][max_heads], s_l[n_warps][max_heads];
  __shared__ float s_acc[n_warps][max_heads][32 * DPL];
  const decode_item it = items[blockIdx.x];
  const int32_t group = n_head / n_head_kv;
  const int32_t n_chunks = (group + max_heads - 1) / max_heads;
  const int32_t kvh = blockIdx.y / n_chunks, g0 = (blockIdx.y % n_chunks) * max_heads;
  const int32_t ng = min(max_heads, group - g0);
  const int32_t split = blockIdx.z, hd = head_dim;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int32_t ctx_lo = window > 0 ? max(0, it.n_ctx - window) : 0;
  const int32_t begin = max(split * split_len, ctx_lo), end = min((split + 1) * split_len, it.n_ctx);

  float qv[max_heads][DPL], m[max_heads], l[max_heads], acc[max_heads][DPL];
#pragma unroll
  for (int g = 0; g < max_heads; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int dd = 0; dd < DPL; ++dd) {
      const int d = lane + 32 * dd;
      const int64_t head = static_cast<int64_t>(kvh) * group + g0 + g;
      qv[g][dd] = g < ng && d < hd ? to_f32(q[static_cast<int64_t>(it.q_row) * ldq + head * hd + d]) * scale : 0.0f;
      acc[g][dd] = 0.0f;
    }
  }
  for (int32_t key = begin + warp; key < end; key += n_warps) {
    const int64_t blk = tables[it.table_offset + key / block_size];
    const int64_t base = ((blk * n_head_kv + kvh) * block_size + key % block_size) * hd;
    float kd[DPL], vd[DPL];
#pragma unroll
    for (int dd = 0; dd < DPL; ++dd) {
      const int d = lane + 32 * dd;
      kd[dd] = d < hd ? to_f32(k_cache[base + d]) : 0.0f;
      vd[dd] = d < hd ? to_f32(v_cache[base + d]) : 0.0f;
    }
#pragma unroll
    for (int g = 0; g < max_heads; ++g) {
      if (g >= ng) break;  // the same for the whole block
      float s = 0.0f;
#pragma unroll
      for (int dd = 0; dd < DPL; ++dd) s = fmaf(qv[g][dd], kd[dd], s);
      s = warp_sum(s);
      const float m_new = fmaxf(m[g], s);
      const float corr = m[g] == -INFINITY ? 0.0f : expf(m[g] - m_new);
      const float p = expf(s - m_new);
      l[g] = l[g] * corr + p;
      m[g] = m_new;
#pragma unroll
      for (int dd = 0; dd < DPL; ++dd) acc[g][dd] = fmaf(p, vd[dd], acc[g][dd] * corr);
    }
  }
#pragma unroll
  for (int g = 0; g < max_heads; ++g) {
    if (lane == 0) {
      s_m[warp][g] = m[g];
      s_l[warp][g] = l[g];
    }
#pragma unroll
    for (int dd = 0; dd < DPL; ++dd) s_acc[warp][g][lane + 32 * dd] = acc[g][dd];
  }
  __syncthreads();
  const int32_t stride = hd + 2;
  for (int idx = threadIdx.x; idx < ng * hd; idx += blockDim.x) {
    const int g = idx / hd, d = idx % hd;
    float mx = -INFINITY;
    for (int w = 0; w < n_warps; ++w) mx = fmaxf(mx, s_m[w][g]);
    float sum = 0.0f, a = 0.0f;
    if (mx != -INFINITY)  // an empty split (past the context, or before the window) stays empty
      for (int w = 0; w < n_warps; ++w) {
        if (s_m[w][g] == -INFINITY) continue;
        const float f = expf(s_m[w][g] - mx);
        sum += s_l[w][g] * f;
        a += s_acc[w][g][d] * f;
      }
    const int64_t head = static_cast<int64_t>(kvh) * group + g0 + g;
    float* out = partial + ((static_cast<int64_t>(blockIdx.x) * n_head + head) * n_splits + split) * stride;
    out[d] = a;
    if (d == 0) {
      out[hd] = mx;
      out[hd + 1] = sum;
    }
  }
}

// One block per (item, query head): out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M).
template <class T>
__global__ void decode_merge_kernel(const decode_item* items, int32_t n_head, int32_t head_dim, int32_t n_splits,
                                    const float* partial, T* out, int64_t ldo) {
  const int64_t item = blockIdx.x, head = blockIdx.y;
  const int32_t stride = head_dim + 2;
  const float* p = partial + (item * n_head + head) * n_splits * stride;
  T* o = out + static_cast<int64_t>(items[item].q_row) * ldo + head * head_dim;
  float mx = -INFINITY;
  for (int s = 0; s < n_splits; ++s) mx = fmaxf(mx, p[s * stride + head_dim]);
  float sum = 0.0f;
  if (mx != -INFINITY)
    for (int s = 0; s < n_splits; ++s) {
      const float ms = p[s * stride + head_dim];
      if (ms != -INFINITY) sum += p[s * stride + head_dim + 1] * expf(ms - mx);
    }
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;  // padding (n_ctx 0) comes out as zeros
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float a = 0.0f;
    if (mx != -INFINITY)
      for (int s = 0; s < n_splits; ++s) {
        const float ms = p[s * stride + head_dim];
        if (ms != -INFINITY) a += p[s * stride + d] * expf(ms - mx);
      }
    o[d] = from_f32<T>(a * inv);
  }
}

template <class T, int DPL>
cudaError_t launch_dpl(const T* q, int64_t ldq, const decode_item* items, int32_t n_items, const int32_t* tables,
                       const T* k_cache, const T* v_cache, int32_t block_size, int32_t n_head, int32_t n_head_kv,
                       int32_t head_dim, int32_t window, float scale, int32_t n_splits, int32_t split_len,
                       float* partial, T* out, int64_t ldo, cudaStream_t stream) {
  const int32_t group = n_head / n_head_kv;
  const int32_t n_chunks = (group + max_heads - 1) / max_heads;
  const dim3 grid(static_cast<unsigned>(n_items), static_cast<unsigned>(n_head_kv * n_chunks),
                  static_cast<unsigned>(n_splits));
  decode_split_kernel<T, DPL><<<grid, n_warps * 32, 0, stream>>>(q, ldq, items, tables, k_cache, v_cache, block_size,
                                                                 n_head, n_head_kv, head_dim, window, scale, n_splits,
                                                                 split_len, partial);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  const dim3 merge_grid(static_cast<unsigned>(n_items), static_cast<unsigned>(n_head));
  decode_merge_kernel<T><<<merge_grid, 64, 0, stream>>>(items, n_head, head_dim, n_splits, partial, out, ldo);
  return cudaGetLastError();
}

}  // namespace

template <class T>
cudaError_t launch_attention_decode(const T* q, int64_t ldq, const decode_item* items, int32_t n_items,
                                    const int32_t* block_tables, const T* k_cache, const T* v_cache,
                                    int32_t block_size, int32_t n_head, int32_t n_head_kv, int32_t head_dim,
                                    int32_t window, float scale, int32_t n_splits, int32_t split_len, float* partial,
                                    T* out, int64_t ldo, cudaStream_t stream) {
  if (n_items == 0) return cudaSuccess;
  if (head_dim > 256 || head_dim % 2 != 0 || n_splits < 1 || split_len < 1) return cudaErrorInvalidValue;
  auto run = [&](auto dpl) {
    return launch_dpl<T, decltype(dpl)::value>(q, ldq, items, n_items, block_tables, k_cache, v_cache, block_size,
                                               n_head, n_head_kv, head_dim, window, scale, n_splits, split_len,
                                               partial, out, ldo, stream);
  };
  if (head_dim <= 32) return run(std::integral_constant<int, 1>{});
  if (head_dim <= 64) return run(std::integral_constant<int, 2>{});
  if (head_dim <= 128) return run(std::integral_constant<int, 4>{});
  return run(std::integral_constant<int, 8>{});
}

template cudaError_t launch_attention_decode<float>(const float*, int64_t, const decode_item*, int32_t,
                                                    const int32_t*, const float*, const float*, int32_t, int32_t,
                                                    int32_t, int32_t, int32_t, float, int32_t, int32_t, float*,
                                                    float*, int64_t, cudaStream_t);
template cudaError_t launch_attention_decode<bf16>(const bf16*, int64_t, const decode_item*, int32_t,
                                                   const int32_t*, const bf16*, const bf16*, int32_t, int32_t,
                                                   int32_t, int32_t, int32_t, float, int32_t, int32_t, float*, bf16*,
                                                   int64_t, cudaStream_t);

}  // namespace troupe::cuda
