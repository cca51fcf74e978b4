// cuda_executor: the executor on one CUDA device. Weights are uploaded once per device and
// shared by its executors (one per CUDA stream); the KV cache lives in device memory as
// blocks; activations and matrices are bf16 with f32 accumulation and an f32 residual stream
// (or f32 throughout, to check against the CPU); matrix products go through cuBLASLt; decode
// steps replay CUDA graphs captured per batch size. The header needs no CUDA.
//
// Not verified on a GPU yet where this was written (no GPU was available): see the tests in
// tests/kernels/cuda_*_test.cpp, which compare every kernel and whole forwards with the CPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "kernels/cuda/sampling_math.hpp"
#include "runtime/executor.hpp"
#include "runtime/result.hpp"

namespace troupe {

class checkpoint;
struct model_config;

namespace cuda {

// bf16: matrices in bf16 (converted once at upload when stored otherwise; q8_0 is dequantized
// then), activations between kernels in bf16, the residual stream and all math in f32.
// f32: everything in f32 (matrix products without TF32): for checking against the CPU.
enum class precision { bf16, f32 };
std::string_view precision_name(precision p);

struct device_weights;

[[nodiscard]] result<std::shared_ptr<const device_weights>> upload_weights(const checkpoint& ck, int device,
                                                                           precision p);
// Random bf16 weights generated on the device in the shape of config (for benchmarks).
[[nodiscard]] result<std::shared_ptr<const device_weights>> random_weights(const model_config& config, int device,
                                                                           uint64_t seed);
const model_config& config_of(const device_weights& w);
// Bytes of every matrix a decode step reads (what bounds decode on memory bandwidth).
size_t decode_bytes(const device_weights& w);

struct executor_options {
  int32_t kv_block_size = 16;
  int32_t kv_n_blocks = 0;          // if 0: kv_cache_bytes, or if that is 0 too, the fraction below
  size_t kv_cache_bytes = 0;
  double kv_cache_fraction = 0.9;   // of the device memory free once weights and scratch are in place
  int32_t max_batch_tokens = 8192;  // tokens in one forward
  int32_t max_logit_rows = 512;     // logit rows in one forward
  int32_t max_seqs = 256;           // decoding sequences in one forward
  bool graphs = true;
  std::vector<int32_t> graph_batch_sizes = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  int32_t split_tokens = 256;       // keys per decode-attention split while contexts are short
  int32_t max_splits = 64;          // a power of two
};

// The executor interface, plus what the CUDA stream actor needs to run forwards without
// blocking its thread, and sampling on the device.
class cuda_executor : public executor {
 public:
  // Launches a forward on this executor's stream and returns once it is queued. One forward at a
  // time: call collect() before the next enqueue().
  [[nodiscard]] virtual status enqueue(const forward_batch& b) = 0;
  // fn(arg) runs on a CUDA driver thread once the enqueued forward has finished; it must not
  // call CUDA (post a message and return).
  [[nodiscard]] virtual status notify_when_done(void (*fn)(void*), void* arg) = 0;
  // Waits for the enqueued forward (returns at once if it is done) and hands over its logits,
  // [n_logit_rows, n_vocab]; device_seconds (may be null) gets the time it took on the device.
  [[nodiscard]] virtual status collect(std::vector<float>& logits, double* device_seconds) = 0;
  // Samples one token per logit row of the last forward, on the device (sampling_ref.hpp).
  [[nodiscard]] virtual status sample(std::span<const sampling_row> rows, std::vector<int32_t>& tokens) = 0;

  struct counters {
    int64_t forwards = 0;
    int64_t graph_replays = 0;   // decode steps run by replaying a captured graph
    int64_t graph_captures = 0;
    int64_t eager = 0;           // forwards launched kernel by kernel
  };
  virtual counters stats() const = 0;
  virtual int device() const = 0;
};

[[nodiscard]] result<std::unique_ptr<cuda_executor>> make_cuda_executor(std::shared_ptr<const device_weights> weights,
                                                                        const executor_options& options);

}  // namespace cuda
}  // namespace troupe
