#include "kernels/cuda/attention_prefill.cuh"

#include <cmath>
#include <type_traits>

namespace troupe::cuda {
namespace {

constexpr int tile_rows = prefill_tile_rows;  // query rows per block
constexpr int tile_keys = 32;                 // keys per step: one per lane
constexpr int n_warps = 4;
constexpr int rows_per_warp = tile_rows / n_warps;

// A block takes one item for one KV head. Warp w owns rows [8w, 8w + 8) of the tile: lane c
// scores key c of the step against them, then owns output columns lane + 32 * dd. Shared
// memory holds the tile's queries (pre-scaled), the step's keys (rows padded by four floats,
// so that the 16-byte loads of lanes reading different keys spread over the banks), values and
// probabilities, in f32. Shared memory is read four floats at a time, so that each load feeds
// several multiply-adds: SIMT arithmetic, not tensor cores (see the note in the header).
template <class T, int DPL>
__global__ void __launch_bounds__(n_warps * 32)
    attention_prefill_kernel(const T* q, int64_t ldq, const prefill_item* items, const int32_t* tables,
                             const T* k_cache, const T* v_cache, int32_t block_size, int32_t n_head,
                             int32_t n_head_kv, int32_t head_dim, int32_t window, float scale, T* out,
                             int64_t ldo) {
  extern __shared__ float smem[];
  const prefill_item it = items[blockIdx.x];
  const int32_t kvh = blockIdx.y;
  const int32_t group = n_head / n_head_kv;
  const int32_t n_rows = it.n_q * group;
  const int32_t hd = head_dim, ldk = head_dim + 4;
  float* sq = smem;                   // [tile_rows][hd]
  float* sk = sq + tile_rows * hd;    // [tile_keys][hd + 4]
  float* sv = sk + tile_keys * ldk;   // [tile_keys][hd]
  float* sp = sv + tile_keys * hd;    // [tile_rows][tile_keys]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  for (int idx = tid; idx < tile_rows * hd; idx += blockDim.x) {
    const int32_t pr = it.row0 + idx / hd, d = idx % hd;
    float v = 0.0f;
    if (pr < n_rows) {
      const int64_t row = it.q_row + pr / group, head = kvh * group + pr % group;
      v = to_f32(q[row * ldq + head * hd + d]) * scale;
    }
    sq[idx] = v;
  }
  const int32_t last_row = min(it.row0 + tile_rows, n_rows) - 1;
  const int32_t key_hi = it.pos0 + last_row / group;  // no row of the tile sees a later key
  const int32_t key_lo = window > 0 ? max(0, it.pos0 + it.row0 / group - window + 1) : 0;

  float m[rows_per_warp], l[rows_per_warp], acc[rows_per_warp][DPL];
  int32_t qpos[rows_per_warp];  // -1: a row past the sequence's end
#pragma unroll
  for (int j = 0; j < rows_per_warp; ++j) {
    const int32_t pr = it.row0 + warp * rows_per_warp + j;
    qpos[j] = pr < n_rows ? it.pos0 + pr / group : -1;
    m[j] = -INFINITY;
    l[j] = 0.0f;
#pragma unroll
    for (int dd = 0; dd < DPL; ++dd) acc[j][dd] = 0.0f;
  }
  const float* qw = sq + warp * rows_per_warp * hd;
  float* pw = sp + warp * rows_per_warp * tile_keys;

  for (int32_t k0 = key_lo / tile_keys * tile_keys; k0 <= key_hi; k0 += tile_keys) {
    __syncthreads();  // every warp is done with the previous step's keys and values
    for (int idx = tid; idx < tile_keys * hd; idx += blockDim.x) {
      const int32_t c = idx / hd, d = idx % hd, key = k0 + c;
      float kv = 0.0f, vv = 0.0f;
      if (key <= key_hi) {
        const int64_t blk = tables[it.table_offset + key / block_size];
        const int64_t at = ((blk * n_head_kv + kvh) * block_size + key % block_size) * hd + d;
        kv = to_f32(k_cache[at]);
        vv = to_f32(v_cache[at]);
      }
      sk[c * ldk + d] = kv;
      sv[c * hd + d] = vv;
    }
    __syncthreads();

    const int32_t key = k0 + lane;
    float s[rows_per_warp];
#pragma unroll
    for (int j = 0; j < rows_per_warp; ++j) s[j] = 0.0f;
    const float4* k4 = reinterpret_cast<const float4*>(sk + lane * ldk);
    for (int d4 = 0; d4 < hd / 4; ++d4) {
      const float4 kd = k4[d4];
#pragma unroll
      for (int j = 0; j < rows_per_warp; ++j) {
        const float4 qd = reinterpret_cast<const float4*>(qw + j * hd)[d4];  // the same for every lane
        s[j] = fmaf(qd.x, kd.x, s[j]);
        s[j] = fmaf(qd.y, kd.y, s[j]);
        s[j] = fmaf(qd.z, kd.z, s[j]);
        s[j] = fmaf(qd.w, kd.w, s[j]);
      }
    }
#pragma unroll
    for (int j = 0; j < rows_per_warp; ++j) {
      // qpos[j] is the same across the warp, so the shuffles below see every lane.
      const bool ok = qpos[j] >= 0 && key <= qpos[j] && (window <= 0 || key > qpos[j] - window);
      const float sj = ok ? s[j] : -INFINITY;
      const float m_new = fmaxf(m[j], warp_max(sj));
      const float p = ok ? expf(sj - m_new) : 0.0f;
      const float corr = m[j] == -INFINITY ? 0.0f : expf(m[j] - m_new);
      l[j] = l[j] * corr + warp_sum(p);
      m[j] = m_new;
      pw[j * tile_keys + lane] = p;
#pragma unroll
      for (int dd = 0; dd < DPL; ++dd) acc[j][dd] *= corr;
    }
    __syncwarp();
    for (int c4 = 0; c4 < tile_keys; c4 += 4) {
      float4 p4[rows_per_warp];
#pragma unroll
      for (int j = 0; j < rows_per_warp; ++j) p4[j] = reinterpret_cast<const float4*>(pw + j * tile_keys)[c4 / 4];
#pragma unroll
      for (int cc = 0; cc < 4; ++cc) {
        float vd[DPL];
#pragma unroll
        for (int dd = 0; dd < DPL; ++dd) {
          const int d = lane + 32 * dd;
          vd[dd] = d < hd ? sv[(c4 + cc) * hd + d] : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < rows_per_warp; ++j) {
          const float p = cc == 0 ? p4[j].x : cc == 1 ? p4[j].y : cc == 2 ? p4[j].z : p4[j].w;
#pragma unroll
          for (int dd = 0; dd < DPL; ++dd) acc[j][dd] = fmaf(p, vd[dd], acc[j][dd]);
        }
      }
    }
    __syncwarp();
  }

#pragma unroll
  for (int j = 0; j < rows_per_warp; ++j) {
    if (qpos[j] < 0) continue;
    const int32_t pr = it.row0 + warp * rows_per_warp + j;
    const int64_t row = it.q_row + pr / group, head = kvh * group + pr % group;
    const float inv = 1.0f / l[j];  // > 0: every row sees at least its own key
#pragma unroll
    for (int dd = 0; dd < DPL; ++dd) {
      const int d = lane + 32 * dd;
      if (d < hd) out[row * ldo + head * hd + d] = from_f32<T>(acc[j][dd] * inv);
    }
  }
}

template <class T, int DPL>
cudaError_t launch_dpl(const T* q, int64_t ldq, const prefill_item* items, int32_t n_items, const int32_t* tables,
                       const T* k_cache, const T* v_cache, int32_t block_size, int32_t n_head, int32_t n_head_kv,
                       int32_t head_dim, int32_t window, float scale, T* out, int64_t ldo, cudaStream_t stream) {
  const size_t smem = attention_prefill_smem_bytes(head_dim);
  // Above 48 KiB a kernel must opt in (per device); setting it again costs a host call only.
  // Prefill never runs inside a captured decode graph, so this is never called while capturing.
  const cudaError_t e = cudaFuncSetAttribute(attention_prefill_kernel<T, DPL>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (e != cudaSuccess) return e;
  const dim3 grid(static_cast<unsigned>(n_items), static_cast<unsigned>(n_head_kv));
  attention_prefill_kernel<T, DPL><<<grid, n_warps * 32, smem, stream>>>(
      q, ldq, items, tables, k_cache, v_cache, block_size, n_head, n_head_kv, head_dim, window, scale, out, ldo);
  return cudaGetLastError();
}

}  // namespace

size_t attention_prefill_smem_bytes(int32_t head_dim) {
  return sizeof(float) * (static_cast<size_t>(tile_rows) * head_dim + static_cast<size_t>(tile_keys) * (head_dim + 4) +
                          static_cast<size_t>(tile_keys) * head_dim + static_cast<size_t>(tile_rows) * tile_keys);
}

template <class T>
cudaError_t launch_attention_prefill(const T* q, int64_t ldq, const prefill_item* items, int32_t n_items,
                                     const int32_t* block_tables, const T* k_cache, const T* v_cache,
                                     int32_t block_size, int32_t n_head, int32_t n_head_kv, int32_t head_dim,
                                     int32_t window, float scale, T* out, int64_t ldo, cudaStream_t stream) {
  if (n_items == 0) return cudaSuccess;
  if (head_dim > 256 || head_dim % 4 != 0) return cudaErrorInvalidValue;
  auto run = [&](auto dpl) {
    return launch_dpl<T, decltype(dpl)::value>(q, ldq, items, n_items, block_tables, k_cache, v_cache, block_size,
                                               n_head, n_head_kv, head_dim, window, scale, out, ldo, stream);
  };
  if (head_dim <= 32) return run(std::integral_constant<int, 1>{});
  if (head_dim <= 64) return run(std::integral_constant<int, 2>{});
  if (head_dim <= 128) return run(std::integral_constant<int, 4>{});
  return run(std::integral_constant<int, 8>{});
}

template cudaError_t launch_attention_prefill<float>(const float*, int64_t, const prefill_item*, int32_t,
                                                     const int32_t*, const float*, const float*, int32_t, int32_t,
                                                     int32_t, int32_t, int32_t, float, float*, int64_t, cudaStream_t);
template cudaError_t launch_attention_prefill<bf16>(const bf16*, int64_t, const prefill_item*, int32_t,
                                                    const int32_t*, const bf16*, const bf16*, int32_t, int32_t,
                                                    int32_t, int32_t, int32_t, float, bf16*, int64_t, cudaStream_t);

}  // namespace troupe::cuda
