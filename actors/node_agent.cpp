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
#include "actors/kv_transfer.hpp"
#include "actors/worker.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/model_config.hpp"
#include "runtime/sim_executor.hpp"

namespace troupe {
namespace {

struct started {
  worker_actor worker;
  device_actor device;
  publisher_actor publisher;
  worker_info info;
  bool stopping = false;  // asked to stop; gone at its down message
};

struct node_state {
  static inline const char* name = "troupe.node_agent";
  std::map<std::string, std::shared_ptr<const model_bundle>> models;  // by path
  std::map<std::string, started> workers;                             // by name
  int next_worker = 0;
  actor_meter meter;
  executor_factory factory;  // shares CUDA weights per (model, device) between this node's workers
#if defined(TROUPE_HAVE_CUDA)
  cuda_devices cuda;  // NCCL, for workers with --device cuda
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
  // The agent's end is its node's end: its workers, devices and publishers go with it (so a
  // process, or a test's actor system, can shut down without waiting on orphans).
  self->set_exit_handler([=](const caf::exit_msg& m) {
    for (auto& [name, s] : self->state.workers) {
      self->send_exit(s.worker, m.reason);
      self->send_exit(s.device, m.reason);
      self->send_exit(s.publisher, m.reason);
    }
    self->state.workers.clear();
    self->quit(m.reason);
  });
  return {
      [=](start_atom, const worker_spec& spec) -> caf::result<worker_actor, publisher_actor, worker_info> {
        metered g(self->state.meter);
        if (!kv_transfer::valid_role(spec.role))
          return caf::make_error(caf::sec::runtime_error,
                                 "a worker's role must be aggregated, prefill or decode, not " + spec.role);
        auto model = model_for(self, spec.model_path);
        if (!model.ok()) return caf::make_error(caf::sec::runtime_error, model.message());
        const std::shared_ptr<const model_bundle>& b = *model;
        auto ex = self->state.factory.make_executor(b->weights, spec.model_path, spec.engine);
        if (!ex.ok()) {
          const bool on_cpu = spec.engine.device.empty() || spec.engine.device == "cpu";
          const bool named = ex.message().rfind("--device", 0) == 0;
          return caf::make_error(caf::sec::runtime_error,
                                 on_cpu || named ? ex.message() : "--device " + spec.engine.device + ": " + ex.message());
        }
        std::shared_ptr<executor> shared_ex = *ex;
        const std::string served = spec.served_name.empty() ? b->name : spec.served_name;
        auto eng = make_engine(spec.engine, *shared_ex, b->tok.get(), served, nullptr, b->weights);
        if (!eng.ok()) return caf::make_error(caf::sec::runtime_error, eng.message());
        std::shared_ptr<engine> shared_eng(std::move(*eng));
        const std::string name = fmt::format("{}/w{}", node, self->state.next_worker++);
        device_actor dev;
        if (auto sim = std::dynamic_pointer_cast<sim_executor>(shared_ex))  // a timer, no thread
          dev = spawn_sim_device(self->system(), sim, node, name + "/sim_device");
#if defined(TROUPE_HAVE_CUDA)
        if (auto cuda_ex = std::dynamic_pointer_cast<cuda::cuda_executor>(shared_ex))
          dev = self->state.cuda.spawn(self->system(), cuda_ex, node, name + "/cuda_stream");
#endif
        if (!dev) dev = spawn_device(self->system(), shared_ex, node, name + "/device");
        publisher_actor pub = spawn_kv_publisher(self->system(), node, name + "/kv_publisher");
        // A restarted worker that reuses a name numbers its KV events anew: routers tell the
        // two apart by this.
        const uint64_t instance = std::random_device{}() * 0x9E3779B97F4A7C15ull ^
                                  static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        worker_setup ws{node, name, b, shared_eng, dev, pub, instance,
                        shared_ex->returns_hidden_states() ? "" : shared_ex->describe()};
        ws.role = spec.role;
        ws.unit = spec.unit;
        ws.kv_executor = shared_ex;
        worker_actor w = spawn_worker(self->system(), std::move(ws));
        self->monitor(w);
        worker_info info;
        info.name = name;
        info.node = node;
        info.role = spec.role;
        info.unit = spec.unit;
        info.model = served;
        info.kv_block_size = shared_ex->kv_block_size();
        info.kv_blocks_total = shared_ex->kv_n_blocks();
        info.max_seq_len = shared_eng->config().max_seq_len;
        info.max_batch_size = shared_eng->config().max_batch_size;
        info.hash_salt = shared_eng->block_hash_salt();
        info.instance = instance;
        self->state.workers[name] = {w, dev, pub, info};
        return {w, pub, info};
      },
      [=](stop_atom, const std::string& name) {
        metered g(self->state.meter);
        auto& w = self->state.workers;
        auto it = w.find(name);
        if (it == w.end()) return false;
        it->second.stopping = true;
        self->send(it->second.worker, stop_atom::value);
        return true;
      },
      [=](list_atom) {
        std::vector<agent_worker> out;
        for (const auto& [name, s] : self->state.workers)
          if (!s.stopping) out.push_back({s.worker, s.publisher, s.info});
        return out;
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
