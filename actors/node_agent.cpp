#include "actors/node_agent.hpp"

#include <fstream>
#include <map>
#include <memory>
#include <random>

#include <fmt/format.h>

#include "actors/device.hpp"
#if defined(TROUPE_HAVE_CUDA)
#include "actors/cuda_stream.hpp"
#include "kernels/cuda/cuda_executor.hpp"
#endif
#include "actors/kv_publisher.hpp"
#include "actors/worker.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/cpu_executor.hpp"
#include "runtime/engine.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/model_config.hpp"
#include "runtime/sim_executor.hpp"

namespace troupe {
namespace {

struct started {
  worker_actor worker;
  device_actor device;
  publisher_actor publisher;
};

struct node_state {
  static inline const char* name = "troupe.node_agent";
  std::map<std::string, std::shared_ptr<const model_bundle>> models;  // by path
  std::map<std::string, started> workers;                             // by name
  int next_worker = 0;
  actor_meter meter;
#if defined(TROUPE_HAVE_CUDA)
  cuda_devices cuda;  // weights per (model, device) and NCCL, for workers with --device cuda
#endif
};

using self_ptr = node_agent_actor::stateful_pointer<node_state>;

result<std::shared_ptr<const model_bundle>> model_for(self_ptr self, const std::string& path) {
  auto& models = self->state.models;
  if (auto it = models.find(path); it != models.end()) return it->second;
  TROUPE_TRY(model_bundle b, load_model(path));
  auto shared = std::make_shared<const model_bundle>(std::move(b));
  models[path] = shared;
  return shared;
}

}  // namespace

size_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  size_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

namespace {

node_agent_actor::behavior_type node_fn(self_ptr self, std::string node,
                                        std::map<std::string, std::shared_ptr<const model_bundle>> preloaded) {
  self->state.meter = {node, node + "/node_agent", "node_agent", 0, 0};
  self->state.models = std::move(preloaded);
  self->set_down_handler([=](const caf::down_msg& m) {
    auto& w = self->state.workers;
    for (auto it = w.begin(); it != w.end(); ++it)
      if (it->second.worker.address() == m.source) {
        self->send_exit(it->second.device, caf::exit_reason::user_shutdown);
        self->send_exit(it->second.publisher, caf::exit_reason::user_shutdown);
        w.erase(it);
        break;
      }
  });
  return {
      [=](start_atom, const worker_spec& spec) -> caf::result<worker_actor, publisher_actor, worker_info> {
        metered g(self->state.meter);
        auto model = model_for(self, spec.model_path);
        if (!model.ok()) return caf::make_error(caf::sec::runtime_error, model.message());
        const std::shared_ptr<const model_bundle>& b = *model;
        std::shared_ptr<executor> shared_ex;
        std::shared_ptr<sim_executor> sim_ex;
#if defined(TROUPE_HAVE_CUDA)
        std::shared_ptr<cuda::cuda_executor> cuda_ex;
#endif
        if (!spec.simulate.empty()) {
          // A cost model instead of the forward: no weights read, no KV memory.
          auto costs = parse_sim_costs(spec.simulate);
          if (!costs.ok()) return caf::make_error(caf::sec::runtime_error, "--simulate: " + costs.message());
          const model_config& mc = b->weights->config();
          const int64_t bytes = spec.kv_cache_bytes > 0 ? spec.kv_cache_bytes : int64_t{512} << 20;
          const auto n_blocks = static_cast<int32_t>(
              std::min<int64_t>(INT32_MAX, bytes / static_cast<int64_t>(sim_executor::bytes_per_block(mc, spec.kv_block_size))));
          sim_ex = std::make_shared<sim_executor>(mc, std::move(*costs), spec.kv_block_size, n_blocks);
          shared_ex = sim_ex;
        } else if (spec.device.empty() || spec.device == "cpu") {
          cpu_executor_options eo;
          eo.n_threads = spec.threads;
          eo.kv_block_size = spec.kv_block_size;
          eo.kv_cache_bytes = static_cast<size_t>(spec.kv_cache_bytes > 0 ? spec.kv_cache_bytes : int64_t{512} << 20);
          auto ex = make_cpu_executor(b->weights, eo);
          if (!ex.ok()) return caf::make_error(caf::sec::runtime_error, ex.message());
          shared_ex = std::move(*ex);
        } else {
#if defined(TROUPE_HAVE_CUDA)
          auto ex = self->state.cuda.executor_for(b->weights, spec);
          if (!ex.ok()) return caf::make_error(caf::sec::runtime_error, "--device " + spec.device + ": " + ex.message());
          cuda_ex = *ex;
          shared_ex = cuda_ex;
#else
          return caf::make_error(caf::sec::runtime_error,
                                 "--device " + spec.device + ": this build of troupe has no CUDA backend");
#endif
        }
        const std::string served = spec.served_name.empty() ? b->name : spec.served_name;
        engine_config ec;
        ec.max_batch_size = spec.max_batch_size;
        ec.max_num_tokens = spec.max_num_tokens;
        ec.max_seq_len = spec.max_seq_len;
        ec.enable_chunked_prefill = spec.enable_chunked_prefill;
        ec.prefill = spec.hybrid_prefill ? prefill_mode::hybrid : prefill_mode::chunked;
        ec.prefix_cache = spec.prefix_cache;
        ec.prefix_cache_max_num_recycling_seqs = spec.max_recycling_seqs;
        ec.model_identity = served;
        auto eng = engine::create(ec, model_info_of(*shared_ex, b->tok.get()), b->tok.get());
        if (!eng.ok()) return caf::make_error(caf::sec::runtime_error, eng.message());
        std::shared_ptr<engine> shared_eng(std::move(*eng));
        const std::string name = fmt::format("{}/w{}", node, self->state.next_worker++);
        device_actor dev =
            sim_ex ? spawn_sim_device(self->system(), sim_ex, node, name + "/sim_device") :
#if defined(TROUPE_HAVE_CUDA)
            cuda_ex ? self->state.cuda.spawn(self->system(), cuda_ex, node, name + "/cuda_stream") :
#endif
                    spawn_device(self->system(), shared_ex, node, name + "/device");
        publisher_actor pub = spawn_kv_publisher(self->system(), node, name + "/kv_publisher");
        // A restarted worker that reuses a name numbers its KV events anew: routers tell the
        // two apart by this.
        const uint64_t instance = std::random_device{}() * 0x9E3779B97F4A7C15ull ^
                                  static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        worker_actor w = spawn_worker(self->system(), {node, name, b, shared_eng, dev, pub, instance});
        self->monitor(w);
        self->state.workers[name] = {w, dev, pub};
        worker_info info;
        info.name = name;
        info.node = node;
        info.model = served;
        info.kv_block_size = shared_ex->kv_block_size();
        info.kv_blocks_total = shared_ex->kv_n_blocks();
        info.max_seq_len = shared_eng->config().max_seq_len;
        info.max_batch_size = shared_eng->config().max_batch_size;
        info.hash_salt = shared_eng->block_hash_salt();
        info.instance = instance;
        return {w, pub, info};
      },
      [=](stop_atom, const std::string& name) {
        metered g(self->state.meter);
        auto& w = self->state.workers;
        auto it = w.find(name);
        if (it == w.end()) return false;
        self->send(it->second.worker, stop_atom::value);
        return true;
      },
      [=](metrics_atom) -> caf::result<std::vector<actor_stats>> {
        auto rp = self->make_response_promise<std::vector<actor_stats>>();
        auto all = std::make_shared<std::vector<actor_stats>>();
        all->push_back(make_stats(self->state.meter, self->mailbox().size()));
        auto pending = std::make_shared<size_t>(self->state.workers.size() * 3);
        if (*pending == 0) {
          rp.deliver(*all);
          return rp;
        }
        auto collect = [=](actor_stats st) mutable {
          all->push_back(std::move(st));
          if (--*pending == 0) rp.deliver(*all);
        };
        auto skip = [=](caf::error&) mutable {
          if (--*pending == 0) rp.deliver(*all);
        };
        const auto timeout = std::chrono::seconds(5);
        for (auto& [name, s] : self->state.workers) {
          self->request(s.worker, timeout, metrics_atom::value).then(collect, skip);
          self->request(s.device, timeout, metrics_atom::value).then(collect, skip);
          self->request(s.publisher, timeout, metrics_atom::value).then(collect, skip);
        }
        return rp;
      },
  };
}

}  // namespace

node_agent_actor spawn_node_agent(caf::actor_system& sys, std::string node,
                                  std::map<std::string, std::shared_ptr<const model_bundle>> preloaded) {
  return sys.spawn<caf::detached>(node_fn, std::move(node), std::move(preloaded));
}

}  // namespace troupe
