// cluster: what `troupe serve` and `troupe node` share: settings from flags and config.yaml,
// the actor system, starting workers through a node agent and registering them with a
// router, and waiting for a stop signal.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "actors/protocol.hpp"
#include "runtime/result.hpp"

namespace CLI {
class App;
}

namespace troupe {

namespace config {
struct engine_settings;
struct runtime_settings;
struct resolved_model;
struct speculative_settings;
}

struct model_bundle;
class model_registry;

// Flags that shape the workers of a process.
struct worker_flags {
  std::string model;             // a model directory or .gguf (settle_start resolves a hub id to one)
  std::string model_name;        // what the model serves as unless configured ("" = its directory name)
  std::string config;            // config.yaml: trt_llm.runtime engine settings
  int workers = 1;
  int threads = 0;               // per worker; 0: this process's cores shared among its workers
  std::string kv_cache_memory;   // overrides the config: bytes ("2GiB", "512MiB", 1073741824) or a fraction ("0.5")
  std::string served_name;       // overrides the config's served_model_name
  std::string device = "cpu";    // cpu, cuda or cuda:N (cuda only in builds with the CUDA backend)
  std::string simulate;          // COSTS.json: simulated engines (runtime/sim_executor.hpp)
  // --llm-config's runtime block, when it has one: it replaces the config's trt_llm.runtime.
  std::shared_ptr<const config::runtime_settings> llm_runtime;
  // The llm_config's speculative_config (--llm-config's, else config.yaml's); null: none.
  std::shared_ptr<const config::speculative_settings> speculative;
  // Disaggregated serving (llm_config.is_disaggregated): prefill and decode workers per
  // replication unit; 0: aggregated workers. `troupe node --role worker --worker-role R`: the
  // role of the workers this node starts.
  int prefill_per_unit = 0;
  int decode_per_unit = 0;
  std::string worker_role = "aggregated";
};
void add_worker_flags(CLI::App& app, worker_flags& f, bool model_required);

// A --model value (a directory, a .gguf file, or a hub id org/name[@revision] from the local
// Hugging Face cache: config/model_source.hpp) resolved to what to load. The error names the
// flag and says where it looked.
[[nodiscard]] result<config::resolved_model> resolve_model_arg(const std::string& spec, const std::string& flag = "--model");

// load_model with its progress on stderr, each phase a bar on a terminal or plain lines
// ("loading NAME: reading weights: 40% (2.1/5.3 GiB)"); the weights are read in.
[[nodiscard]] result<model_bundle> load_model_showing_progress(const std::string& path, const std::string& name);

// Whether --device names something this build and machine have: ok for cpu; for cuda, the
// device must exist ("no CUDA device: cudaGetDeviceCount failed: ..." otherwise). Commands
// call it first, so that they fail at once and say why.
[[nodiscard]] status check_device(const std::string& device);

// The spec each worker of this process is started with.
[[nodiscard]] result<worker_spec> make_worker_spec(const worker_flags& f, const std::string& model_path);

// The engine settings of a config (trt_llm.runtime, or a deployment's) onto a worker spec.
void apply_engine_settings(worker_spec& spec, const config::engine_settings& engine);

// A speculative_config onto a worker spec; a decoding type whose drafter troupe has not built
// is refused, naming the field.
[[nodiscard]] status apply_speculative_settings(worker_spec& spec, const config::speculative_settings& s);

// A worker a node started: what registering it with a router takes.
struct started_worker {
  worker_actor worker;
  publisher_actor publisher;
  worker_info info;
};

// Starts n workers through the node agent and registers each with the router.
[[nodiscard]] result<std::vector<started_worker>> start_workers(caf::actor_system& sys, const node_agent_actor& agent,
                                                                const router_actor& router, const worker_spec& spec,
                                                                int n);

// Starts `units` replication units through the node agent, each registered with the router:
// with prefill_per_unit > 0, prefill_per_unit prefill and decode_per_unit decode workers per
// unit (actors/kv_transfer.hpp); else one worker of spec's role per unit.
[[nodiscard]] result<std::vector<started_worker>> start_units(caf::actor_system& sys, const node_agent_actor& agent,
                                                              const router_actor& router, worker_spec spec, int units,
                                                              int prefill_per_unit, int decode_per_unit);

// Catches SIGINT and SIGTERM (call first); wait_for_stop_signal returns at the next one.
void block_stop_signals();
int wait_for_stop_signal();

std::string default_node_name();

}  // namespace troupe
