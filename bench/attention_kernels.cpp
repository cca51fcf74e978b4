// troupe_attention_kernels: the CPU attention kernel (paged_attention) alone, at the shapes that
// matter (the shipped model's decode and verification, TinyLlama's decode and prefill), in one
// thread's CPU time (which other work on a shared machine disturbs far less than wall time).
// Prints JSON: microseconds per layer for each (shape, cached context, query rows), the fastest
// of --reps. TROUPE_ISA=generic|avx2|avx512 picks the kernels, as for every troupe binary.
//   build/bench/troupe_attention_kernels [--reps N]
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/kernel_clock.hpp"
#include "kernels/cpu/cpu_features.hpp"
#include "kernels/cpu/ops.hpp"
#include "kernels/cpu/thread_pool.hpp"

namespace {

double thread_cpu_s() { return troupe::bench::kernel_clock_s(true); }

struct shape {
  const char* name;
  int64_t n_head, n_kv, hd;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace troupe::cpu;
  int reps = 200;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--reps") == 0) reps = std::max(1, std::atoi(argv[i + 1]));
  thread_pool pool(1);
  const shape shapes[] = {{"troupe-py-7m", 8, 2, 32}, {"TinyLlama-1.1B", 32, 4, 64}};
  struct point {
    int64_t ctx, n_q;
  };
  const point points[] = {{160, 1}, {300, 1}, {300, 5}, {1024, 1}, {2048, 1}, {512, 32}, {128, 128}};
  nlohmann::json out;
  out["isa"] = isa_name(best_isa());
  out["unit"] = "microseconds of one thread's CPU time per layer (paged_attention, block size 16), fastest of reps";
  out["reps"] = reps;
  for (const shape& s : shapes) {
    const int64_t bs = 16, max_ctx = 2048, n_blk = max_ctx / bs;
    std::vector<float> k(static_cast<size_t>(n_blk * s.n_kv * s.hd * bs)), v(k.size());
    for (size_t i = 0; i < k.size(); ++i) {
      k[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
      v[i] = static_cast<float>((i * 40503u) % 1000) * 1e-3f - 0.5f;
    }
    std::vector<int32_t> table(static_cast<size_t>(n_blk));
    for (int64_t b = 0; b < n_blk; ++b) table[static_cast<size_t>(b)] = static_cast<int32_t>(n_blk - 1 - b);
    const kv_layer_view kv{k.data(), v.data(), bs, s.n_kv, s.hd};
    const int64_t w = s.n_head * s.hd;
    std::vector<float> q(static_cast<size_t>(128 * w), 0.1f), o(q.size());
    for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<float>((i * 7919u) % 1000) * 1e-3f - 0.5f;
    nlohmann::json rows = nlohmann::json::array();
    for (const point& p : points) {
      const attention_seq seq{0, p.n_q, p.ctx - p.n_q, table.data(), nullptr, 0};
      const int n_rep = p.n_q * p.ctx > 8192 ? std::max(1, reps / 20) : reps;
      double best = 1e30;
      for (int r = 0; r < n_rep; ++r) {
        const double t0 = thread_cpu_s();
        paged_attention(q.data(), w, {&seq, 1}, kv, s.n_head, 0, 1.0f / std::sqrt(static_cast<float>(s.hd)), o.data(), w,
                        pool);
        best = std::min(best, thread_cpu_s() - t0);
      }
      rows.push_back({{"context", p.ctx}, {"query_rows", p.n_q}, {"us_per_layer", best * 1e6},
                      {"us_per_query_row", best * 1e6 / static_cast<double>(p.n_q)}});
    }
    out["shapes"].push_back({{"model", s.name}, {"heads", s.n_head}, {"kv_heads", s.n_kv}, {"head_dim", s.hd},
                             {"points", rows}});
  }
  std::printf("%s\n", out.dump(2).c_str());
}
