#include "cli/cmd_serve.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <optional>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>
#include <caf/io/all.hpp>
#include <fmt/format.h>

#include "actors/autoscaler.hpp"
#include "actors/frontend.hpp"
#include "actors/metrics.hpp"
#include "actors/node_agent.hpp"
#include "actors/router.hpp"
#include "actors/snapshotter.hpp"
#include "cli/cluster.hpp"
#include "cli/serve_config.hpp"
#include "cli/command_line.hpp"
#include "config/checkpoint.hpp"
#include "config/config.hpp"
#include "config/deployment_store.hpp"
#include "config/feature_status.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/model_config.hpp"

using namespace troupe;

namespace {

struct control_flags {
  std::string host = "0.0.0.0";
  int port = 8000;
  std::string api_key;
  std::string state_dir;
  int max_in_flight = 512;
  double drain_timeout_s = 30;
  std::string routing = "kv";
  std::string llm_config;
  double snapshot_interval_s = 30;
  int router_queue = 1024;
  int routers = 1;
};

void add_control_flags(CLI::App& app, control_flags& f) {
  app.add_option("--host", f.host, "address the HTTP server listens on")->type_name("HOST")->group(cli::group::server);
  app.add_option("--port", f.port, "HTTP port; 0: any free port")
      ->type_name("PORT")
      ->check(cli::between(0, 65535))
      ->group(cli::group::server);
  app.add_option("--api-key", f.api_key, "require 'Authorization: Bearer KEY' on /v1/*")
      ->type_name("KEY")
      ->envname("TROUPE_API_KEY")
      ->group(cli::group::server);
  app.add_option("--state-dir", f.state_dir,
                 "where the management API (/v1/llm_models) keeps its deployments and the router its KV index "
                 "snapshots; without it both are off")
      ->type_name("DIR")
      ->group(cli::group::server);
  app.add_option("--max-in-flight", f.max_in_flight, "HTTP requests served at once; more get 429")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(cli::group::server);
  app.add_option("--drain-timeout", f.drain_timeout_s, "on SIGTERM, seconds to let requests in flight finish")
      ->type_name("SECONDS")
      ->check(cli::at_least(0))
      ->group(cli::group::server);
  app.add_option("--routing", f.routing, "how the router picks a worker")
      ->type_name("POLICY")
      ->check(cli::one_of({"kv", "least-loaded", "round-robin", "random"}))
      ->group(cli::group::cluster);
  app.add_option("--llm-config", f.llm_config,
                 "an llm_config block, JSON or YAML, with POST /v1/llm_models's schema: its b10_routing_config "
                 "configures the router, its runtime the engines, its speculative_config (NGram, MTP, Eagle or DraftTarget) their drafter, its "
                 "is_disaggregated / b10_disagg_config replication units of prefill and decode workers, its "
                 "autoscaling_settings the model's autoscaler; features not active yet are refused")
      ->type_name("FILE")
      ->check(cli::existing_path())
      ->group(cli::group::cluster);
  app.add_option("--snapshot-interval", f.snapshot_interval_s, "seconds between the router's KV index snapshots (with --state-dir)")
      ->type_name("SECONDS")
      ->check(cli::above(0))
      ->group(cli::group::cluster);
  app.add_option("--router-queue", f.router_queue,
                 "requests a router holds per model while every worker is saturated; more get 429")
      ->type_name("N")
      ->check(cli::at_least(0))
      ->group(cli::group::cluster);
  app.add_option("--routers", f.routers, "router replicas in this process; they share their in-flight decisions")
      ->type_name("N")
      ->check(cli::between(1, 64))
      ->group(cli::group::cluster);
}

// What the command line gave explicitly (it wins over --config), after parsing.
// A --model that names nothing is a wrong command line (exit 2), as a wrong path was before
// hub ids: checked here, where the parser can say so; settle_start resolves it for use.
std::optional<int> check_model_flag(const CLI::App& app, const worker_flags& wf) {
  if (app.count("--model") == 0) return std::nullopt;
  auto m = resolve_model_arg(wf.model);
  if (m.ok()) return std::nullopt;
  return cli::usage_error(app, m.message());
}

flags_given given_flags(const CLI::App& app, bool strict_config) {
  flags_given g;
  g.model = app.count("--model") > 0;
  g.served_name = app.count("--served-model-name") > 0;
  g.kv_cache_memory = app.count("--kv-cache-memory") > 0;
  g.threads = app.count("--threads") > 0;
  g.device = app.count("--device") > 0;
  g.strict_config = strict_config;
  return g;
}

void add_strict_config_flag(CLI::App& app, bool& strict) {
  app.add_flag("--strict-config", strict,
               "refuse to start when a field of --config would not take effect here (instead of a warning)")
      ->group(cli::group::engine);
}

struct node_plan {
  std::string node;
  bool control = false;     // router + HTTP frontend here
  bool workers = false;     // engines here
  int listen = 0;           // publish the router at this port
  std::string join;         // host:port of the control node's router
  std::vector<std::string> peers;  // other control nodes' routers (host:port)
};

// Ends the process: once the actor system runs, returning would wait in its destructor for
// actors that never quit on their own (an autoscaler's ticks, a router's timers), so a node
// that cannot listen would hang instead of exiting. Nothing is left to flush but stdio.
[[noreturn]] int fail(const std::string& what, const std::string& msg) {
  std::fprintf(stderr, "troupe %s: %s\n", what.c_str(), msg.c_str());
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(1);
}

// A remote router at HOST:PORT; tries `attempts` times, half a second apart (0: until stop).
result<router_actor> connect_router(caf::actor_system& sys, const std::string& where, int attempts,
                                    const std::atomic<bool>* stop = nullptr) {
  const size_t colon = where.rfind(':');
  if (colon == std::string::npos) return make_error("expected HOST:PORT, not " + where);
  const std::string host = where.substr(0, colon);
  const int port = std::atoi(where.c_str() + colon + 1);
  if (port <= 0 || port > 65535) return make_error("expected HOST:PORT, not " + where);
  std::string last;
  for (int attempt = 0; attempts == 0 || attempt < attempts; ++attempt) {
    if (stop && *stop) return make_error("stopping");
    auto r = sys.middleman().remote_actor<router_actor>(host, static_cast<uint16_t>(port));
    if (r) return *r;
    last = sys.render(r.error());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return make_error(fmt::format("cannot reach the router at {}: {}", where, last));
}

// Registers this node's agent and workers with a router.
status register_node(caf::actor_system& sys, const router_actor& router, const node_agent_actor& agent,
                     const std::string& node, const std::vector<started_worker>& workers) {
  caf::scoped_actor self{sys};
  std::string err;
  self->request(router, std::chrono::seconds(30), register_atom::value, agent, node)
      .receive([](bool) {}, [&](caf::error& e) { err = sys.render(e); });
  for (const started_worker& w : workers) {
    if (!err.empty()) break;
    self->request(router, std::chrono::seconds(30), register_atom::value, w.worker, w.publisher, w.info)
        .receive([](bool) {}, [&](caf::error& e) { err = sys.render(e); });
  }
  if (!err.empty()) return make_error("registering with the router: " + err);
  return {};
}

// Every worker a node agent runs (those it was asked to stop left out): those the node started
// itself and those an autoscaler started on it.
result<std::vector<started_worker>> agent_workers(caf::actor_system& sys, const node_agent_actor& agent) {
  caf::scoped_actor self{sys};
  std::vector<started_worker> out;
  std::string err;
  self->request(agent, std::chrono::seconds(30), list_atom::value)
      .receive(
          [&](std::vector<agent_worker>& ws) {
            for (auto& w : ws) out.push_back({std::move(w.worker), std::move(w.publisher), std::move(w.info)});
          },
          [&](caf::error& e) { err = sys.render(e); });
  if (!err.empty()) return make_error("listing this node's workers: " + err);
  return out;
}

// A worker node's link to its control node: it survives the control node's loss and, when
// the control node comes back (restarted, with its snapshot), registers again, so that the
// engines and their caches keep serving.
class control_link {
 public:
  // Notices the router's loss: a down message when CAF reports the connection gone, or a
  // heartbeat (a list request every second) that fails or goes unanswered for 3 s, since a
  // node that connected to the router does not always hear of the connection's end.
  void watch(caf::actor_system& sys, const router_actor& router) {
    using beat_atom = caf::atom_constant<caf::atom("beat")>;
    sys.spawn([this, router](caf::event_based_actor* self) -> caf::behavior {
      auto lost = [this, self] {
        {
          std::lock_guard<std::mutex> lock(mu_);
          lost_ = true;
        }
        cv_.notify_all();
        self->quit();
      };
      self->monitor(router);
      self->set_down_handler([lost](const caf::down_msg&) { lost(); });
      self->send(self, beat_atom::value);
      return {[=](beat_atom) {
        self->request(router, std::chrono::seconds(3), list_atom::value)
            .then([=](const std::vector<worker_info>&) { self->delayed_send(self, std::chrono::seconds(1), beat_atom::value); },
                  [=](caf::error&) { lost(); });
      }};
    });
  }
  // Blocks until the control node is lost (true) or stop() (false).
  bool wait_lost() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return lost_ || stop_; });
    const bool lost = lost_ && !stop_;
    lost_ = false;
    return lost;
  }
  void stop() {
    stopping = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
  }
  std::atomic<bool> stopping{false};

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool lost_ = false, stop_ = false;
};

// --llm-config: validated as POST /v1/llm_models validates it; fields whose feature has not
// landed, and decoding types whose drafter has not, are refused, naming the field (never
// stored silently).
result<config::llm_config_file> load_llm_config(const std::string& path) {
  auto l = config::load_llm_config_file(path);
  if (!l.ok()) return make_error("--llm-config " + path + ":\n" + config::format_errors(l.errors, "  "));
  if (l.value.config.llm.speculative)
    if (auto refused = config::unbuilt_decoding_type(*l.value.config.llm.speculative))
      return make_error("--llm-config " + path + ": " + refused->message);
  for (const std::string& field : l.value.present)
    if (const auto* f = config::find_feature(field); f && f->state == config::feature_state::stored)
      return make_error(fmt::format("--llm-config {}: llm_config.{} configures {}, which troupe does not do yet; remove "
                                    "it (POST /v1/llm_models stores it, not yet active, for when it lands)",
                                    path, field, f->feature));
  return std::move(l.value);
}

routing_config to_routing(const config::routing_settings& r, const std::string& model) {
  routing_config c;
  c.model = model;
  c.queue_policy = r.router_queue_policy == config::queue_policy::wspt ? queue_order::wspt : queue_order::fcfs;
  c.overlap_score_weight = r.router_overlap_score_weight;
  c.temperature = r.router_temperature;
  return c;
}

void configure_routers(caf::actor_system& sys, const std::vector<router_actor>& routers, const routing_config& c) {
  caf::scoped_actor self{sys};
  for (const auto& r : routers)
    self->request(r, std::chrono::seconds(10), configure_atom::value, c).receive([](bool) {}, [](caf::error&) {});
}

// The autoscaler of one model; with no agents given, it starts workers through the agents of
// the worker nodes registered with the router (a control node's).
autoscaler_actor start_autoscaler(caf::actor_system& sys, const std::string& node, const std::string& model,
                                  const worker_spec& spec, const config::autoscaling_settings& a,
                                  const std::vector<router_actor>& routers,
                                  std::vector<std::pair<std::string, node_agent_actor>> agents,
                                  int prefill_per_unit = 0, int decode_per_unit = 0) {
  autoscaler_options o;
  // Disaggregated: it scales replication units of prefill_per_unit + decode_per_unit workers.
  o.prefill_per_unit = prefill_per_unit;
  o.decode_per_unit = decode_per_unit;
  o.node = node;
  o.model = model;
  o.spec = spec;
  o.settings = to_rule_settings(a);
  o.routers = routers;
  o.agents_from_router = agents.empty();
  o.control_node = node;
  o.agents = std::move(agents);
  std::fprintf(stderr,
               "troupe: autoscaling %s: target_in_flight_tokens %lld, replicas %lld to %lld, scale_up_delay %llds, "
               "scale_down_delay %llds, autoscaling_window %llds\n",
               model.c_str(), static_cast<long long>(a.target_in_flight_tokens), static_cast<long long>(a.min_replica),
               static_cast<long long>(a.max_replica), static_cast<long long>(a.scale_up_delay),
               static_cast<long long>(a.scale_down_delay), static_cast<long long>(a.autoscaling_window));
  return spawn_autoscaler(sys, std::move(o));
}

// A deployment's replication unit: (prefill, decode) workers, (0, 0) when aggregated.
std::pair<int, int> disagg_units(const config::deployment& d) {
  if (!d.llm.disaggregation.is_disaggregated) return {0, 0};
  return {static_cast<int>(d.llm.disaggregation.prefill_workers_per_replica),
          static_cast<int>(d.llm.disaggregation.decode_workers_per_replica)};
}

std::string snapshot_file(size_t i) { return fmt::format("kv-index-{}.snapshot", i); }

int run_node(const std::string& what, const node_plan& plan, worker_flags wf, const control_flags& cf,
             const flags_given& given) {
  auto start = settle_start(what, wf, given);  // the model and the config file, before anything starts
  if (!start.ok()) return fail(what, start.message());
  if (plan.workers)
    if (status s = check_device(wf.device); !s.ok()) return fail(what, s.message());
  std::optional<config::llm_config_file> llm;
  if (!cf.llm_config.empty()) {
    auto l = load_llm_config(cf.llm_config);
    if (!l.ok()) return fail(what, l.message());
    llm = std::move(*l);
    if (std::find(llm->present.begin(), llm->present.end(), "runtime") != llm->present.end())
      wf.llm_runtime = std::make_shared<const config::runtime_settings>(llm->config.runtime);
    if (llm->config.llm.speculative)
      wf.speculative = std::make_shared<const config::speculative_settings>(*llm->config.llm.speculative);
  }
  // Token-based autoscaling: --llm-config's autoscaling_settings, else the config file's.
  // The router's settings: --llm-config's b10_routing_config, else the config file's, else the defaults.
  config::routing_settings routing = start->routing.value_or(config::routing_settings{});
  if (llm && llm->config.llm.has_routing) routing = llm->config.llm.routing;
  std::optional<config::autoscaling_settings> autoscaling = start->autoscaling;
  if (llm && llm->config.llm.has_autoscaling) autoscaling = llm->config.llm.autoscaling;
  // Disaggregated serving: replication units of prefill and decode workers.
  if (llm && llm->config.llm.disaggregation.is_disaggregated) {
    wf.prefill_per_unit = static_cast<int>(llm->config.llm.disaggregation.prefill_workers_per_replica);
    wf.decode_per_unit = static_cast<int>(llm->config.llm.disaggregation.decode_workers_per_replica);
  }
  if (autoscaling && !plan.control)
    return fail(what, "autoscaling_settings: give it to the control node (its autoscaler starts workers on the worker "
                      "nodes), not to a worker node");
  if (autoscaling && !plan.workers && wf.model.empty())
    return fail(what, "autoscaling_settings: the control node needs --model (the model, at the same path on the worker "
                      "nodes, that new replicas load)");
  auto kind = parse_routing_kind(cf.routing);
  if (!kind.ok()) return fail(what, kind.message());
  block_stop_signals();
  caf::actor_system_config cfg;
  add_troupe_types(cfg);
  if (plan.listen || !plan.join.empty() || !plan.peers.empty()) cfg.load<caf::io::middleman>();
  cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};

  // The model this node serves (the control node needs it too: it tokenizes).
  std::shared_ptr<const model_bundle> bundle;
  if (!wf.model.empty()) {
    auto b = load_model_showing_progress(wf.model, wf.model_name.empty() ? wf.model : wf.model_name);
    if (!b.ok()) return fail(what, b.message());
    bundle = std::make_shared<const model_bundle>(std::move(*b));
  }

  std::vector<router_actor> routers;
  std::vector<snapshotter_actor> snapshotters;
  control_link link;
  if (plan.control) {
    const std::string snap_dir = cf.state_dir.empty() ? "" : cf.state_dir + "/router";
    for (int i = 0; i < cf.routers; ++i) {
      router_options ro;
      ro.name = i == 0 ? plan.node + "/router" : fmt::format("{}/router{}", plan.node, i);
      ro.kind = *kind;
      ro.defaults = to_routing(routing, "");
      ro.queue_capacity = static_cast<size_t>(cf.router_queue);
      if (!snap_dir.empty()) {
        std::string why;
        ro.restore = load_snapshot(snap_dir, snapshot_file(static_cast<size_t>(i)), &why);
        if (!why.empty()) std::fprintf(stderr, "troupe: %s\n", why.c_str());
        if (ro.restore)
          std::fprintf(stderr, "troupe: %s starts from its KV index snapshot (%zu workers)\n", ro.name.c_str(),
                       ro.restore->workers.size());
      }
      routers.push_back(spawn_router(sys, plan.node, std::move(ro)));
      if (!snap_dir.empty())
        snapshotters.push_back(spawn_snapshotter(sys, routers.back(),
                                                 {snap_dir, snapshot_file(static_cast<size_t>(i)), cf.snapshot_interval_s, plan.node}));
    }
    // Replicas share their decisions, and every worker registration.
    for (size_t i = 0; i < routers.size(); ++i)
      for (size_t j = 0; j < routers.size(); ++j)
        if (i != j) caf::anon_send(routers[i], register_atom::value, caf::actor_cast<router_peer_actor>(routers[j]));
    if (plan.listen) {
      // (reuse: a control node restarted after a kill -9 finds its port in TIME_WAIT)
      auto port = sys.middleman().publish(routers[0], static_cast<uint16_t>(plan.listen), nullptr, true);
      if (!port) return fail(what, fmt::format("cannot listen for nodes on port {}: {}", plan.listen, sys.render(port.error())));
    }
    for (const std::string& p : plan.peers) {
      auto r = connect_router(sys, p, 60);
      if (!r.ok()) return fail(what, "--peer: " + r.message());
      caf::anon_send(*r, register_atom::value, caf::actor_cast<router_peer_actor>(routers[0]));
      for (const auto& mine : routers) caf::anon_send(mine, register_atom::value, caf::actor_cast<router_peer_actor>(*r));
      std::fprintf(stderr, "troupe: sharing routing decisions with the router at %s\n", p.c_str());
    }
  } else {
    auto r = connect_router(sys, plan.join, 60);
    if (!r.ok()) return fail(what, "--join: " + r.message());
    routers.push_back(*r);
  }
  std::map<std::string, std::shared_ptr<const model_bundle>> preload;
  if (bundle) preload[wf.model] = bundle;
  node_agent_actor agent = spawn_node_agent(sys, plan.node, preload);
  if (status s = register_node(sys, routers[0], agent, plan.node, {}); !s.ok()) return fail(what, s.message());

  std::vector<started_worker> started;
  std::optional<autoscaler_actor> scaler;
  if (plan.workers) {
    // With autoscaling, every replica up to max_replica gets an equal share of the KV cache
    // memory and the cores.
    worker_flags sizing = wf;
    if (autoscaling) sizing.workers = std::max(wf.workers, static_cast<int>(autoscaling->max_replica));
    auto spec = make_worker_spec(sizing, wf.model);
    if (!spec.ok()) return fail(what, spec.message());
    auto w = start_units(sys, agent, routers[0], *spec, wf.workers, wf.prefill_per_unit, wf.decode_per_unit);
    if (!w.ok()) return fail(what, w.message());
    started = std::move(*w);
    if (autoscaling && !started.empty())
      scaler = start_autoscaler(sys, plan.node, started[0].info.model, *spec, *autoscaling, routers, {{plan.node, agent}},
                                wf.prefill_per_unit, wf.decode_per_unit);
    if (started.size() <= 8)
      for (const started_worker& s : started)
        std::fprintf(stderr, "troupe: worker %s serves %s (%d KV blocks of %d tokens)%s\n", s.info.name.c_str(),
                     s.info.model.c_str(), s.info.kv_blocks_total, s.info.kv_block_size,
                     s.info.role == "aggregated" ? ""
                                                 : fmt::format(", {} worker of unit {}", s.info.role, s.info.unit).c_str());
    else
      std::fprintf(stderr, "troupe: %zu workers serve %s (%d KV blocks of %d tokens each)\n", started.size(),
                   started[0].info.model.c_str(), started[0].info.kv_blocks_total, started[0].info.kv_block_size);
  }
  if (!plan.control) {
    // A worker node outlives its control node: it keeps its engines (and their caches) and
    // registers again when the control node is back: every worker it runs, those a control
    // node's autoscaler started on it included.
    link.watch(sys, routers[0]);
    std::thread([&sys, &link, agent, plan] {
      while (link.wait_lost()) {
        std::fprintf(stderr, "troupe: lost the control node at %s; the workers stay up and rejoin when it is back\n",
                     plan.join.c_str());
        for (;;) {
          auto r = connect_router(sys, plan.join, 0, &link.stopping);
          if (!r.ok()) return;  // stopping
          auto running = agent_workers(sys, agent);
          status s = running.ok() ? register_node(sys, *r, agent, plan.node, *running) : status(running.err());
          if (!s.ok()) {
            std::fprintf(stderr, "troupe: %s\n", s.message().c_str());
            std::this_thread::sleep_for(std::chrono::seconds(1));
            continue;
          }
          link.watch(sys, *r);
          std::fprintf(stderr, "troupe: rejoined the control node at %s with %zu workers\n", plan.join.c_str(), running->size());
          break;
        }
      }
    }).detach();
  }

  std::unique_ptr<frontend> fe;
  std::unique_ptr<config::deployment_store> store;
  auto registry = std::make_shared<model_registry>();
  if (plan.control) {
    auto stats = std::make_shared<metrics>();
    frontend_options fo;
    fo.host = cf.host;
    fo.port = cf.port;
    fo.api_key = cf.api_key;  // or $TROUPE_API_KEY: the option reads it
    fo.max_in_flight = cf.max_in_flight;
    fo.node = plan.node;
    fo.replicas.assign(routers.begin() + 1, routers.end());
    fo.status_json = start->status_json;
    std::string served;
    if (bundle) {
      auto spec = make_worker_spec(wf, wf.model);
      if (!spec.ok()) return fail(what, spec.message());
      served = spec->served_name.empty() ? bundle->name : spec->served_name;
      int64_t max_len = bundle->weights->config().max_position;
      if (spec->engine.max_seq_len > 0) max_len = std::min<int64_t>(max_len, spec->engine.max_seq_len);
      for (const started_worker& w : started) max_len = w.info.max_seq_len;
      registry->add(served, {bundle, max_len, static_cast<int64_t>(std::time(nullptr))});
      if (autoscaling && !plan.workers) {
        // A control node: replicas start on the worker nodes with this node's engine flags.
        worker_flags sizing = wf;
        sizing.workers = std::max(wf.workers, static_cast<int>(autoscaling->max_replica));
        auto sized = make_worker_spec(sizing, wf.model);
        if (!sized.ok()) return fail(what, sized.message());
        scaler = start_autoscaler(sys, plan.node, served, *sized, *autoscaling, routers, {}, wf.prefill_per_unit,
                                  wf.decode_per_unit);
      }
    }
    fe = std::make_unique<frontend>(sys, routers[0], registry, stats, fo);
    // PATCH of the start-up model's autoscaling_settings: its autoscaler takes them at its
    // next decision (not stored: a restart starts with the flags again).
    if (!served.empty())
      fe->set_startup_update(served, [scaler, served](const config::autoscaling_settings& a) -> std::string {
        if (!scaler)
          return fmt::format("{} runs without an autoscaler: start troupe serve with autoscaling_settings (--llm-config "
                             "or the config file's llm_config) to change them while it runs",
                             served);
        caf::anon_send(*scaler, configure_atom::value, to_rule_settings(a));
        std::fprintf(stderr, "troupe: autoscaling %s: new settings from PATCH /v1/llm_models/%s\n", served.c_str(),
                     served.c_str());
        return "";
      });
    if (!cf.state_dir.empty()) {
      config::store_options so;
      so.state_dir = cf.state_dir;
      so.hf_cache = config::hf_cache_from_environment();
      auto st = config::deployment_store::open(so);
      if (!st.ok()) return fail(what, st.message());
      store = std::make_unique<config::deployment_store>(std::move(*st));
      for (const auto& w : store->load_warnings()) std::fprintf(stderr, "troupe: %s\n", w.c_str());
      // Deployments' autoscalers, by name (the management API's handlers run on HTTP threads).
      struct deployment_scalers {
        std::mutex mu;
        std::map<std::string, autoscaler_actor> by_name;
      };
      auto scalers = std::make_shared<deployment_scalers>();
      // What a deployment's workers start with (with autoscaling, sized for max_replica of them).
      auto deployment_spec = [wf](const config::deployment& d) -> result<worker_spec> {
        worker_flags f = wf;
        f.served_name = d.name;
        f.llm_runtime.reset();
        if (d.llm.has_autoscaling) f.workers = std::max(f.workers, static_cast<int>(d.llm.autoscaling.max_replica));
        f.prefill_per_unit = f.decode_per_unit = 0;
        if (d.llm.disaggregation.is_disaggregated) {
          // One replication unit; with autoscaling, sized for max_replica units.
          f.workers = d.llm.has_autoscaling ? std::max(1, static_cast<int>(d.llm.autoscaling.max_replica)) : 1;
          f.prefill_per_unit = static_cast<int>(d.llm.disaggregation.prefill_workers_per_replica);
          f.decode_per_unit = static_cast<int>(d.llm.disaggregation.decode_workers_per_replica);
        }
        f.speculative.reset();
        if (d.llm.speculative) f.speculative = std::make_shared<const config::speculative_settings>(*d.llm.speculative);
        auto spec = make_worker_spec(f, d.model_path);
        if (spec.ok()) apply_engine_settings(*spec, d.runtime.engine);
        return spec;
      };
      auto start_deployment = [&sys, agent, routers, registry, deployment_spec, node = plan.node, scalers](const config::deployment& d) -> std::string {
        auto b = load_model(d.model_path);
        if (!b.ok()) return b.message();
        auto spec = deployment_spec(d);
        if (!spec.ok()) return spec.message();
        // Its b10_routing_config is the routers' for its model.
        configure_routers(sys, routers, to_routing(d.llm.routing, d.name));
        const bool disagg = d.llm.disaggregation.is_disaggregated;
        auto infos = start_units(sys, agent, routers[0], *spec, 1,
                                 disagg ? static_cast<int>(d.llm.disaggregation.prefill_workers_per_replica) : 0,
                                 disagg ? static_cast<int>(d.llm.disaggregation.decode_workers_per_replica) : 0);
        if (!infos.ok()) return infos.message();
        auto shared = std::make_shared<const model_bundle>(std::move(*b));
        registry->add(d.name, {shared, infos->front().info.max_seq_len, d.created_at});
        if (d.llm.has_autoscaling) {
          std::lock_guard<std::mutex> lock(scalers->mu);
          scalers->by_name[d.name] = start_autoscaler(sys, node, d.name, *spec, d.llm.autoscaling, routers, {{node, agent}},
                                                      disagg_units(d).first, disagg_units(d).second);
        }
        return "";
      };
      auto stop_deployment = [&sys, agent, routers, registry, scalers](const config::deployment& d) {
        registry->remove(d.name);
        {
          std::lock_guard<std::mutex> lock(scalers->mu);
          if (auto it = scalers->by_name.find(d.name); it != scalers->by_name.end()) {
            // Retired, not killed: a replica it is still starting is stopped when it comes up.
            caf::anon_send(it->second, stop_atom::value);
            scalers->by_name.erase(it);
          }
        }
        caf::scoped_actor self{sys};
        self->request(routers[0], std::chrono::seconds(10), list_atom::value)
            .receive(
                [&](std::vector<worker_info>& ws) {
                  for (auto& w : ws)
                    if (w.model == d.name) self->send(agent, stop_atom::value, w.name);
                },
                [](caf::error&) {});
      };
      for (const config::deployment& d : store->list()) {
        const std::string err = start_deployment(d);
        if (!err.empty()) std::fprintf(stderr, "troupe: deployment %s did not start: %s\n", d.name.c_str(), err.c_str());
      }
      fe->set_management(store.get(), start_deployment, stop_deployment);
      // New autoscaling_settings (PATCH): the running autoscaler takes them at its next
      // decision; a deployment created without them gets one now.
      fe->set_management_update([&sys, agent, routers, deployment_spec, node = plan.node, scalers](const config::deployment& d) {
        std::lock_guard<std::mutex> lock(scalers->mu);
        if (auto it = scalers->by_name.find(d.name); it != scalers->by_name.end()) {
          caf::anon_send(it->second, configure_atom::value, to_rule_settings(d.llm.autoscaling));
          return;
        }
        auto spec = deployment_spec(d);
        if (!spec.ok()) {
          std::fprintf(stderr, "troupe: deployment %s cannot autoscale: %s\n", d.name.c_str(), spec.message().c_str());
          return;
        }
        scalers->by_name[d.name] = start_autoscaler(sys, node, d.name, *spec, d.llm.autoscaling, routers, {{node, agent}},
                                                      disagg_units(d).first, disagg_units(d).second);
      });
    }
    if (status s = fe->start(); !s.ok()) return fail(what, s.message());
    const std::string host = cf.host == "0.0.0.0" ? "localhost" : cf.host;
    std::printf("troupe: serving %s at http://%s:%d/v1\n", served.empty() ? "(no model yet)" : served.c_str(),
                host.c_str(), fe->port());
    std::fflush(stdout);
  } else {
    std::printf("troupe: node %s joined %s with %zu workers\n", plan.node.c_str(), plan.join.c_str(), started.size());
    std::fflush(stdout);
  }

  wait_for_stop_signal();
  link.stop();
  if (scaler) caf::anon_send_exit(*scaler, caf::exit_reason::user_shutdown);  // no replica starts or drains while stopping
  if (fe) {
    // Let requests in flight finish, then stop; a second signal stops at once.
    std::thread([] {
      wait_for_stop_signal();
      std::_Exit(1);
    }).detach();
    if (const int left = fe->drain(cf.drain_timeout_s); left > 0)
      std::fprintf(stderr, "troupe: stopping with %d requests still running after %.0f s\n", left, cf.drain_timeout_s);
    fe->stop();
    // The last KV index snapshot, so that a restart finds the index as it is now.
    caf::scoped_actor self{sys};
    for (const auto& s : snapshotters)
      self->request(s, std::chrono::seconds(30), snapshot_atom::value).receive([](uint64_t) {}, [](caf::error&) {});
  }
  // Workers, devices and publishers stop with the actor system; the node agent says goodbye.
  caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
  if (plan.control)
    for (const auto& r : routers) caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  std::fflush(stdout);
  std::_Exit(0);  // detached device threads may be mid-forward; nothing is left to flush
}

}  // namespace

int run_serve_command(const std::vector<std::string>& args) {
  CLI::App app{"Serve a model over an OpenAI-compatible API, every actor in this process.", "troupe serve"};
  cli::setup(app);
  worker_flags wf;
  wf.model = default_model_path();
  control_flags cf;
  add_worker_flags(app, wf, false);
  app.get_option("--model")->envname("TROUPE_MODEL");
  add_control_flags(app, cf);
  bool strict = false;
  add_strict_config_flag(app, strict);
  cli::add_kernel_environment(app);
  cli::add_hf_cache_environment(app);
  if (auto rc = cli::parse(app, args)) return *rc;
  if (auto rc = check_model_flag(app, wf)) return *rc;
  node_plan plan;
  plan.node = "local";
  plan.control = true;
  plan.workers = true;
  return run_node("serve", plan, wf, cf, given_flags(app, strict));
}

int run_node_command(const std::vector<std::string>& args) {
  CLI::App app{"Run one node of a multi-process deployment: the control node (router and HTTP frontend) or a "
               "worker node (engines) that joins it.",
               "troupe node"};
  cli::setup(app);
  std::string role, name = default_node_name();
  int listen = 0;
  std::string join;
  std::vector<std::string> peers;
  worker_flags wf;
  control_flags cf;
  app.add_option("--role", role, "control: the router and HTTP frontend; worker: engines")
      ->type_name("ROLE")
      ->required()
      ->check(cli::one_of({"control", "worker"}))
      ->group(cli::group::cluster);
  app.add_option("--listen", listen, "control: the port worker nodes join (required with --role control)")
      ->type_name("PORT")
      ->check(cli::between(1, 65535))
      ->default_str("")
      ->group(cli::group::cluster);
  app.add_option("--join", join,
                 "worker: the control node's address (required with --role worker); the node stays up if the "
                 "control node goes and rejoins it when it is back")
      ->type_name("HOST:PORT")
      ->check(cli::host_port())
      ->group(cli::group::cluster);
  app.add_option("--peer", peers,
                 "control: another control node's address, repeatable; their routers share in-flight decisions "
                 "and workers")
      ->type_name("HOST:PORT")
      ->check(cli::host_port())
      ->group(cli::group::cluster);
  app.add_option("--name", name, "this node's name in metrics and in its workers' names")
      ->type_name("NAME")
      ->default_str("HOSTNAME-PID")
      ->group(cli::group::cluster);
  add_worker_flags(app, wf, false);
  app.add_option("--worker-role", wf.worker_role,
                 "worker: the role of the workers this node starts: aggregated, or prefill or decode for a "
                 "disaggregated deployment (llm_config.is_disaggregated on the control node)")
      ->type_name("ROLE")
      ->check(cli::one_of({"aggregated", "prefill", "decode"}))
      ->default_str("aggregated")
      ->group(cli::group::cluster);
  add_control_flags(app, cf);
  bool strict = false;
  add_strict_config_flag(app, strict);
  cli::add_kernel_environment(app);
  cli::add_hf_cache_environment(app);
  if (auto rc = cli::parse(app, args)) return *rc;
  if (auto rc = check_model_flag(app, wf)) return *rc;
  node_plan plan;
  plan.node = name;
  if (role == "control") {
    if (listen <= 0) return cli::usage_error(app, "--role control needs --listen PORT");
    if (wf.worker_role != "aggregated")
      return cli::usage_error(app, "--worker-role is for --role worker (a control node starts no workers)");
    plan.control = true;
    plan.listen = listen;
    plan.workers = false;
    plan.peers = peers;
  } else {
    if (join.empty()) return cli::usage_error(app, "--role worker needs --join HOST:PORT");
    if (wf.model.empty() && wf.config.empty()) return cli::usage_error(app, "--role worker needs --model MODEL (or --config)");
    plan.join = join;
    plan.workers = true;
  }
  return run_node("node", plan, wf, cf, given_flags(app, strict));
}
