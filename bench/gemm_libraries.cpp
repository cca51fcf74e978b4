// gemm_libraries: troupe's bf16 fast-path matmul against oneDNN (2.6) and libxsmm (1.17) at the
// shapes of TinyLlama-1.1B's forward (prefill of 512 tokens, decode batches 1, 8, 32), on the
// same threads; prints JSON. Built only where libdnnl-dev and libxsmm-dev are installed (they
// are not dependencies of troupe: this program is the measurement behind that choice).
//   build/bench/troupe_gemm_libraries [--threads 2] [--reps 5]
// With --threads 1 the time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), which a machine
// shared with other work disturbs far less than wall time: the kernels' own efficiency.
//
// Each library multiplies bf16 activations [M, K] by the bf16 weights [N, K] into f32 [M, N]:
// - troupe: cpu::matmul, precision fast, from f32 activations (their rounding to bf16 included),
//   weights read in place, with its own vdpbf16ps kernel (TROUPE_BF16_GEMM=own).
// - onednn: a matmul primitive on bf16 activations; weights as stored (format ba), and prepacked
//   in the layout oneDNN prefers (format any; the reorder is not timed).
// - libxsmm: its JIT bf16 micro-kernel (libxsmm_bsmmdispatch) on weights prepacked to its VNNI
//   layout (not timed), blocks of 64 weight rows x all activation rows, split over threads.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <ctime>
#include <string>
#include <vector>

#include <libxsmm.h>

#include <oneapi/dnnl/dnnl.hpp>

#include "bench/kernel_clock.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/half.hpp"

namespace {

bool cpu_time = false;

double now() { return troupe::bench::kernel_clock_s(cpu_time); }

template <class F>
double best_seconds(int reps, F&& f) {
  f();  // warm up (JIT, first touch)
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t = now();
    f();
    best = std::min(best, now() - t);
  }
  return best;
}

struct shape {
  const char* what;
  int64_t n, k;
};

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, reps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--threads") == 0) threads = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::atoi(argv[i + 1]);
  }
  setenv("TROUPE_BF16_GEMM", "own", 1);  // troupe's own kernel at every row count, not oneDNN
  omp_set_num_threads(threads);
  cpu_time = threads == 1;
  troupe::cpu::thread_pool pool(threads);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  libxsmm_init();
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const shape shapes[] = {{"q/o", 2048, 2048}, {"k/v", 256, 2048}, {"gate/up", 5632, 2048}, {"down", 2048, 5632}};
  // Matrices per TinyLlama layer of each shape: q and o; k and v; gate and up; down.
  const int per_layer[] = {2, 2, 2, 1};
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::printf("{\n  \"threads\": %d,\n  \"time\": \"%s\",\n  \"results\": [\n", threads,
              cpu_time ? "thread CPU time" : "wall");
  bool first_line = true;
  for (int64_t m : {1, 8, 32, 512}) {
    double layer[3] = {0, 0, 0}, layer_packed_dnnl = 0;
    for (size_t si = 0; si < std::size(shapes); ++si) {
      const shape& s = shapes[si];
      std::vector<float> x(static_cast<size_t>(m * s.k)), y(static_cast<size_t>(m * s.n));
      std::vector<uint16_t> xb(x.size()), w(static_cast<size_t>(s.n * s.k));
      for (float& v : x) v = nd(rng);
      for (auto& v : w) v = troupe::f32_to_bf16(nd(rng) * 0.02f);
      for (size_t i = 0; i < x.size(); ++i) xb[i] = troupe::f32_to_bf16(x[i]);
      const double flops = 2.0 * static_cast<double>(m * s.n * s.k);

      // troupe
      const troupe::cpu::weight_matrix wm{troupe::cpu::wtype::bf16, w.data(), s.n, s.k};
      const double t_troupe = best_seconds(reps, [&] {
        troupe::cpu::matmul(x.data(), s.k, m, wm, y.data(), s.n, pool, troupe::cpu::precision::fast);
      });

      // oneDNN, weights as stored and prepacked
      auto run_dnnl = [&](bool packed) {
        const dnnl::memory::desc src_md({m, s.k}, dt::bf16, tag::ab);
        const dnnl::memory::desc w_plain({s.k, s.n}, dt::bf16, tag::ba);
        const dnnl::memory::desc w_md = packed ? dnnl::memory::desc({s.k, s.n}, dt::bf16, tag::any) : w_plain;
        const dnnl::memory::desc dst_md({m, s.n}, dt::f32, tag::ab);
        const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, w_md, dst_md), eng);
        dnnl::memory src(src_md, eng, xb.data()), dst(dst_md, eng, y.data()), wsrc(w_plain, eng, w.data());
        dnnl::memory wmem = wsrc;
        if (pd.weights_desc() != w_plain) {
          wmem = dnnl::memory(pd.weights_desc(), eng);
          dnnl::reorder(wsrc, wmem).execute(strm, wsrc, wmem);
          strm.wait();
        }
        const dnnl::matmul prim(pd);
        return best_seconds(reps, [&] {
          prim.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wmem}, {DNNL_ARG_DST, dst}});
          strm.wait();
        });
      };
      const double t_dnnl = run_dnnl(false), t_dnnl_packed = run_dnnl(true);

      // libxsmm: C (64 x m, column-major, ldc = n) = A (64 x k, VNNI: [k/2][64][2]) * B (k x m,
      // column-major with ldb = k: the activation rows).
      constexpr int64_t mb = 64;
      std::vector<uint16_t> wv(w.size());
      for (int64_t c0 = 0; c0 < s.n; c0 += mb)
        for (int64_t kk = 0; kk < s.k; ++kk)
          for (int64_t c = 0; c < mb; ++c)
            wv[static_cast<size_t>(c0 * s.k + (kk / 2) * mb * 2 + c * 2 + kk % 2)] = w[static_cast<size_t>((c0 + c) * s.k + kk)];
      const libxsmm_blasint lm = mb, ln = static_cast<libxsmm_blasint>(m), lk = static_cast<libxsmm_blasint>(s.k);
      const libxsmm_blasint lda = mb, ldb = lk, ldc = static_cast<libxsmm_blasint>(s.n);
      const float alpha = 1, beta = 0;
      const int flags = LIBXSMM_GEMM_FLAG_VNNI_A;
      const libxsmm_bsmmfunction kern = libxsmm_bsmmdispatch(lm, ln, lk, &lda, &ldb, &ldc, &alpha, &beta, &flags, nullptr);
      double t_xsmm = 0;
      if (kern) {
        t_xsmm = best_seconds(reps, [&] {
#pragma omp parallel for schedule(static)
          for (int64_t c0 = 0; c0 < s.n; c0 += mb)
            kern(reinterpret_cast<const libxsmm_bfloat16*>(wv.data() + c0 * s.k),
                 reinterpret_cast<const libxsmm_bfloat16*>(xb.data()), y.data() + c0);
        });
      }
      std::printf("%s    {\"m\": %ld, \"matrix\": \"%s\", \"n\": %ld, \"k\": %ld, \"gflop_s\": {\"troupe\": %.1f, "
                  "\"onednn\": %.1f, \"onednn_prepacked\": %.1f, \"libxsmm_prepacked\": %.1f}}",
                  first_line ? "" : ",\n", static_cast<long>(m), s.what, static_cast<long>(s.n),
                  static_cast<long>(s.k), flops / t_troupe / 1e9, flops / t_dnnl / 1e9, flops / t_dnnl_packed / 1e9,
                  kern ? flops / t_xsmm / 1e9 : 0.0);
      first_line = false;
      layer[0] += per_layer[si] * t_troupe;
      layer[1] += per_layer[si] * t_dnnl;
      layer[2] += per_layer[si] * (kern ? t_xsmm : 0);
      layer_packed_dnnl += per_layer[si] * t_dnnl_packed;
    }
    std::printf(",\n    {\"m\": %ld, \"matrix\": \"one layer\", \"ms\": {\"troupe\": %.3f, \"onednn\": %.3f, "
                "\"onednn_prepacked\": %.3f, \"libxsmm_prepacked\": %.3f}}",
                static_cast<long>(m), layer[0] * 1e3, layer[1] * 1e3, layer_packed_dnnl * 1e3, layer[2] * 1e3);
  }
  std::printf("\n  ]\n}\n");
  libxsmm_finalize();
  return 0;
}
