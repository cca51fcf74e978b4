// cpu_executor: the executor for the CPU: weights read in place from the checkpoint's maps,
// activations in f32, the paged KV cache in host memory, kernels from kernels/cpu.
#pragma once

#include <cstddef>
#include <memory>

#include "kernels/cpu/matmul.hpp"
#include "runtime/executor.hpp"
#include "runtime/result.hpp"

namespace troupe {

class checkpoint;

struct cpu_executor_options {
  int n_threads = 0;             // 0: one per core this process may run on
  int32_t kv_block_size = 16;    // tokens per KV block
  int32_t kv_n_blocks = 0;       // if 0, derived from kv_cache_bytes
  size_t kv_cache_bytes = 256u << 20;
  // The matmuls' accuracy contract (kernels/cpu/matmul.hpp): fast (activations rounded to bf16
  // or int8 as the weight type's fast kernels read them) or f32 (the reference path).
  cpu::precision precision = cpu::default_precision();
};

[[nodiscard]] result<std::unique_ptr<executor>> make_cpu_executor(
    std::shared_ptr<const checkpoint> model, const cpu_executor_options& options);

// Cores this process may run on (its affinity mask), at least 1.
int available_cores();

}  // namespace troupe
