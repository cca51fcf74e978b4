// gemm: y = x · Wᵀ through cuBLASLt, row-major like the rest of troupe, in bf16 (f32
// accumulation) or f32, with the algorithm chosen once per shape by cuBLASLt's heuristics and
// cached. Safe to call while a stream is being captured into a CUDA graph (the workspace is
// fixed; no allocation happens in a call).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "kernels/cuda/cuda_util.hpp"
#include "runtime/result.hpp"

namespace troupe::cuda {

enum class gemm_type : uint8_t { f32, bf16 };

class gemm_runner {
 public:
  [[nodiscard]] static result<std::unique_ptr<gemm_runner>> create(size_t workspace_bytes = size_t{32} << 20);
  ~gemm_runner();
  gemm_runner(const gemm_runner&) = delete;
  gemm_runner& operator=(const gemm_runner&) = delete;

  // y[m, n] (row stride ldy) = x[m, k] (row stride ldx) · W[n, k]ᵀ, W rows contiguous.
  // W and x are of type in (both), y of type out; the products accumulate in f32.
  [[nodiscard]] status run(const void* w, const void* x, int64_t ldx, void* y, int64_t ldy, int64_t m, int64_t n,
                           int64_t k, gemm_type in, gemm_type out, cudaStream_t stream);

  size_t n_plans() const { return plans_.size(); }

 private:
  gemm_runner() = default;
  struct plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  using key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, gemm_type, gemm_type>;
  [[nodiscard]] result<plan*> plan_for(const key& k);
  static void destroy(plan& p);

  cublasLtHandle_t lt_ = nullptr;
  device_buffer workspace_;
  std::map<key, plan> plans_;
};

}  // namespace troupe::cuda
