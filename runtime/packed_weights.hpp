// packed_weights: one model's bf16 matrices packed once, at load, for the AVX-512 matmul kernel
// (cpu::packed_bf16), shared by everything that runs that model's matrices (the CPU executor,
// the MTP and Eagle-3 heads over the target's embedding and lm_head). It owns the packed
// copies and keeps the checkpoint they were made from alive; it does not own the row-major
// originals, which stay mapped (the token embedding lookup reads their rows).
//
// Memory: a packed matrix is the size of its bf16 original (its last 16 columns padded), so a
// bf16 model costs its matrices' bytes in resident anonymous memory on top of the mapped file,
// whose pages stay in the page cache, reclaimable. Nothing is packed where matmul does not read
// packed weights (cpu::uses_packed_bf16(): the generic and AVX2 kernel variants, and the fast
// path on CPUs with AVX512-BF16, which reads the weights as stored).
#pragma once

#include <memory>
#include <mutex>
#include <unordered_map>

#include "kernels/cpu/matmul.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

class checkpoint;

class packed_weights {
 public:
  explicit packed_weights(std::shared_ptr<const checkpoint> keep_alive = nullptr)
      : keep_alive_(std::move(keep_alive)) {}
  // The matmul view of t (weight_matrix_of), with its packed form where matmuls at precision
  // prec read one (cpu::uses_packed_bf16): packed on the first request for t (on the pool's
  // threads where one is given), then shared.
  cpu::weight_matrix matrix(const tensor_view& t, cpu::precision prec, cpu::thread_pool* pool = nullptr);
  // Bytes of packed copies held.
  size_t bytes() const;

 private:
  std::shared_ptr<const checkpoint> keep_alive_;
  mutable std::mutex mu_;
  std::unordered_map<const void*, cpu::packed_bf16> packed_;
};

// The store of checkpoint m's packed matrices: one per checkpoint while anything holds it.
std::shared_ptr<packed_weights> packed_weights_of(const std::shared_ptr<const checkpoint>& m);

}  // namespace troupe
