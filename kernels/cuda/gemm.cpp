#include "kernels/cuda/gemm.hpp"

#include <fmt/format.h>

namespace troupe::cuda {
namespace {

cudaDataType_t data_type(gemm_type t) { return t == gemm_type::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

status lt_check(cublasStatus_t s, std::string_view what) {
  if (s == CUBLAS_STATUS_SUCCESS) return {};
  return make_error(fmt::format("cuBLASLt {}: {} ({})", what, cublasGetStatusName(s), cublasGetStatusString(s)));
}

#define TROUPE_LT_TRY(expr, what) TROUPE_CHECK(lt_check((expr), what))

// More plans than this (prefill lengths vary without end) start the cache over.
constexpr size_t max_plans = 4096;

}  // namespace

result<std::unique_ptr<gemm_runner>> gemm_runner::create(size_t workspace_bytes) {
  std::unique_ptr<gemm_runner> g(new gemm_runner());
  TROUPE_LT_TRY(cublasLtCreate(&g->lt_), "cublasLtCreate");
  TROUPE_TRY(g->workspace_, device_buffer::alloc(workspace_bytes, "the cuBLASLt workspace"));
  return g;
}

void gemm_runner::destroy(plan& p) {
  if (p.a) cublasLtMatrixLayoutDestroy(p.a);
  if (p.b) cublasLtMatrixLayoutDestroy(p.b);
  if (p.c) cublasLtMatrixLayoutDestroy(p.c);
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  p = plan{};
}

gemm_runner::~gemm_runner() {
  for (auto& [k, p] : plans_) destroy(p);
  if (lt_) cublasLtDestroy(lt_);
}

// Row-major y = x · Wᵀ is column-major yᵀ = W' · xᵀ with W' the column-major [k, n] view of W
// transposed: A = W (k x n, ld k, op T), B = x (k x m, ld ldx), C = y (n x m, ld ldy).
result<gemm_runner::plan*> gemm_runner::plan_for(const key& kk) {
  if (auto it = plans_.find(kk); it != plans_.end()) return &it->second;
  if (plans_.size() >= max_plans) {
    for (auto& [k, p] : plans_) destroy(p);
    plans_.clear();
  }
  const auto [m, n, k, ldx, ldy, in, out] = kk;
  plan p;
  auto fail = [&](status s) -> result<plan*> {
    destroy(p);
    return s.err();
  };
  if (status s = lt_check(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "matmul descriptor");
      !s.ok())
    return fail(s);
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
  cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
  if (status s = lt_check(cublasLtMatrixLayoutCreate(&p.a, data_type(in), static_cast<uint64_t>(k),
                                                     static_cast<uint64_t>(n), k),
                          "layout of W");
      !s.ok())
    return fail(s);
  if (status s = lt_check(cublasLtMatrixLayoutCreate(&p.b, data_type(in), static_cast<uint64_t>(k),
                                                     static_cast<uint64_t>(m), ldx),
                          "layout of x");
      !s.ok())
    return fail(s);
  if (status s = lt_check(cublasLtMatrixLayoutCreate(&p.c, data_type(out), static_cast<uint64_t>(n),
                                                     static_cast<uint64_t>(m), ldy),
                          "layout of y");
      !s.ok())
    return fail(s);
  cublasLtMatmulPreference_t pref = nullptr;
  if (status s = lt_check(cublasLtMatmulPreferenceCreate(&pref), "preference"); !s.ok()) return fail(s);
  const uint64_t ws = workspace_.bytes();
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  cublasLtMatmulHeuristicResult_t h{};
  int n_found = 0;
  const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.a, p.b, p.c, p.c, pref, 1, &h, &n_found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (status s = lt_check(hs, "heuristic"); !s.ok()) return fail(s);
  if (n_found == 0)
    return fail(make_error(fmt::format("cuBLASLt has no algorithm for [{}, {}] x [{}, {}]^T", m, k, n, k)));
  p.algo = h.algo;
  return &plans_.emplace(kk, p).first->second;
}

status gemm_runner::run(const void* w, const void* x, int64_t ldx, void* y, int64_t ldy, int64_t m, int64_t n,
                        int64_t k, gemm_type in, gemm_type out, cudaStream_t stream) {
  if (m == 0) return {};
  TROUPE_TRY(plan * p, plan_for(key{m, n, k, ldx, ldy, in, out}));
  const float alpha = 1.0f, beta = 0.0f;
  TROUPE_LT_TRY(cublasLtMatmul(lt_, p->desc, &alpha, w, p->a, x, p->b, &beta, y, p->c, y, p->c, &p->algo,
                               workspace_.get(), workspace_.bytes(), stream),
                fmt::format("matmul [{}, {}] x [{}, {}]^T", m, k, n, k));
  return {};
}

}  // namespace troupe::cuda
