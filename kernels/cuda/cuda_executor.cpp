// The CUDA executor: one forward = one copy of the step's metadata to the device, the layers'
// kernels and matrix products on this executor's stream (or the replay of a captured graph
// for decode steps), and one copy of the logits back, all asynchronous until collect().
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

#include "kernels/cuda/attention_decode.cuh"
#include "kernels/cuda/attention_prefill.cuh"
#include "kernels/cuda/batch_plan.hpp"
#include "kernels/cuda/bias_add.cuh"
#include "kernels/cuda/cuda_executor.hpp"
#include "kernels/cuda/cuda_util.hpp"
#include "kernels/cuda/cuda_weights.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gemm.hpp"
#include "kernels/cuda/kv_copy.cuh"
#include "kernels/cuda/kv_store.cuh"
#include "kernels/cuda/qk_norm.cuh"
#include "kernels/cuda/rms_norm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/sampling.cuh"
#include "kernels/cuda/silu_mul.cuh"
#include "runtime/model_config.hpp"

namespace troupe::cuda {
namespace {

// Device pointers to one step's metadata (sections of the packed buffer) and its counts.
struct step_view {
  const int32_t* tokens = nullptr;
  const int32_t* positions = nullptr;
  const int32_t* slots = nullptr;
  const int32_t* logit_rows = nullptr;
  const decode_item* decode = nullptr;
  const prefill_item* prefill = nullptr;
  const int32_t* tables = nullptr;
  int32_t n_tokens = 0, n_logits = 0, n_decode = 0, n_prefill = 0;
  split_plan split;
};

class executor_impl final : public cuda_executor {
 public:
  executor_impl(std::shared_ptr<const device_weights> w, const executor_options& o)
      : w_(std::move(w)), c_(w_->config), opt_(o), device_(w_->device) {}
  ~executor_impl() override;
  status init();

  const model_config& config() const override { return c_; }
  int32_t kv_block_size() const override { return opt_.kv_block_size; }
  int32_t kv_n_blocks() const override { return n_blocks_; }
  size_t kv_bytes_per_block() const override { return 2 * static_cast<size_t>(c_.n_layer) * block_bytes(); }
  std::string describe() const override;
  status forward(const forward_batch& b, std::vector<float>& logits) override;
  void copy_blocks(std::span<const int32_t> src, std::span<const int32_t> dst) override;
  status read_blocks(std::span<const int32_t> blocks, std::vector<uint8_t>& out) override;
  status write_blocks(std::span<const int32_t> blocks, std::span<const uint8_t> data) override;
  std::string kv_layout() const override;

  status enqueue(const forward_batch& b) override;
  status notify_when_done(void (*fn)(void*), void* arg) override;
  status collect(std::vector<float>& logits, double* device_seconds) override;
  status sample(std::span<const sampling_row> rows, std::vector<int32_t>& tokens) override;
  counters stats() const override { return counters_; }
  int device() const override { return device_; }

 private:
  size_t elem() const { return w_->prec == precision::bf16 ? 2 : 4; }
  // One block of one layer's keys (or values): [n_head_kv][block_size][head_dim].
  size_t block_bytes() const {
    return static_cast<size_t>(c_.n_head_kv * c_.head_dim) * static_cast<size_t>(opt_.kv_block_size) * elem();
  }
  size_t plane_bytes() const { return block_bytes() * static_cast<size_t>(n_blocks_); }
  status ensure_meta(size_t n_ints);
  void drop_graphs();
  step_view view_of(const batch_plan& p) const;
  status run(const step_view& v);
  status run_graph(const graph_key& key, const step_view& v);
  template <class T>
  status run_layers(const step_view& v);

  std::shared_ptr<const device_weights> w_;
  const model_config& c_;
  executor_options opt_;
  int device_;
  device_info info_;
  plan_options popt_;
  int32_t n_blocks_ = 0;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ev_start_ = nullptr, ev_done_ = nullptr;
  std::unique_ptr<gemm_runner> gemm_;

  // Device memory. Activations: [max_batch_tokens, *]; x in f32, the rest in the precision.
  device_buffer kv_;  // [n_layer][2][n_blocks][n_head_kv][block_size][head_dim]
  device_buffer x_, h_, qkv_, att_, y_, gu_, act_, hl_, logits_, partial_;
  device_buffer meta_, sample_rows_, sample_out_, copy_pairs_;
  pinned_buffer meta_host_, logits_host_, sample_host_, copy_host_;

  // The forward in flight (enqueued, not yet collected).
  batch_plan plan_;
  bool pending_ = false;

  std::map<graph_key, cudaGraphExec_t> graphs_;
  std::set<graph_key> seen_, failed_;
  counters counters_;
};

executor_impl::~executor_impl() {
  if (cudaSetDevice(device_) != cudaSuccess) return;
  if (stream_) cudaStreamSynchronize(stream_);
  drop_graphs();
  if (ev_start_) cudaEventDestroy(ev_start_);
  if (ev_done_) cudaEventDestroy(ev_done_);
  if (stream_) cudaStreamDestroy(stream_);
}

void executor_impl::drop_graphs() {
  for (auto& [k, g] : graphs_) cudaGraphExecDestroy(g);
  graphs_.clear();
  seen_.clear();
  failed_.clear();
}

status executor_impl::init() {
  TROUPE_TRY(info_, probe_device(device_));
  TROUPE_CHECK(use_device(device_));
  const executor_options& o = opt_;
  if (o.kv_block_size < 1 || o.kv_block_size > 1024)
    return make_error(fmt::format("kv_block_size must be between 1 and 1024, not {}", o.kv_block_size));
  if (o.max_batch_tokens < 1 || o.max_logit_rows < 1 || o.max_seqs < 1)
    return make_error("max_batch_tokens, max_logit_rows and max_seqs must be positive");
  if (o.max_splits < 1 || (o.max_splits & (o.max_splits - 1)) != 0 || o.split_tokens < 1)
    return make_error("max_splits must be a power of two and split_tokens positive");
  if (c_.head_dim % 4 != 0 || c_.head_dim > 256)
    return make_error(fmt::format("the CUDA kernels take head_dim up to 256, a multiple of 4, not {}", c_.head_dim));
  if (c_.n_head % c_.n_head_kv != 0) return make_error("n_head must be a multiple of n_head_kv");
  if (attention_prefill_smem_bytes(static_cast<int32_t>(c_.head_dim)) > 227 * 1024)
    return make_error("head_dim too large for prefill attention's shared memory");

  popt_.block_size = o.kv_block_size;
  popt_.n_head = static_cast<int32_t>(c_.n_head);
  popt_.n_head_kv = static_cast<int32_t>(c_.n_head_kv);
  popt_.split_tokens = o.split_tokens;
  popt_.max_splits = o.max_splits;
  if (o.graphs) {
    for (int32_t b : o.graph_batch_sizes)
      if (b >= 1 && b <= o.max_seqs && b <= o.max_batch_tokens && b <= o.max_logit_rows)
        popt_.graph_batch_sizes.push_back(b);
    std::sort(popt_.graph_batch_sizes.begin(), popt_.graph_batch_sizes.end());
  }

  TROUPE_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  TROUPE_CUDA_TRY(cudaEventCreate(&ev_start_), "cudaEventCreate");
  TROUPE_CUDA_TRY(cudaEventCreate(&ev_done_), "cudaEventCreate");
  TROUPE_TRY(gemm_, gemm_runner::create());

  const size_t T = static_cast<size_t>(o.max_batch_tokens), L = static_cast<size_t>(o.max_logit_rows);
  const size_t H = static_cast<size_t>(c_.n_embd), QD = static_cast<size_t>(c_.q_dim()),
               KVD = static_cast<size_t>(c_.kv_dim()), FF = static_cast<size_t>(c_.n_ff),
               V = static_cast<size_t>(c_.n_vocab), e = elem();
  TROUPE_TRY(x_, device_buffer::alloc(T * H * 4, "the residual stream"));
  TROUPE_TRY(h_, device_buffer::alloc(T * H * e, "normed activations"));
  TROUPE_TRY(qkv_, device_buffer::alloc(T * (QD + 2 * KVD) * e, "q/k/v"));
  TROUPE_TRY(att_, device_buffer::alloc(T * QD * e, "attention output"));
  TROUPE_TRY(y_, device_buffer::alloc(T * H * e, "projection output"));
  TROUPE_TRY(gu_, device_buffer::alloc(T * 2 * FF * e, "gate/up"));
  TROUPE_TRY(act_, device_buffer::alloc(T * FF * e, "the MLP activation"));
  TROUPE_TRY(hl_, device_buffer::alloc(L * H * e, "the logit rows"));
  TROUPE_TRY(logits_, device_buffer::alloc(L * V * 4, "logits"));
  TROUPE_TRY(logits_host_, pinned_buffer::alloc(L * V * 4, "logits"));
  TROUPE_TRY(partial_, device_buffer::alloc(static_cast<size_t>(o.max_seqs) * static_cast<size_t>(c_.n_head) *
                                                static_cast<size_t>(o.max_splits) *
                                                static_cast<size_t>(c_.head_dim + 2) * 4,
                                            "decode attention splits"));
  TROUPE_TRY(sample_rows_, device_buffer::alloc(L * sizeof(sampling_row), "sampling rows"));
  TROUPE_TRY(sample_out_, device_buffer::alloc(L * sizeof(int32_t), "sampled tokens"));
  TROUPE_TRY(sample_host_, pinned_buffer::alloc(L * (sizeof(sampling_row) + sizeof(int32_t)), "sampling"));
  TROUPE_CHECK(ensure_meta(T * 8 + 4096));

  // The KV cache takes what is asked, or a fraction of what is free now.
  const size_t per_block = kv_bytes_per_block();
  int64_t n = o.kv_n_blocks;
  if (n <= 0 && o.kv_cache_bytes > 0) n = static_cast<int64_t>(o.kv_cache_bytes / per_block);
  if (n <= 0 && o.kv_n_blocks <= 0 && o.kv_cache_bytes == 0) {
    size_t free_b = 0, total_b = 0;
    TROUPE_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    const double f = std::clamp(o.kv_cache_fraction, 0.0, 1.0);
    n = static_cast<int64_t>(static_cast<double>(free_b) * f / static_cast<double>(per_block));
  }
  if (n < 1) return make_error(fmt::format("the device has room for no KV block of {} bytes", per_block));
  // Slots are int32 (block * block_size + offset).
  n = std::min<int64_t>(n, (int64_t{INT32_MAX} - o.kv_block_size) / o.kv_block_size);
  n_blocks_ = static_cast<int32_t>(n);
  TROUPE_TRY(kv_, device_buffer::alloc(static_cast<size_t>(n) * per_block,
                                       fmt::format("the KV cache ({} blocks)", n)));
  return {};
}

std::string executor_impl::describe() const {
  std::string graphs = "no graphs";
  if (!popt_.graph_batch_sizes.empty())
    graphs = fmt::format("decode graphs for batches up to {}", popt_.graph_batch_sizes.back());
  return fmt::format("cuda:{} {}, {} (weights {:.2f} GiB), {} KV blocks of {} tokens ({} MiB), {}", device_,
                     cuda::describe(info_), precision_name(w_->prec),
                     static_cast<double>(w_->total_bytes) / (1 << 30), n_blocks_, opt_.kv_block_size,
                     (kv_bytes_per_block() * static_cast<size_t>(n_blocks_)) >> 20, graphs);
}

status executor_impl::ensure_meta(size_t n_ints) {
  const size_t bytes = n_ints * sizeof(int32_t);
  if (meta_.bytes() >= bytes) return {};
  // Graphs read the metadata at fixed addresses: a new buffer means capturing them again.
  TROUPE_CUDA_TRY(cudaStreamSynchronize(stream_), "waiting for the stream");
  drop_graphs();
  const size_t grown = std::max(bytes, meta_.bytes() * 2);
  meta_ = device_buffer();
  meta_host_ = pinned_buffer();
  TROUPE_TRY(meta_, device_buffer::alloc(grown, "step metadata"));
  TROUPE_TRY(meta_host_, pinned_buffer::alloc(grown, "step metadata"));
  return {};
}

step_view executor_impl::view_of(const batch_plan& p) const {
  const int32_t* base = meta_.as<const int32_t>();
  step_view v;
  v.tokens = base + p.layout.tokens;
  v.positions = base + p.layout.positions;
  v.slots = base + p.layout.slots;
  v.logit_rows = base + p.layout.logit_rows;
  v.decode = reinterpret_cast<const decode_item*>(base + p.layout.decode_items);
  v.prefill = reinterpret_cast<const prefill_item*>(base + p.layout.prefill_items);
  v.tables = base + p.layout.block_tables;
  v.n_tokens = p.n_tokens;
  v.n_logits = p.n_logits;
  v.n_decode = p.n_decode;
  v.n_prefill = p.n_prefill;
  v.split = p.split;
  return v;
}

template <class T>
status executor_impl::run_layers(const step_view& v) {
  constexpr gemm_type g = std::is_same_v<T, bf16> ? gemm_type::bf16 : gemm_type::f32;
  const int64_t H = c_.n_embd, QD = c_.q_dim(), KVD = c_.kv_dim(), FF = c_.n_ff, HD = c_.head_dim;
  const int64_t QKV = QD + 2 * KVD;
  const int32_t n = v.n_tokens;
  const float eps = static_cast<float>(c_.rms_eps);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(HD)));
  const int32_t window = static_cast<int32_t>(c_.sliding_window);
  const int32_t bs = opt_.kv_block_size, nh = static_cast<int32_t>(c_.n_head), nkv = static_cast<int32_t>(c_.n_head_kv);
  float* x = x_.as<float>();
  T *h = h_.as<T>(), *qkv = qkv_.as<T>(), *att = att_.as<T>(), *y = y_.as<T>(), *gu = gu_.as<T>(),
    *act = act_.as<T>(), *hl = hl_.as<T>();
  const size_t plane = plane_bytes() / sizeof(T);
  auto ok = [](cudaError_t e, const char* what) { return check(e, what); };

  TROUPE_CHECK(ok(launch_embedding(w_->embd, w_->embd_type, H, v.tokens, n, x, stream_), "embedding"));
  for (size_t li = 0; li < w_->layers.size(); ++li) {
    const device_layer& l = w_->layers[li];
    T* kc = kv_.as<T>() + (2 * li) * plane;
    T* vc = kc + plane;
    // The previous layer's MLP output joins the residual stream here.
    TROUPE_CHECK(ok(launch_add_rms_norm<T>(x, li ? y : nullptr, nullptr, n, H, l.attn_norm, eps, true, h, stream_),
                    "attention norm"));
    TROUPE_CHECK(gemm_->run(l.wqkv, h, H, qkv, QKV, n, QKV, H, g, g, stream_));  // [n, QKV]
    if (l.bqkv) TROUPE_CHECK(ok(launch_bias_add<T>(qkv, QKV, n, QKV, l.bqkv, stream_), "q/k/v bias"));
    if (l.q_norm) {
      TROUPE_CHECK(ok(launch_head_rms_norm<T>(qkv, QKV, n, nh, static_cast<int32_t>(HD), 0, l.q_norm, eps, stream_),
                      "q norm"));
      TROUPE_CHECK(ok(launch_head_rms_norm<T>(qkv, QKV, n, nkv, static_cast<int32_t>(HD), QD, l.k_norm, eps, stream_),
                      "k norm"));
    }
    TROUPE_CHECK(ok(launch_rope<T>(qkv, QKV, n, nh, nkv, QD, static_cast<int32_t>(HD), v.positions, w_->inv_freq,
                                   c_.rope == rope_style::interleaved, stream_),
                    "rope"));
    TROUPE_CHECK(ok(launch_kv_store<T>(qkv, QKV, QD, QD + KVD, v.slots, n, kc, vc, bs, nkv, static_cast<int32_t>(HD),
                                       stream_),
                    "KV store"));
    TROUPE_CHECK(ok(launch_attention_prefill<T>(qkv, QKV, v.prefill, v.n_prefill, v.tables, kc, vc, bs, nh, nkv,
                                                static_cast<int32_t>(HD), window, scale, att, QD, stream_),
                    "prefill attention"));
    TROUPE_CHECK(ok(launch_attention_decode<T>(qkv, QKV, v.decode, v.n_decode, v.tables, kc, vc, bs, nh, nkv,
                                               static_cast<int32_t>(HD), window, scale, v.split.n_splits,
                                               v.split.split_len, partial_.as<float>(), att, QD, stream_),
                    "decode attention"));
    TROUPE_CHECK(gemm_->run(l.wo, att, QD, y, H, n, H, QD, g, g, stream_));  // [n, H]
    TROUPE_CHECK(ok(launch_add_rms_norm<T>(x, y, nullptr, n, H, l.ffn_norm, eps, true, h, stream_), "MLP norm"));
    TROUPE_CHECK(gemm_->run(l.wgu, h, H, gu, 2 * FF, n, 2 * FF, H, g, g, stream_));  // [n, 2 FF]
    TROUPE_CHECK(ok(launch_silu_mul<T>(gu, n, FF, act, stream_), "SiLU"));
    TROUPE_CHECK(gemm_->run(l.wdown, act, FF, y, H, n, H, FF, g, g, stream_));  // [n, H]
  }
  // The last MLP output, the final norm and the output projection, for the logit rows only.
  if (v.n_logits == 0) return {};
  TROUPE_CHECK(ok(launch_add_rms_norm<T>(x, y, v.logit_rows, v.n_logits, H, w_->output_norm, eps, false, hl, stream_),
                  "output norm"));
  return gemm_->run(w_->output, hl, H, logits_.as<float>(), c_.n_vocab, v.n_logits, c_.n_vocab, H, g,
                    gemm_type::f32, stream_);  // [n_logits, V] f32
}

status executor_impl::run(const step_view& v) {
  return w_->prec == precision::bf16 ? run_layers<bf16>(v) : run_layers<float>(v);
}

// A decode step of a captured size: replay its graph, capturing it the second time the key is
// seen (the first runs eagerly, which also settles cuBLASLt's plans outside any capture).
status executor_impl::run_graph(const graph_key& key, const step_view& v) {
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    if (failed_.count(key) || seen_.insert(key).second) {
      ++counters_.eager;
      return run(v);
    }
    TROUPE_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
    const status s = run(v);
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    cudaGraphExec_t exec = nullptr;
    cudaError_t inst = end;
    if (s.ok() && end == cudaSuccess) inst = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (!s.ok() || end != cudaSuccess || inst != cudaSuccess) {
      // Capture failed: this key runs eagerly from now on (the work was not done; do it now).
      cudaGetLastError();
      failed_.insert(key);
      ++counters_.eager;
      return run(v);
    }
    it = graphs_.emplace(key, exec).first;
    ++counters_.graph_captures;
  }
  ++counters_.graph_replays;
  return check(cudaGraphLaunch(it->second, stream_), "cudaGraphLaunch");
}

status executor_impl::enqueue(const forward_batch& b) {
  if (pending_) return make_error("cuda executor: a forward is already in flight (collect it first)");
  TROUPE_CHECK(use_device(device_));
  TROUPE_CHECK(validate_batch(b, c_.n_vocab, opt_.kv_block_size, n_blocks_, c_.max_position));
  // Tree verification is CPU-only so far (the engine refuses spec_tree_width > 1 here). On CUDA
  // it would take a per-token ancestor bitmask in the attention kernel's per-key loop and, for
  // kv_moves, one small kernel copying each (src, dst) slot's row of every layer's K and V
  // (the same gather the paged store does) on the step's stream before the layers run.
  if (!b.tree_parents.empty() || !b.kv_moves.empty())
    return make_error("forward batch: tree verification (speculative_config.spec_tree_width > 1) is not built on "
                      "CUDA yet");
  if (b.head)
    return make_error("forward batch: an Eagle-3 head inside the step (llm_config.speculative_config."
                      "eagle3_one_model true) runs on the CPU executor only, not on CUDA");
  if (b.n_tokens() > opt_.max_batch_tokens)
    return make_error(fmt::format("forward batch: {} tokens, more than this CUDA executor's {} (max_batch_tokens)",
                                  b.n_tokens(), opt_.max_batch_tokens));
  if (b.n_logit_rows() > opt_.max_logit_rows)
    return make_error(fmt::format("forward batch: {} logit rows, more than this CUDA executor's {} (max_logit_rows)",
                                  b.n_logit_rows(), opt_.max_logit_rows));
  plan_ = make_plan(b, popt_);
  if (plan_.n_decode > opt_.max_seqs)
    return make_error(fmt::format("forward batch: {} decoding sequences, more than this CUDA executor's {} (max_seqs)",
                                  plan_.n_decode, opt_.max_seqs));
  TROUPE_CHECK(ensure_meta(plan_.packed.size()));
  const size_t meta_bytes = plan_.packed.size() * sizeof(int32_t);
  std::copy(plan_.packed.begin(), plan_.packed.end(), meta_host_.as<int32_t>());
  TROUPE_CUDA_TRY(cudaEventRecord(ev_start_, stream_), "cudaEventRecord");
  TROUPE_CUDA_TRY(cudaMemcpyAsync(meta_.get(), meta_host_.as<void>(), meta_bytes, cudaMemcpyHostToDevice, stream_),
                  "copying step metadata");
  const step_view v = view_of(plan_);
  ++counters_.forwards;
  if (plan_.graph) {
    TROUPE_CHECK(run_graph(*plan_.graph, v));
  } else {
    ++counters_.eager;
    TROUPE_CHECK(run(v));
  }
  const size_t logit_bytes = static_cast<size_t>(plan_.n_real_logits) * static_cast<size_t>(c_.n_vocab) * 4;
  if (logit_bytes)
    TROUPE_CUDA_TRY(cudaMemcpyAsync(logits_host_.as<void>(), logits_.get(), logit_bytes, cudaMemcpyDeviceToHost,
                                    stream_),
                    "copying logits");
  TROUPE_CUDA_TRY(cudaEventRecord(ev_done_, stream_), "cudaEventRecord");
  pending_ = true;
  return {};
}

status executor_impl::notify_when_done(void (*fn)(void*), void* arg) {
  TROUPE_CHECK(use_device(device_));
  return check(cudaLaunchHostFunc(stream_, fn, arg), "cudaLaunchHostFunc");
}

status executor_impl::collect(std::vector<float>& logits, double* device_seconds) {
  if (!pending_) return make_error("cuda executor: no forward to collect");
  pending_ = false;
  TROUPE_CHECK(use_device(device_));
  // An error inside a kernel surfaces here; it leaves the device unusable until the process ends.
  TROUPE_CUDA_TRY(cudaEventSynchronize(ev_done_), "the forward on the device");
  const size_t n = static_cast<size_t>(plan_.n_real_logits) * static_cast<size_t>(c_.n_vocab);
  logits.assign(logits_host_.as<const float>(), logits_host_.as<const float>() + n);
  if (device_seconds) {
    float ms = 0;
    TROUPE_CUDA_TRY(cudaEventElapsedTime(&ms, ev_start_, ev_done_), "cudaEventElapsedTime");
    *device_seconds = ms / 1e3;
  }
  return {};
}

status executor_impl::forward(const forward_batch& b, std::vector<float>& logits) {
  TROUPE_CHECK(enqueue(b));
  return collect(logits, nullptr);
}

status executor_impl::sample(std::span<const sampling_row> rows, std::vector<int32_t>& tokens) {
  if (pending_) return make_error("cuda executor: collect the forward before sampling its logits");
  if (static_cast<int32_t>(rows.size()) != plan_.n_real_logits)
    return make_error(fmt::format("sampling: {} rows for {} logit rows", rows.size(), plan_.n_real_logits));
  if (rows.empty()) {
    tokens.clear();
    return {};
  }
  TROUPE_CHECK(use_device(device_));
  auto* host_rows = sample_host_.as<sampling_row>();
  auto* host_out = reinterpret_cast<int32_t*>(host_rows + opt_.max_logit_rows);
  std::copy(rows.begin(), rows.end(), host_rows);
  TROUPE_CUDA_TRY(cudaMemcpyAsync(sample_rows_.get(), host_rows, rows.size() * sizeof(sampling_row),
                                  cudaMemcpyHostToDevice, stream_),
                  "copying sampling rows");
  TROUPE_CHECK(check(launch_sample(logits_.as<float>(), c_.n_vocab, static_cast<int32_t>(rows.size()),
                                   static_cast<int32_t>(c_.n_vocab), sample_rows_.as<sampling_row>(),
                                   sample_out_.as<int32_t>(), stream_),
                     "sampling"));
  TROUPE_CUDA_TRY(cudaMemcpyAsync(host_out, sample_out_.get(), rows.size() * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                  stream_),
                  "copying sampled tokens");
  TROUPE_CUDA_TRY(cudaStreamSynchronize(stream_), "sampling on the device");
  tokens.assign(host_out, host_out + rows.size());
  return {};
}

void executor_impl::copy_blocks(std::span<const int32_t> src, std::span<const int32_t> dst) {
  // The interface returns nothing: a failure here is a broken device, and the next forward
  // reports it.
  if (!use_device(device_).ok()) return;
  const auto waves = copy_waves(src, dst);
  size_t n_pairs = 0;
  for (const auto& w : waves) n_pairs += w.size();
  if (n_pairs == 0) return;
  for (const auto& w : waves)
    for (auto [s, d] : w)
      if (s < 0 || s >= n_blocks_ || d < 0 || d >= n_blocks_) return;
  const size_t bytes = n_pairs * 2 * sizeof(int32_t);
  if (copy_pairs_.bytes() < bytes) {
    if (cudaStreamSynchronize(stream_) != cudaSuccess) return;
    auto d = device_buffer::alloc(bytes * 2, "KV copy pairs");
    auto h = pinned_buffer::alloc(bytes * 2, "KV copy pairs");
    if (!d.ok() || !h.ok()) return;
    copy_pairs_ = std::move(*d);
    copy_host_ = std::move(*h);
  }
  int32_t* host = copy_host_.as<int32_t>();
  size_t at = 0;
  for (const auto& w : waves)
    for (auto [s, d] : w) {
      host[at++] = s;
      host[at++] = d;
    }
  if (cudaMemcpyAsync(copy_pairs_.get(), host, bytes, cudaMemcpyHostToDevice, stream_) != cudaSuccess) return;
  size_t first = 0;
  for (const auto& w : waves) {
    if (launch_kv_copy(kv_.get(), plane_bytes(), static_cast<int32_t>(2 * c_.n_layer), block_bytes(),
                       copy_pairs_.as<int32_t>() + 2 * first, static_cast<int32_t>(w.size()), stream_) != cudaSuccess)
      return;
    first += w.size();
  }
  cudaStreamSynchronize(stream_);  // the host may reuse copy_host_ once this returns
}

// A block's bytes: for each of the 2 * n_layer planes (a layer's keys, then its values), the
// block's slice of that plane. Copied plane by plane with one 2D copy per block run.
status executor_impl::read_blocks(std::span<const int32_t> blocks, std::vector<uint8_t>& out) {
  TROUPE_CHECK(validate_blocks(blocks, n_blocks_, kv_bytes_per_block(), nullptr));
  TROUPE_CHECK(use_device(device_));
  const size_t at = out.size(), bb = block_bytes(), n_planes = 2 * static_cast<size_t>(c_.n_layer);
  out.resize(at + blocks.size() * kv_bytes_per_block());
  TROUPE_CUDA_TRY(cudaStreamSynchronize(stream_), "waiting for the stream");
  for (size_t i = 0; i < blocks.size(); ++i) {
    // The planes of one block are plane_bytes() apart on the device and bb apart on the host.
    const auto* src = static_cast<const uint8_t*>(kv_.get()) + static_cast<size_t>(blocks[i]) * bb;
    TROUPE_CUDA_TRY(cudaMemcpy2DAsync(out.data() + at + i * kv_bytes_per_block(), bb, src, plane_bytes(), bb,
                                      n_planes, cudaMemcpyDeviceToHost, stream_),
                    "reading KV blocks");
  }
  TROUPE_CUDA_TRY(cudaStreamSynchronize(stream_), "reading KV blocks");
  return {};
}

status executor_impl::write_blocks(std::span<const int32_t> blocks, std::span<const uint8_t> data) {
  const size_t bytes = data.size();
  TROUPE_CHECK(validate_blocks(blocks, n_blocks_, kv_bytes_per_block(), &bytes));
  TROUPE_CHECK(use_device(device_));
  const size_t bb = block_bytes(), n_planes = 2 * static_cast<size_t>(c_.n_layer);
  TROUPE_CUDA_TRY(cudaStreamSynchronize(stream_), "waiting for the stream");
  for (size_t i = 0; i < blocks.size(); ++i) {
    auto* dst = static_cast<uint8_t*>(kv_.get()) + static_cast<size_t>(blocks[i]) * bb;
    TROUPE_CUDA_TRY(cudaMemcpy2DAsync(dst, plane_bytes(), data.data() + i * kv_bytes_per_block(), bb, bb, n_planes,
                                      cudaMemcpyHostToDevice, stream_),
                    "writing KV blocks");
  }
  TROUPE_CUDA_TRY(cudaStreamSynchronize(stream_), "writing KV blocks");
  return {};
}

std::string executor_impl::kv_layout() const {
  return fmt::format("cuda {} L{} kv{} d{} b{}", precision_name(w_->prec), c_.n_layer, c_.n_head_kv, c_.head_dim,
                     opt_.kv_block_size);
}

}  // namespace

result<std::unique_ptr<cuda_executor>> make_cuda_executor(std::shared_ptr<const device_weights> weights,
                                                          const executor_options& options) {
  if (!weights) return make_error("cuda executor: no weights");
  auto ex = std::make_unique<executor_impl>(std::move(weights), options);
  TROUPE_CHECK(ex->init());
  return std::unique_ptr<cuda_executor>(std::move(ex));
}

}  // namespace troupe::cuda
