#include "bench/embed_bench.hpp"

#include <chrono>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/cpu_executor.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/model_config.hpp"

namespace troupe::bench {

namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

// One run: `batch` inputs of random tokens submitted at once, stepped until every embedding is
// out. Returns the seconds it took.
result<double> run_once(executor& ex, int batch, int input_tokens, uint64_t seed) {
  const engine_model_info info = model_info_of(ex, nullptr);
  engine_config cfg;
  cfg.prefix_cache = false;  // every run computes every token
  cfg.max_batch_size = std::max(batch, 1);
  cfg.max_num_tokens = std::max(8192, batch);
  TROUPE_TRY(std::unique_ptr<engine> e, engine::create(cfg, info, nullptr));
  std::mt19937_64 rng(seed);
  const auto n_ids = std::min<int64_t>(info.n_vocab, 8000);
  for (int i = 0; i < batch; ++i) {
    request r;
    r.id = std::to_string(i);
    for (int t = 0; t < input_tokens; ++t)
      r.prompt.push_back(static_cast<token_id>(std::uniform_int_distribution<int64_t>(0, n_ids - 1)(rng)));
    r.pool = pooling::mean;
    TROUPE_CHECK(e->add_request(std::move(r)));
  }
  int done = 0;
  const auto t0 = clock_type::now();
  while (e->has_work()) {
    TROUPE_TRY(step_output out, e->step(ex));
    for (const auto& o : out.outputs) done += !o.embedding.empty();
  }
  const double seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  if (done != batch) return make_error(fmt::format("{} of {} embeddings came out", done, batch));
  return seconds;
}

}  // namespace

result<json> run_embed_bench(const embed_bench_options& o) {
  TROUPE_TRY(model_bundle m, load_model(o.model.empty() ? default_model_path() : o.model));
  cpu_executor_options eo;
  eo.n_threads = o.threads > 0 ? o.threads : available_cores();
  eo.kv_block_size = 16;
  eo.kv_cache_bytes = size_t{1} << 30;
  TROUPE_TRY(std::unique_ptr<executor> ex, make_cpu_executor(m.weights, eo));
  if (o.input_tokens > ex->config().max_position)
    return make_error(fmt::format("--input-tokens {} is beyond the model's context of {}", o.input_tokens,
                                  ex->config().max_position));
  json out = {{"model", m.name},
              {"executor", ex->describe()},
              {"pooling", "mean"},
              {"dimensions", ex->config().n_embd},
              {"input_tokens", o.input_tokens},
              {"results", json::array()}};
  for (int batch : o.batches) {
    double best = 0;
    for (int rep = 0; rep < std::max(1, o.reps); ++rep) {
      TROUPE_TRY(double s, run_once(*ex, batch, o.input_tokens, 100 + static_cast<uint64_t>(rep)));
      if (rep == 0 || s < best) best = s;
    }
    out["results"].push_back({{"batch", batch},
                              {"seconds", best},
                              {"embeddings_per_s", batch / best},
                              {"tokens_per_s", static_cast<double>(batch) * o.input_tokens / best}});
  }
  return out;
}

}  // namespace troupe::bench
