#include "bench/structured_bench.hpp"

#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/structured/constraint_spec.hpp"
#include "runtime/text/tokenizer.hpp"

namespace troupe::bench {

namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

// An array of records that must hold more items than max_tokens can write, so that constrained
// and free sequences generate the same number of tokens; it has the usual pieces (keys, short
// strings, bounded integers, an enum, a nested array).
const char* k_schema = R"({"type": "array", "minItems": 200, "items": {"type": "object", "properties": {
    "id": {"type": "integer", "minimum": 0, "maximum": 100000},
    "name": {"type": "string", "maxLength": 16},
    "kind": {"enum": ["function", "class", "module"]},
    "lines": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9999}, "maxItems": 4}},
  "required": ["id", "name", "kind", "lines"], "additionalProperties": false}})";

// Forwards to a constraint and adds up the time spent in it.
class timed_constraint final : public token_constraint {
 public:
  timed_constraint(std::shared_ptr<token_constraint> c, double& seconds, int64_t& masks)
      : c_(std::move(c)), seconds_(seconds), masks_(masks) {}
  void mask_logits(std::span<float> logits) override {
    const auto t0 = clock_type::now();
    c_->mask_logits(logits);
    seconds_ += std::chrono::duration<double>(clock_type::now() - t0).count();
    ++masks_;
  }
  bool allows(token_id t) override { return c_->allows(t); }
  bool accept(token_id t) override {
    const auto t0 = clock_type::now();
    const bool ok = c_->accept(t);
    seconds_ += std::chrono::duration<double>(clock_type::now() - t0).count();
    return ok;
  }
  bool finished() const override { return c_->finished(); }
  size_t allowed_prefix(std::span<const token_id> d) override { return c_->allowed_prefix(d); }
  void rollback(size_t n) override { c_->rollback(n); }

 private:
  std::shared_ptr<token_constraint> c_;
  double& seconds_;
  int64_t& masks_;
};

struct run_figures {
  int64_t tokens = 0;
  double seconds = 0;
  double constraint_seconds = 0;
  int64_t masks = 0;
  int64_t finished_early = 0;  // sequences that ended before max_tokens
};

result<run_figures> run_once(executor& ex, const model_bundle& m, structured::constraint_factory* f, int batch,
                             int max_tokens, uint64_t seed0) {
  const engine_model_info info = model_info_of(ex, m.tok.get());
  engine_config cfg;
  cfg.prefix_cache = false;  // every run pays the same prefill
  TROUPE_TRY(std::unique_ptr<engine> e, engine::create(cfg, info, m.tok.get()));
  run_figures fig;
  const std::string spec = structured::json_schema_spec(nlohmann::ordered_json::parse(k_schema));
  for (int i = 0; i < batch; ++i) {
    request r;
    r.id = std::to_string(i);
    r.prompt = m.tok->encode(fmt::format("# symbols of module {} as JSON\nsymbols = ", i), true, false);
    r.params.temperature = 1.0f;
    r.params.seed = seed0 + static_cast<uint64_t>(i);
    r.params.max_tokens = max_tokens;
    r.params.ignore_eos = true;
    if (f) {
      TROUPE_TRY(std::shared_ptr<token_constraint> c, f->make(spec));
      r.constraint = std::make_shared<timed_constraint>(std::move(c), fig.constraint_seconds, fig.masks);
    }
    TROUPE_CHECK(e->add_request(std::move(r)));
  }
  const auto t0 = clock_type::now();
  while (e->has_work()) {
    TROUPE_TRY(step_output out, e->step(ex));
    for (const auto& o : out.outputs) {
      fig.tokens += static_cast<int64_t>(o.tokens.size());
      if (o.finished && o.use.completion_tokens < max_tokens) ++fig.finished_early;
    }
  }
  fig.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  return fig;
}

}  // namespace

result<json> run_structured_bench(const structured_bench_options& o) {
  TROUPE_TRY(text_model tm, load_text_model(o.model, o.threads, "constrained decoding needs one"));
  const model_bundle& m = *tm.bundle;
  executor* ex = tm.ex.get();
  const engine_model_info info = model_info_of(*ex, m.tok.get());
  json out = {{"model", m.name}, {"executor", ex->describe()}, {"max_tokens", o.max_tokens},
              {"schema", json::parse(k_schema)}, {"results", json::array()}};
  for (int batch : o.batches) {
    if (batch * o.max_tokens > info.max_position * 64) return make_error("the batch does not fit the KV cache");
    // One factory per batch size: its first run compiles the schema and fills the mask
    // cache as a server's would; the best run is reported.
    structured::constraint_factory f(structured::vocab_index::of(*m.tok, info.eos_ids, info.n_vocab));
    run_figures best_plain, best_schema;
    for (int rep = 0; rep < std::max(1, o.reps); ++rep) {
      TROUPE_TRY(run_figures p, run_once(*ex, m, nullptr, batch, o.max_tokens, 100));
      TROUPE_TRY(run_figures s, run_once(*ex, m, &f, batch, o.max_tokens, 100));
      if (rep == 0 || p.seconds < best_plain.seconds) best_plain = p;
      if (rep == 0 || s.seconds < best_schema.seconds) best_schema = s;
    }
    const double tps_plain = static_cast<double>(best_plain.tokens) / best_plain.seconds;
    const double tps_schema = static_cast<double>(best_schema.tokens) / best_schema.seconds;
    const structured::mask_stats ms = f.stats();
    out["results"].push_back(
        {{"batch", batch},
         {"tokens_per_s_plain", tps_plain},
         {"tokens_per_s_schema", tps_schema},
         {"schema_vs_plain", tps_schema / tps_plain},
         {"constraint_us_per_token", best_schema.masks ? best_schema.constraint_seconds * 1e6 / static_cast<double>(best_schema.masks) : 0.0},
         {"constraint_share_of_time", best_schema.constraint_seconds / best_schema.seconds},
         {"masks_asked", ms.masks},
         {"masks_computed", ms.computed},
         {"mask_compute_ms_mean", ms.computed ? ms.compute_seconds * 1e3 / static_cast<double>(ms.computed) : 0.0},
         {"sequences_ended_early", best_schema.finished_early}});
  }
  return out;
}

}  // namespace troupe::bench
