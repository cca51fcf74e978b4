#include "cli/cluster.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <cstdlib>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "actors/kv_transfer.hpp"
#include "actors/node_agent.hpp"
#include "cli/command_line.hpp"
#include "config/config.hpp"
#include "config/model_source.hpp"
#include "config/readers.hpp"
#include "kernels/cuda/device_name.hpp"
#include "config/atomic_file.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/progress.hpp"
#include "runtime/sim_executor.hpp"
#if defined(TROUPE_HAVE_CUDA)
#include "kernels/cuda/device.hpp"
#endif

namespace troupe {

void add_worker_flags(CLI::App& app, worker_flags& f, bool model_required) {
  // Not an existing path only: a hub id (org/name) is looked up in the Hugging Face cache.
  auto* m = app.add_option("--model", f.model,
                           "a model directory, a .gguf file, or a hub id (org/name[@revision]) in the local "
                           "Hugging Face cache")
                ->type_name("MODEL")
                ->group(cli::group::model);
  if (model_required) m->required();
  app.add_option("--served-model-name", f.served_name,
                 "the model name clients ask for (default: the config's served_model_name, else the model's name)")
      ->type_name("NAME")
      ->group(cli::group::model);
  app.add_option("--config", f.config, "config.yaml whose trt_llm.runtime settings configure the engines")
      ->type_name("FILE")
      ->check(cli::existing_path())
      ->group(cli::group::engine);
  app.add_option("--workers", f.workers, "engines in this process (they share its cores); with llm_config.is_disaggregated, replication units of prefill and decode workers")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(cli::group::engine);
  app.add_option("--threads", f.threads, "CPU threads per engine; 0: this process's cores shared among its engines")
      ->type_name("N")
      ->check(cli::at_least(0))
      ->group(cli::group::engine);
  app.add_option("--kv-cache-memory", f.kv_cache_memory,
                 "KV cache of the process, shared among its engines; overrides the config's kv_cache_memory "
                 "(default: the config's, else 0.9 of free memory)")
      ->type_name("SIZE")
      ->check(cli::memory_size())
      ->group(cli::group::engine);
  app.add_option("--simulate", f.simulate,
                 "COSTS.json (what `troupe bench engine` prints, or explicit costs): engines whose forward is "
                 "that cost model, for routing at scale (placeholder tokens, real KV events)")
      ->type_name("FILE")
      ->check(cli::existing_path())
      ->group(cli::group::engine);
#if defined(TROUPE_HAVE_CUDA)
  app.add_option("--device", f.device, "where the engines run: the CPU, or CUDA device 0 or N")
#else
  app.add_option("--device", f.device, "where the engines run (this build has no CUDA backend: cpu only)")
#endif
      ->type_name("DEVICE")
      ->check(cli::device_name())
      ->group(cli::group::engine);
}

result<config::resolved_model> resolve_model_arg(const std::string& spec, const std::string& flag) {
  auto r = config::resolve_model(spec, config::hf_cache_from_environment(), ".", "", flag);
  if (!r.ok()) {
    std::string msg = config::format_errors(r.errors);
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return make_error(msg);
  }
  return r.value;
}

result<model_bundle> load_model_showing_progress(const std::string& path, const std::string& name) {
  std::unique_ptr<progress> shown;
  std::string phase;
  open_options o;
  o.read_weights = true;
  o.observer = [&](const load_progress& p) {
    if (p.phase != phase) {
      if (shown) shown->finish();
      phase = p.phase;
      shown = std::make_unique<progress>(fmt::format("loading {}: {}", name, phase), p.total, std::string(p.unit));
    }
    shown->set(p.done);
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto b = load_model(path, o);
  if (shown && b.ok()) shown->finish();
  if (shown && !b.ok()) shown->abandon();
  if (b.ok())
    std::fprintf(stderr, "troupe: loaded %s (%s) in %.1f s\n", name.c_str(), b->weights->describe().c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return b;
}

status check_device(const std::string& device) {
  TROUPE_TRY(const int index, cuda::device_index(device));
  if (index < 0) return {};
#if defined(TROUPE_HAVE_CUDA)
  auto d = cuda::probe_device(index);
  if (!d.ok()) return make_error("--device " + device + ": " + d.message());
  return {};
#else
  return make_error("--device " + device +
                    ": this build of troupe has no CUDA backend (it was configured without nvcc, or with -DTROUPE_CUDA=OFF)");
#endif
}

result<worker_spec> make_worker_spec(const worker_flags& f, const std::string& model_path) {
  config::runtime_settings rt;
  if (f.llm_runtime) {
    rt = *f.llm_runtime;
  } else if (!f.config.empty()) {
    auto cfg = config::load_config_file(f.config);
    if (!cfg.ok()) return make_error(config::format_errors(cfg.errors, f.config + ": "));
    rt = cfg.value.runtime;
  }
  config::kv_cache_memory mem = rt.engine.kv_memory;
  if (!f.kv_cache_memory.empty()) {
    auto m = config::parse_kv_cache_memory(f.kv_cache_memory);
    if (!m) return make_error(fmt::format("--kv-cache-memory must be {}, not {}", config::kv_cache_memory_forms,
                                          f.kv_cache_memory));
    mem = *m;
  }
  if (f.workers < 1) return make_error("--workers must be at least 1");
  worker_spec w;
  w.role = f.worker_role;
  w.model_path = model_path;
  w.served_name = !f.served_name.empty() ? f.served_name : !rt.served_model_name.empty() ? rt.served_model_name : f.model_name;
  engine_spec& s = w.engine;
  // Disaggregated: --workers counts replication units, each of prefill + decode workers.
  const int n_workers = f.prefill_per_unit > 0 ? f.workers * (f.prefill_per_unit + f.decode_per_unit) : f.workers;
  s.threads = f.threads > 0 ? f.threads : std::max(1, available_cores() / n_workers);
  TROUPE_TRY(const int device, cuda::device_index(f.device));
  s.device = f.device;
  if (device >= 0 && mem.kind == config::kv_cache_memory::unit::fraction) {
    // On a GPU the fraction is of device memory, known once the weights are there.
    s.kv_cache_bytes = 0;
    s.kv_cache_fraction = mem.fraction / n_workers;
  } else {
    const double total = mem.kind == config::kv_cache_memory::unit::bytes
                             ? static_cast<double>(mem.bytes)
                             : mem.fraction * static_cast<double>(available_memory_bytes());
    s.kv_cache_bytes = static_cast<int64_t>(total / n_workers);
  }
  apply_engine_settings(w, rt.engine);
  if (f.speculative) TROUPE_CHECK(apply_speculative_settings(w, *f.speculative));
  if (!f.simulate.empty()) {
    TROUPE_TRY(s.simulate, config::read_file(f.simulate));
    auto costs = parse_sim_costs(s.simulate);
    if (!costs.ok()) return make_error("--simulate " + f.simulate + ": " + costs.message());
  }
  return w;
}

void apply_engine_settings(worker_spec& w, const config::engine_settings& e) {
  engine_spec& s = w.engine;
  s.kv_block_size = static_cast<int32_t>(e.kv_block_size);
  s.max_batch_size = static_cast<int32_t>(e.max_batch_size);
  s.max_num_tokens = static_cast<int32_t>(e.max_num_tokens);
  s.max_seq_len = static_cast<int32_t>(e.max_seq_len);
  s.enable_chunked_prefill = e.enable_chunked_prefill;
  s.hybrid_prefill = e.prefill == config::prefill_mode::hybrid;
  s.prefix_cache = e.prefix_cache == config::prefix_cache_mode::radix;
  s.max_recycling_seqs = e.prefix_cache_max_num_recycling_seqs;
}

status apply_speculative_settings(worker_spec& w, const config::speculative_settings& s) {
  if (auto refused = config::unbuilt_decoding_type(s)) return make_error(refused->message);
  if (auto missing = config::mtp_layers_missing(s, w.model_path)) return make_error(missing->message);
  if (auto unfit = config::eagle_head_unfit(s, w.model_path)) return make_error(unfit->message);
  engine_spec& e = w.engine;
  if (s.eagle3_one_model.value_or(false) && !e.device.empty() && e.device != "cpu")
    return make_error(fmt::format("llm_config.speculative_config.eagle3_one_model: true runs the Eagle-3 head inside "
                                  "the target's forward, which only the CPU executor does (--device is {}); set "
                                  "eagle3_one_model to false (the head then runs as its own model after each step)",
                                  e.device));
  e.decoding_type = s.type == config::decoding_type::mtp            ? "MTP"
                    : s.type == config::decoding_type::draft_target ? "DraftTarget"
                    : s.type == config::decoding_type::eagle        ? "Eagle"
                                                                    : "NGram";
  e.num_nextn_predict_layers = s.num_nextn_predict_layers.value_or(0);
  e.speculative_model_dir = s.speculative_model_dir;
  e.eagle3_one_model = s.eagle3_one_model.value_or(false);
  e.max_draft_len = static_cast<int32_t>(s.max_draft_len.value_or(0));
  e.spec_draft_length = static_cast<int32_t>(s.spec_draft_length.value_or(-1));
  e.spec_tree_width = static_cast<int32_t>(s.spec_tree_width.value_or(1));
  e.max_matching_ngram_size = static_cast<int32_t>(s.max_matching_ngram_size.value_or(0));
  e.min_matching_ngram_size = static_cast<int32_t>(s.min_matching_ngram_size.value_or(0));
  return {};
}

result<std::vector<started_worker>> start_workers(caf::actor_system& sys, const node_agent_actor& agent,
                                                  const router_actor& router, const worker_spec& spec, int n) {
  caf::scoped_actor self{sys};
  std::vector<started_worker> out;
  for (int i = 0; i < n; ++i) {
    std::string err;
    self->request(agent, std::chrono::minutes(5), start_atom::value, spec)
        .receive(
            [&](worker_actor& w, publisher_actor& p, worker_info& info) {
              self->request(router, std::chrono::seconds(30), register_atom::value, w, p, info)
                  .receive([&](bool) { out.push_back({w, p, info}); },
                           [&](caf::error& e) { err = "registering with the router: " + sys.render(e); });
            },
            [&](caf::error& e) { err = sys.render(e); });
    if (!err.empty()) return make_error("starting a worker for " + spec.model_path + ": " + err);
  }
  return out;
}

result<std::vector<started_worker>> start_units(caf::actor_system& sys, const node_agent_actor& agent,
                                                const router_actor& router, worker_spec spec, int units,
                                                int prefill_per_unit, int decode_per_unit) {
  if (prefill_per_unit <= 0) return start_workers(sys, agent, router, spec, units);
  std::vector<started_worker> out;
  for (int u = 0; u < units; ++u) {
    spec.unit = u;
    for (auto [role, n] : {std::pair{kv_transfer::kPrefill, prefill_per_unit}, {kv_transfer::kDecode, decode_per_unit}}) {
      spec.role = role;
      TROUPE_TRY(std::vector<started_worker> w, start_workers(sys, agent, router, spec, n));
      out.insert(out.end(), w.begin(), w.end());
    }
  }
  return out;
}

namespace {
// SIGINT and SIGTERM write a byte here; whichever thread the kernel picks (libraries such as
// OpenBLAS start threads before main, with no say in their signal masks) only wakes the waiter.
int stop_pipe[2] = {-1, -1};

void on_stop_signal(int) {
  const char c = 1;
  [[maybe_unused]] ssize_t n = write(stop_pipe[1], &c, 1);
}
}  // namespace

void block_stop_signals() {
  if (stop_pipe[0] >= 0) return;
  if (pipe(stop_pipe) != 0) return;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int wait_for_stop_signal() {
  char c = 0;
  while (read(stop_pipe[0], &c, 1) < 0 && errno == EINTR) {
  }
  return c;
}

std::string default_node_name() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return fmt::format("{}-{}", host, getpid());
}

}  // namespace troupe
