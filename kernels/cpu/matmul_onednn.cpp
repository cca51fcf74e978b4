// The bf16 fast path for many rows (prefill, batched decode) through oneDNN's matmul primitive
// (Debian's libdnnl-dev 2.6): activations already rounded to bf16 times the weights as stored
// (read in place as a strided [n_in, n_out] matrix, no repacking), f32 sums, as the contract
// of matmul.hpp says. Each thread of troupe's pool multiplies its own columns with a one-thread
// primitive (oneDNN's OpenMP team limited to the calling thread), so no second thread pool
// competes for the cores. Measured against troupe's own vdpbf16ps kernel and libxsmm at
// TinyLlama's shapes (build/bench/troupe_gemm_libraries): about 1.4x faster at 512 rows and
// 1.2x at 32, slower below 16 rows, where the own kernel stays.
#include <omp.h>

#include <map>
#include <tuple>

#include <oneapi/dnnl/dnnl.hpp>

#include "kernels/cpu/matmul.hpp"

namespace troupe::cpu::detail {
namespace {

struct per_thread {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  // Primitives by (rows, columns, n_in, activation stride, output stride).
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>, dnnl::matmul> prims;
  per_thread() { omp_set_num_threads(1); }
};

per_thread& state() {
  static thread_local per_thread s;
  return s;
}

}  // namespace

void bf16_gemm_onednn(const uint16_t* xb, int64_t ldxb, int64_t n_rows, const weight_matrix& w, int64_t c0,
                      int64_t c1, float* y, int64_t ldy) {
  using dt = dnnl::memory::data_type;
  per_thread& s = state();
  const int64_t n = c1 - c0, k = w.n_in;
  const dnnl::memory::desc src_md({n_rows, k}, dt::bf16, {ldxb, 1});
  const dnnl::memory::desc w_md({k, n}, dt::bf16, {1, k});  // weight row j = column j of [k, n]
  const dnnl::memory::desc dst_md({n_rows, n}, dt::f32, {ldy, 1});
  const auto key = std::make_tuple(n_rows, n, k, ldxb, ldy);
  auto it = s.prims.find(key);
  if (it == s.prims.end()) {
    if (s.prims.size() > 256) s.prims.clear();  // prompts of many lengths: keep the map small
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, w_md, dst_md), s.eng);
    it = s.prims.emplace(key, dnnl::matmul(pd)).first;
  }
  const auto* wb = static_cast<const uint16_t*>(w.data) + c0 * k;
  dnnl::memory src(src_md, s.eng, const_cast<uint16_t*>(xb));
  dnnl::memory wm(w_md, s.eng, const_cast<uint16_t*>(wb));
  dnnl::memory dst(dst_md, s.eng, y + c0);
  it->second.execute(s.strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dst}});
  s.strm.wait();
}

}  // namespace troupe::cpu::detail
