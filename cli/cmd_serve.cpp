#include "cli/cmd_serve.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <optional>
#include <cstdio>
#include <thread>

#include <CLI/CLI.hpp>
#include <caf/io/all.hpp>
#include <fmt/format.h>

#include "actors/frontend.hpp"
#include "actors/metrics.hpp"
#include "actors/node_agent.hpp"
#include "actors/router.hpp"
#include "cli/cluster.hpp"
#include "cli/serve_config.hpp"
#include "cli/command_line.hpp"
#include "config/deployment_store.hpp"
#include "config/checkpoint.hpp"
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
                 "where the management API (/v1/llm_models) keeps its deployments; without it the API is off")
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
};

int fail(const std::string& what, const std::string& msg) {
  std::fprintf(stderr, "troupe %s: %s\n", what.c_str(), msg.c_str());
  return 1;
}

// Watches the control node's router from a worker node; when it goes away, the node stops.
std::atomic<bool> lost_control{false};

void watch_router(caf::actor_system& sys, const router_actor& router) {
  sys.spawn([router](caf::event_based_actor* self) -> caf::behavior {
    self->monitor(router);
    self->set_down_handler([](const caf::down_msg&) {
      lost_control = true;
      kill(getpid(), SIGTERM);
    });
    return {[](int) {}};
  });
}

result<router_actor> join_router(caf::actor_system& sys, const std::string& join) {
  const size_t colon = join.rfind(':');
  if (colon == std::string::npos) return make_error("--join must be HOST:PORT, not " + join);
  const std::string host = join.substr(0, colon);
  const int port = std::atoi(join.c_str() + colon + 1);
  if (port <= 0 || port > 65535) return make_error("--join must be HOST:PORT, not " + join);
  std::string last;
  for (int attempt = 0; attempt < 60; ++attempt) {  // the control node may still be starting
    auto r = sys.middleman().remote_actor<router_actor>(host, static_cast<uint16_t>(port));
    if (r) return *r;
    last = sys.render(r.error());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return make_error(fmt::format("cannot reach the control node's router at {}: {}", join, last));
}

int run_node(const std::string& what, const node_plan& plan, worker_flags wf, const control_flags& cf,
             const flags_given& given) {
  auto start = settle_start(what, wf, given);  // the model and the config file, before anything starts
  if (!start.ok()) return fail(what, start.message());
  if (plan.workers)
    if (status s = check_device(wf.device); !s.ok()) return fail(what, s.message());
  block_stop_signals();
  caf::actor_system_config cfg;
  add_troupe_types(cfg);
  if (plan.listen || !plan.join.empty()) cfg.load<caf::io::middleman>();
  cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};

  // The model this node serves (the control node needs it too: it tokenizes).
  std::shared_ptr<const model_bundle> bundle;
  if (!wf.model.empty()) {
    auto b = load_model_showing_progress(wf.model, wf.model_name.empty() ? wf.model : wf.model_name);
    if (!b.ok()) return fail(what, b.message());
    bundle = std::make_shared<const model_bundle>(std::move(*b));
  }

  router_actor router;
  if (plan.control) {
    router = spawn_router(sys, plan.node, nullptr);
    if (plan.listen) {
      auto port = sys.middleman().publish(router, static_cast<uint16_t>(plan.listen));
      if (!port) return fail(what, fmt::format("cannot listen for nodes on port {}: {}", plan.listen, sys.render(port.error())));
    }
  } else {
    auto r = join_router(sys, plan.join);
    if (!r.ok()) return fail(what, r.message());
    router = *r;
    watch_router(sys, router);
  }
  std::map<std::string, std::shared_ptr<const model_bundle>> preload;
  if (bundle) preload[wf.model] = bundle;
  node_agent_actor agent = spawn_node_agent(sys, plan.node, preload);
  {
    caf::scoped_actor self{sys};
    std::string err;
    self->request(router, std::chrono::seconds(30), register_atom::value, agent, plan.node)
        .receive([](bool) {}, [&](caf::error& e) { err = sys.render(e); });
    if (!err.empty()) return fail(what, "registering with the router: " + err);
  }

  std::vector<worker_info> started;
  if (plan.workers) {
    auto spec = make_worker_spec(wf, wf.model);
    if (!spec.ok()) return fail(what, spec.message());
    auto infos = start_workers(sys, agent, router, *spec, wf.workers);
    if (!infos.ok()) return fail(what, infos.message());
    started = std::move(*infos);
    for (const worker_info& w : started)
      std::fprintf(stderr, "troupe: worker %s serves %s (%d KV blocks of %d tokens)\n", w.name.c_str(),
                   w.model.c_str(), w.kv_blocks_total, w.kv_block_size);
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
    fo.status_json = start->status_json;
    std::string served;
    if (bundle) {
      auto spec = make_worker_spec(wf, wf.model);
      if (!spec.ok()) return fail(what, spec.message());
      served = spec->served_name.empty() ? bundle->name : spec->served_name;
      int64_t max_len = bundle->weights->config().max_position;
      if (spec->engine.max_seq_len > 0) max_len = std::min<int64_t>(max_len, spec->engine.max_seq_len);
      for (const worker_info& w : started) max_len = w.max_seq_len;
      registry->add(served, {bundle, max_len, static_cast<int64_t>(std::time(nullptr))});
    }
    fe = std::make_unique<frontend>(sys, router, registry, stats, fo);
    if (!cf.state_dir.empty()) {
      config::store_options so;
      so.state_dir = cf.state_dir;
      so.hf_cache = config::hf_cache_from_environment();
      auto st = config::deployment_store::open(so);
      if (!st.ok()) return fail(what, st.message());
      store = std::make_unique<config::deployment_store>(std::move(*st));
      for (const auto& w : store->load_warnings()) std::fprintf(stderr, "troupe: %s\n", w.c_str());
      auto start_deployment = [&sys, agent, router, registry, wf](const config::deployment& d) -> std::string {
        auto b = load_model(d.model_path);
        if (!b.ok()) return b.message();
        worker_flags f = wf;
        f.served_name = d.name;
        auto spec = make_worker_spec(f, d.model_path);
        if (!spec.ok()) return spec.message();
        apply_engine_settings(*spec, d.runtime.engine);
        auto infos = start_workers(sys, agent, router, *spec, 1);
        if (!infos.ok()) return infos.message();
        auto shared = std::make_shared<const model_bundle>(std::move(*b));
        registry->add(d.name, {shared, infos->front().max_seq_len, d.created_at});
        return "";
      };
      auto stop_deployment = [&sys, agent, router, registry](const config::deployment& d) {
        registry->remove(d.name);
        caf::scoped_actor self{sys};
        self->request(router, std::chrono::seconds(10), list_atom::value)
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
  if (fe) {
    // Let requests in flight finish, then stop; a second signal stops at once.
    std::thread([] {
      wait_for_stop_signal();
      std::_Exit(1);
    }).detach();
    if (const int left = fe->drain(cf.drain_timeout_s); left > 0)
      std::fprintf(stderr, "troupe: stopping with %d requests still running after %.0f s\n", left, cf.drain_timeout_s);
    fe->stop();
  }
  if (lost_control) {
    std::fprintf(stderr, "troupe: lost the control node; stopping\n");
    std::_Exit(1);
  }
  // Workers, devices and publishers stop with the actor system; the node agent says goodbye.
  caf::anon_send_exit(agent, caf::exit_reason::user_shutdown);
  if (plan.control) caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
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
  app.add_option("--join", join, "worker: the control node's address (required with --role worker)")
      ->type_name("HOST:PORT")
      ->check(cli::host_port())
      ->group(cli::group::cluster);
  app.add_option("--name", name, "this node's name in metrics and in its workers' names")
      ->type_name("NAME")
      ->default_str("HOSTNAME-PID")
      ->group(cli::group::cluster);
  add_worker_flags(app, wf, false);
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
    plan.control = true;
    plan.listen = listen;
    plan.workers = false;
  } else {
    if (join.empty()) return cli::usage_error(app, "--role worker needs --join HOST:PORT");
    if (wf.model.empty() && wf.config.empty()) return cli::usage_error(app, "--role worker needs --model MODEL (or --config)");
    plan.join = join;
    plan.workers = true;
  }
  return run_node("node", plan, wf, cf, given_flags(app, strict));
}
