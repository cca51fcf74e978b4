// quant_kernels: the fast-path matmul per weight type at TinyLlama-1.1B's decode and batched-
// decode shapes, one thread, timed in the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), which a
// machine shared with other work disturbs far less than wall time: the kernels' own efficiency.
//   build/bench/troupe_quant_kernels [--types bf16,q8_0,q4_K] [--rows 1,8,32] [--reps 7] [--threads 1]
//                                    [--shapes 2048x2048,5632x2048,2048x5632] [--cold 0|1]
// Prints JSON: per type, shape and row count the best time of --reps calls (activation rounding
// included, as cpu::matmul does it), the weight bytes read per second and the multiply-adds
// per second. Weights are random blocks with sane scales (the values do not change the time).
// --cold 1 (the default) rotates over copies of the weights totalling 512 MiB, so that every
// call reads them from memory as a forward pass does (the L3 here is 48 MiB); --cold 0 repeats
// one matrix (from cache where it fits: the kernel's compute rate). bf16 weights on AVX-512 are
// packed first, as a model's are at load (packed_bf16), and the copies are of the packed form.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/kernel_clock.hpp"
#include "kernels/cpu/matmul.hpp"
#include "kernels/cpu/thread_pool.hpp"
#include "runtime/half.hpp"

namespace {

bool cpu_time = true;

double now() { return troupe::bench::kernel_clock_s(cpu_time); }

using troupe::cpu::wtype;

std::vector<uint8_t> random_weights(wtype t, int64_t n_out, int64_t n_in) {
  std::mt19937 rng(static_cast<unsigned>(n_out * 7 + n_in));
  const int64_t nb = n_out * n_in / troupe::cpu::block_values(t);
  const size_t bb = troupe::cpu::block_bytes(t);
  std::vector<uint8_t> out(static_cast<size_t>(nb) * bb);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  auto put = [](uint8_t* p, float v) {
    const uint16_t h = troupe::f32_to_fp16(v);
    std::memcpy(p, &h, 2);
  };
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* blk = out.data() + static_cast<size_t>(b) * bb;
    switch (t) {
      case wtype::bf16:  // random bits are NaNs and huge values: small normal numbers instead
        blk[1] = static_cast<uint8_t>(0x3c + (blk[1] & 1) * 0x80);
        break;
      case wtype::q8_0: put(blk, 1.0f / 127); break;
      case wtype::q4_0: put(blk, 1.0f / 8); break;
      case wtype::q4_k:
      case wtype::q5_k: put(blk, 1.0f / 900); put(blk + 2, 1.0f / 120); break;
      case wtype::q6_k: put(blk + 208, 1.0f / 2000); break;
      default: break;
    }
  }
  return out;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, ',');) out.push_back(p);
  return out;
}

wtype parse_type(const std::string& s) {
  for (wtype t : {wtype::bf16, wtype::q8_0, wtype::q4_0, wtype::q4_k, wtype::q5_k, wtype::q6_k, wtype::f32})
    if (s == troupe::cpu::wtype_name(t) || (s == "q4_k" && t == wtype::q4_k) || (s == "q5_k" && t == wtype::q5_k) ||
        (s == "q6_k" && t == wtype::q6_k))
      return t;
  std::fprintf(stderr, "unknown type %s\n", s.c_str());
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string types = "bf16,q8_0,q4_K", rows_s = "1,8,32";
  std::string shapes_s = "2048x2048,5632x2048,2048x5632";
  int reps = 7, threads = 1;
  bool cold = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--types") types = argv[i + 1];
    else if (a == "--rows") rows_s = argv[i + 1];
    else if (a == "--reps") reps = std::atoi(argv[i + 1]);
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--shapes") shapes_s = argv[i + 1];
    else if (a == "--cold") cold = std::atoi(argv[i + 1]) != 0;
  }
  cpu_time = threads == 1;
  troupe::cpu::thread_pool pool(threads);
  struct shape {
    std::string what;
    int64_t n, k;
  };
  std::vector<shape> shapes;
  for (const std::string& s : split(shapes_s)) {
    const size_t x = s.find('x');
    shapes.push_back({s, std::atoll(s.substr(0, x).c_str()), std::atoll(s.substr(x + 1).c_str())});
  }
  // This thread's f32 FMA peak (register-only loops, thread CPU time), the roofline of the many-row
  // bf16 figures: multiply-adds per second.
  double peak = 0;
  for (int i = 0; i < 3; ++i) {
    const double t0 = now();
    const double g = troupe::cpu::detail::fma_peak_gflops(20'000'000);
    peak = std::max(peak, cpu_time ? 20e6 * 12 * 16 / (now() - t0) * 1e-9 : g / 2);
  }
  std::printf("{\"threads\": %d, \"time\": \"%s\", \"cold\": %s, \"fma_peak_gmac_s\": %.1f, \"results\": [\n", threads,
              cpu_time ? "thread cpu" : "wall", cold ? "true" : "false", peak);
  bool first = true;
  for (const std::string& ts : split(types)) {
    const wtype t = parse_type(ts);
    for (const shape& s : shapes) {
      const std::vector<uint8_t> wb = random_weights(t, s.n, s.k);
      const size_t copies = cold ? std::max<size_t>(2, (size_t{512} << 20) / wb.size()) : 1;
      // bf16 on AVX-512: the weights packed as a model's are at load (packed_bf16), copies of
      // the packed form only (the kernel does not read the row-major bytes).
      const bool packed = t == wtype::bf16 && troupe::cpu::uses_packed_bf16(troupe::cpu::precision::fast);
      std::vector<std::vector<uint8_t>> all(packed ? 1 : copies, wb);
      std::vector<troupe::cpu::packed_bf16> packs;
      double pack_ms = 0;  // packing one copy, as a model's load does per matrix (one thread)
      if (packed)
        for (size_t i = 0; i < copies; ++i) {
          const double p0 = now();
          packs.emplace_back(troupe::cpu::weight_matrix{t, wb.data(), s.n, s.k});
          if (i == 0) pack_ms = (now() - p0) * 1e3;
        }
      size_t next = 0;
      for (const std::string& rs : split(rows_s)) {
        const int64_t m = std::atoll(rs.c_str());
        std::vector<float> x(static_cast<size_t>(m * s.k)), y(static_cast<size_t>(m * s.n));
        std::mt19937 rng(1);
        std::normal_distribution<float> nd(0, 1);
        for (float& v : x) v = nd(rng);
        auto call = [&] {
          troupe::cpu::weight_matrix w{t, all[packed ? 0 : next].data(), s.n, s.k};
          if (packed) w.packed = packs[next].data();
          next = (next + 1) % copies;
          troupe::cpu::matmul(x.data(), s.k, m, w, y.data(), s.n, pool, troupe::cpu::precision::fast);
        };
        call();
        // Enough calls per sample for ~20 ms.
        const double t0 = now();
        call();
        const double one = std::max(now() - t0, 1e-6);
        const int inner = std::max(1, static_cast<int>(0.02 / one));
        double best = 1e30;
        for (int r = 0; r < reps; ++r) {
          const double a = now();
          for (int i = 0; i < inner; ++i) call();
          best = std::min(best, (now() - a) / inner);
        }
        const double bytes = static_cast<double>(wb.size());
        std::printf("%s  {\"type\": \"%s\", \"shape\": \"%s\", \"rows\": %lld, \"ms\": %.4f, \"weight_gb_s\": %.2f, "
                    "\"gmac_s\": %.2f%s}",
                    first ? "" : ",\n", troupe::cpu::wtype_name(t), s.what.c_str(), static_cast<long long>(m), best * 1e3,
                    bytes / best * 1e-9, static_cast<double>(m * s.n * s.k) / best * 1e-9,
                    packed ? (", \"pack_ms\": " + std::to_string(pack_ms)).c_str() : "");
        std::fflush(stdout);
        first = false;
      }
    }
  }
  std::printf("\n]}\n");
}
