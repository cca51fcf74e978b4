#include "actors/frontend.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "actors/frontend_internal.hpp"
#include "actors/metrics.hpp"
#include "actors/router.hpp"
#include "config/deployment_store.hpp"
#include "config/management_api.hpp"
#include "runtime/model_bundle.hpp"

namespace troupe {

// ---- model registry ------------------------------------------------------------------------

void model_registry::add(const std::string& name, entry e) {
  std::lock_guard<std::mutex> lock(mu_);
  models_[name] = std::make_shared<const entry>(std::move(e));
}
void model_registry::remove(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  models_.erase(name);
}
std::shared_ptr<const model_registry::entry> model_registry::get(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = models_.find(name);
  return it == models_.end() ? nullptr : it->second;
}
std::vector<std::string> model_registry::names() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out;
  for (auto& [n, e] : models_) out.push_back(n);
  return out;
}

// ---- delta channel and stream actor ---------------------------------------------------------

void delta_channel::push(token_delta d) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    q_.push_back(std::move(d));
  }
  cv_.notify_one();
}

bool delta_channel::pop_all(std::vector<token_delta>& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !q_.empty(); })) return false;
  while (!q_.empty()) {
    out.push_back(std::move(q_.front()));
    q_.pop_front();
  }
  return true;
}

namespace {

struct stream_state {
  static inline const char* name = "troupe.stream";
  std::shared_ptr<delta_channel> ch;
  size_t remaining = 0;
};

// The router hears of first tokens and ends from the worker itself; this actor only hands
// deltas to the HTTP side.
stream_actor::behavior_type stream_fn(stream_actor::stateful_pointer<stream_state> self,
                                      std::shared_ptr<delta_channel> ch, size_t n) {
  self->state.ch = std::move(ch);
  self->state.remaining = n;
  return {
      [=](token_delta& d) {
        const bool last = d.finished;
        self->state.ch->push(std::move(d));
        if (last && --self->state.remaining == 0) self->quit();
      },
  };
}

}  // namespace

stream_actor spawn_stream_actor(caf::actor_system& sys, std::shared_ptr<delta_channel> ch, size_t n_requests) {
  return sys.spawn(stream_fn, std::move(ch), n_requests);
}

// ---- connection probe -------------------------------------------------------------------------

namespace {

// The address of a connected socket's peer and its local port, or false.
bool socket_ends(int fd, std::string& peer, int& peer_port, int& local_port) {
  sockaddr_storage a{}, b{};
  socklen_t la = sizeof a, lb = sizeof b;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&a), &la) != 0) return false;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&b), &lb) != 0) return false;
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    auto* s = reinterpret_cast<sockaddr_in*>(&a);
    inet_ntop(AF_INET, &s->sin_addr, buf, sizeof buf);
    peer_port = ntohs(s->sin_port);
    local_port = ntohs(reinterpret_cast<sockaddr_in*>(&b)->sin_port);
  } else if (a.ss_family == AF_INET6) {
    auto* s = reinterpret_cast<sockaddr_in6*>(&a);
    inet_ntop(AF_INET6, &s->sin6_addr, buf, sizeof buf);
    peer_port = ntohs(s->sin6_port);
    local_port = ntohs(reinterpret_cast<sockaddr_in6*>(&b)->sin6_port);
  } else {
    return false;
  }
  peer = buf;
  return true;
}

}  // namespace

connection_probe::connection_probe(const httplib::Request& req)
    : peer_(req.remote_addr), peer_port_(req.remote_port), local_port_(req.local_port) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return;
  while (dirent* e = readdir(d)) {
    const int fd = std::atoi(e->d_name);
    if (fd <= 2) continue;
    std::string p;
    int pp = 0, lp = 0;
    if (socket_ends(fd, p, pp, lp) && pp == peer_port_ && lp == local_port_ && p == peer_) {
      fd_ = fd;
      break;
    }
  }
  closedir(d);
}

bool connection_probe::client_gone() {
  if (fd_ < 0) return false;  // not found: rely on write failures
  std::string p;
  int pp = 0, lp = 0;
  if (!socket_ends(fd_, p, pp, lp) || pp != peer_port_ || lp != local_port_ || p != peer_) return true;
  pollfd pfd{fd_, static_cast<short>(POLLIN | POLLRDHUP), 0};
  if (poll(&pfd, 1, 0) <= 0) return false;
  if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
  if (pfd.revents & POLLIN) {
    char c;
    return recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }
  return false;
}

// ---- the server -------------------------------------------------------------------------------

// cpp-httplib with a real listen backlog: the library's compiled-in 5 drops connections when
// hundreds of clients connect at once.
struct frontend::impl::server : httplib::Server {
  bool raise_backlog(int backlog) { return ::listen(svr_sock_, backlog) == 0; }
};

frontend::impl::impl(caf::actor_system& s, router_actor r, std::shared_ptr<model_registry> m,
                     std::shared_ptr<metrics> st, frontend_options o)
    : sys(s), router(std::move(r)), models(std::move(m)), stats(std::move(st)), opts(std::move(o)) {}
frontend::impl::~impl() = default;

void send_error(httplib::Response& res, const openai::api_error& e) {
  res.status = e.status;
  res.set_content(openai::write_error(e), "application/json");
}

namespace {

openai::api_error server_error(int status, std::string message, std::string type, std::string code = "") {
  openai::api_error e;
  e.status = status;
  e.message = std::move(message);
  e.type = std::move(type);
  e.code = std::move(code);
  return e;
}

}  // namespace

frontend::frontend(caf::actor_system& sys, router_actor router, std::shared_ptr<model_registry> models,
                   std::shared_ptr<metrics> m, frontend_options options)
    : impl_(std::make_unique<impl>(sys, std::move(router), std::move(models), std::move(m), std::move(options))) {}

frontend::~frontend() { stop(); }

void frontend::set_management(config::deployment_store* store,
                              std::function<std::string(const config::deployment&)> on_created,
                              std::function<void(const config::deployment&)> on_removed) {
  impl_->store = store;
  impl_->management = store ? std::make_unique<config::management_api>(*store) : nullptr;
  impl_->on_created = std::move(on_created);
  impl_->on_removed = std::move(on_removed);
}

void frontend::set_management_update(std::function<void(const config::deployment&)> on_updated) {
  impl_->on_updated = std::move(on_updated);
}

void frontend::set_startup_update(std::string model,
                                  std::function<std::string(const config::autoscaling_settings&)> on_update) {
  impl_->startup_model = std::move(model);
  impl_->on_startup_update = std::move(on_update);
}

int frontend::port() const { return impl_->bound_port; }

int frontend::drain(double timeout_s) {
  impl_->draining = true;
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (impl_->in_flight > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return impl_->in_flight;
}

void frontend::stop() {
  if (impl_->srv) impl_->srv->stop();
  if (impl_->listener.joinable()) impl_->listener.join();
  impl_->srv.reset();
}

status frontend::start() {
  impl& fe = *impl_;
  fe.srv = std::make_unique<impl::server>();
  auto& srv = *fe.srv;
  const int threads = fe.opts.max_in_flight + 64;  // room to answer 429 while full
  srv.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  srv.set_payload_max_length(fe.opts.max_body_bytes);
  srv.set_keep_alive_max_count(10000);
  srv.set_keep_alive_timeout(30);
  srv.set_read_timeout(30);
  srv.set_write_timeout(30);

  srv.set_pre_routing_handler([&fe](const httplib::Request& req, httplib::Response& res) {
    if (fe.opts.api_key.empty() || req.path.rfind("/v1/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    if (auth == "Bearer " + fe.opts.api_key) return httplib::Server::HandlerResponse::Unhandled;
    send_error(res, server_error(401,
                                 auth.empty() ? "You didn't provide an API key. Provide it in the Authorization header "
                                                "as 'Authorization: Bearer YOUR_KEY'."
                                              : "Incorrect API key provided.",
                                 "invalid_request_error", "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  srv.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, server_error(500, "internal error: " + what, "server_error"));
  });
  srv.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404)
      send_error(res, server_error(404, fmt::format("no route for {} {}", req.method, req.path), "invalid_request_error",
                                   "not_found"));
    else if (res.status == 413)
      send_error(res, server_error(413, "the request body is too large", "invalid_request_error", "payload_too_large"));
    else if (res.status == 400)
      send_error(res, server_error(400, "malformed HTTP request", "invalid_request_error"));
  });

  srv.Get("/health", [&fe](const httplib::Request&, httplib::Response& res) {
    caf::scoped_actor self{fe.sys};
    size_t workers = 0;
    bool answered = false;
    self->request(fe.router, std::chrono::seconds(5), list_atom::value)
        .receive([&](std::vector<worker_info>& w) { workers = w.size(), answered = true; }, [](caf::error&) {});
    const bool up = answered && workers > 0 && !fe.draining;
    nlohmann::json j = {{"status", fe.draining ? "draining" : up ? "ok" : "unavailable"}, {"workers", workers}};
    res.status = up ? 200 : 503;
    res.set_content(j.dump(), "application/json");
  });

  auto list_models = [&fe](std::vector<openai::model_card>& cards) {
    caf::scoped_actor self{fe.sys};
    std::map<std::string, int64_t> served;
    self->request(fe.router, std::chrono::seconds(5), list_atom::value)
        .receive(
            [&](std::vector<worker_info>& ws) {
              for (auto& w : ws) served[w.model] = std::max<int64_t>(served[w.model], w.max_seq_len);
            },
            [](caf::error&) {});
    for (auto& [name, len] : served) {
      openai::model_card c;
      c.id = name;
      if (auto e = fe.models->get(name)) {
        c.created = e->created;
        c.embedding_pooling = pooling_name(embedding_pooling_of(*e->model));
        c.embedding_dimensions = e->model->weights->config().n_embd;
      }
      c.max_model_len = len;
      cards.push_back(std::move(c));
    }
  };
  srv.Get("/v1/models", [list_models](const httplib::Request&, httplib::Response& res) {
    std::vector<openai::model_card> cards;
    list_models(cards);
    res.set_content(openai::write_model_list(cards), "application/json");
  });
  srv.Get(R"(/v1/models/(.+))", [list_models](const httplib::Request& req, httplib::Response& res) {
    std::vector<openai::model_card> cards;
    list_models(cards);
    for (auto& c : cards)
      if (c.id == req.matches[1]) return res.set_content(openai::write_model(c), "application/json");
    send_error(res, server_error(404, fmt::format("The model `{}` does not exist", std::string(req.matches[1])),
                                 "invalid_request_error", "model_not_found"));
  });

  auto gather = [&fe](router_stats& rs, std::vector<actor_stats>& actors) {
    caf::scoped_actor self{fe.sys};
    self->request(fe.router, std::chrono::seconds(5), stats_atom::value)
        .receive([&](router_stats& s) { rs = std::move(s); }, [](caf::error&) {});
    for (const router_actor& r : fe.opts.replicas)  // their decisions count too
      self->request(r, std::chrono::seconds(5), stats_atom::value)
          .receive([&](router_stats& s) { merge_router_stats(rs, s); }, [](caf::error&) {});
    self->request(fe.router, std::chrono::seconds(15), metrics_atom::value)
        .receive([&](std::vector<actor_stats>& a) { actors = std::move(a); }, [](caf::error&) {});
  };
  srv.Get("/metrics", [&fe, gather](const httplib::Request&, httplib::Response& res) {
    router_stats rs;
    std::vector<actor_stats> actors;
    gather(rs, actors);
    res.set_content(fe.stats->render(rs, actors), "text/plain; version=0.0.4");
  });
  srv.Get("/v1/actors", [gather](const httplib::Request&, httplib::Response& res) {
    router_stats rs;
    std::vector<actor_stats> actors;
    gather(rs, actors);
    nlohmann::json list = nlohmann::json::array();
    for (const actor_stats& a : actors) {
      nlohmann::json j = {{"node", a.node},         {"actor", a.actor}, {"role", a.role},
                          {"mailbox_size", a.mailbox_size}, {"messages_total", a.messages_total},
                          {"handling_seconds", a.handling_seconds}};
      if (a.role == "worker") {
        j["engine"] = {{"running", a.running}, {"waiting", a.waiting}, {"kv_blocks_used", a.kv_blocks_used},
                       {"kv_blocks_total", a.kv_blocks_total}};
        if (!a.decoding_type.empty())
          j["engine"]["speculative"] = {{"decoding_type", a.decoding_type},
                                        {"draft_tokens", a.draft_tokens},
                                        {"accepted_draft_tokens", a.accepted_draft_tokens}};
        // Its serving role (aggregated, prefill, decode) and replication unit, and the KV it
        // received or failed to move (disaggregated serving).
        j["worker_role"] = a.worker_role;
        j["unit"] = a.unit;
        if (a.worker_role != "aggregated")
          j["kv_transfer"] = {{"transfers", a.kv_transfers},
                              {"blocks", a.kv_transfer_blocks},
                              {"bytes", a.kv_transfer_bytes},
                              {"skipped_blocks", a.kv_transfer_skipped_blocks},
                              {"failures", a.kv_transfer_failures}};
      }
      list.push_back(std::move(j));
    }
    nlohmann::json workers = nlohmann::json::array();
    for (size_t i = 0; i < rs.workers.size(); ++i)
      workers.push_back({{"worker", rs.workers[i]},
                         {"model", rs.models[i]},
                         {"role", i < rs.roles.size() ? rs.roles[i] : "aggregated"},
                         {"alive", rs.alive[i] != 0},
                         {"in_sync", rs.in_sync[i] != 0},
                         {"in_flight_tokens", rs.in_flight_tokens[i]},
                         {"in_flight_requests", rs.in_flight_requests[i]},
                         {"active_blocks", rs.active_blocks[i]},
                         {"queued_prefill_blocks", rs.queued_prefill_blocks[i]},
                         {"routed", rs.routed_requests[i]},
                         {"prompt_tokens", rs.worker_prompt_tokens[i]},
                         {"cached_tokens", rs.worker_cached_tokens[i]},
                         {"kv_events", rs.kv_events[i]},
                         {"kv_event_gaps", rs.kv_event_gaps[i]},
                         {"kv_dumps", rs.kv_dumps[i]},
                         {"kv_replays", rs.kv_replays[i]},
                         {"kv_cached_blocks", rs.kv_cached_blocks[i]},
                         {"status", i < rs.status.size() ? rs.status[i] : rs.alive[i] != 0 ? "active" : "lost"}});
    nlohmann::json models = nlohmann::json::array();
    for (const router_model_stats& m : rs.model_stats)
      models.push_back({{"model", m.model},
                        {"policy", m.policy},
                        {"router_queue_policy", m.queue_policy},
                        {"router_overlap_score_weight", m.overlap_score_weight},
                        {"router_temperature", m.temperature},
                        {"window_s", m.window_s},
                        {"prompt_tokens", m.prompt_tokens},
                        {"cached_tokens", m.cached_tokens},
                        {"estimated_cached_tokens", m.estimated_cached_tokens},
                        {"best_prefix_tokens", m.best_prefix_tokens},
                        {"queued", m.queued},
                        {"queue_capacity", m.queue_capacity},
                        {"rejected", m.rejected}});
    nlohmann::json j = {{"object", "list"},
                        {"data", list},
                        {"router",
                         {{"name", rs.router},
                          {"requests", rs.requests},
                          {"retried", rs.retried},
                          {"failed", rs.failed},
                          {"aborted", rs.aborted},
                          {"peers", rs.peers},
                          {"kv_events_applied", rs.kv_events_applied},
                          {"kv_index_entries", rs.kv_index_entries},
                          {"kv_index_bytes", rs.kv_index_bytes},
                          {"decisions", rs.decision_seconds.count},
                          {"decision_seconds_mean",
                           rs.decision_seconds.count ? rs.decision_seconds.sum / static_cast<double>(rs.decision_seconds.count) : 0.0},
                          {"models", models},
                          {"workers", workers}}},
                        {"autoscalers", nlohmann::json::parse(autoscalers_json(rs))}};
    res.set_content(j.dump(), "application/json");
  });

  srv.Post("/v1/chat/completions",
           [&fe](const httplib::Request& req, httplib::Response& res) { fe.handle_chat(req, res); });
  srv.Post("/v1/completions",
           [&fe](const httplib::Request& req, httplib::Response& res) { fe.handle_completion(req, res); });
  srv.Post("/v1/embeddings",
           [&fe](const httplib::Request& req, httplib::Response& res) { fe.handle_embeddings(req, res); });

  add_status_routes(fe, srv);

  // The management API.
  auto management_call = [&fe](httplib::Response& res, const config::http_response& r) {
    res.status = r.status;
    res.set_content(r.body, "application/json");
  };
  srv.Post("/v1/llm_models", [&fe, management_call](const httplib::Request& req, httplib::Response& res) {
    if (!fe.management) return send_error(res, server_error(404, "the management API is off (no --state-dir)", "invalid_request_error", "not_found"));
    config::http_response r = fe.management->create(req.body);
    if (r.status == 201 && fe.on_created) {
      const auto id = nlohmann::json::parse(r.body, nullptr, false).value("id", std::string());
      if (auto d = fe.store->get(id)) {
        const std::string err = fe.on_created(*d);
        if (!err.empty()) {
          (void)fe.store->remove(id);
          return send_error(res, server_error(400, "the deployment could not start: " + err, "invalid_request_error",
                                              "deployment_failed"));
        }
      }
    }
    management_call(res, r);
  });
  srv.Get("/v1/llm_models", [&fe, management_call](const httplib::Request&, httplib::Response& res) {
    if (!fe.management) return send_error(res, server_error(404, "the management API is off (no --state-dir)", "invalid_request_error", "not_found"));
    management_call(res, fe.management->list());
  });
  srv.Get(R"(/v1/llm_models/(.+))", [&fe, management_call](const httplib::Request& req, httplib::Response& res) {
    if (!fe.management) return send_error(res, server_error(404, "the management API is off (no --state-dir)", "invalid_request_error", "not_found"));
    management_call(res, fe.management->get(std::string(req.matches[1])));
  });
  srv.Delete(R"(/v1/llm_models/(.+))", [&fe, management_call](const httplib::Request& req, httplib::Response& res) {
    if (!fe.management) return send_error(res, server_error(404, "the management API is off (no --state-dir)", "invalid_request_error", "not_found"));
    auto before = fe.store->get(std::string(req.matches[1]));
    config::http_response r = fe.management->remove(std::string(req.matches[1]));
    if (r.status == 200 && before && fe.on_removed) fe.on_removed(*before);
    management_call(res, r);
  });
  srv.Patch(R"(/v1/llm_models/(.+))", [&fe, management_call](const httplib::Request& req, httplib::Response& res) {
    const std::string id(req.matches[1]);
    // The model troupe serve started with (a deployment of that name comes first).
    if (fe.on_startup_update && id == fe.startup_model && !(fe.store && fe.store->get(id))) {
      config::startup_update u = config::parse_startup_update(req.body);
      if (!u.settings) return management_call(res, u.error);
      if (const std::string err = fe.on_startup_update(*u.settings); !err.empty())
        return send_error(res, server_error(400, err, "invalid_request_error", "not_autoscaled"));
      return management_call(res, config::startup_update_response(id, *u.settings));
    }
    if (!fe.management) return send_error(res, server_error(404, "the management API is off (no --state-dir)", "invalid_request_error", "not_found"));
    config::http_response r = fe.management->update(std::string(req.matches[1]), req.body);
    if (r.status == 200 && fe.on_updated)
      if (auto d = fe.store->get(std::string(req.matches[1]))) fe.on_updated(*d);
    management_call(res, r);
  });

  if (fe.opts.port == 0) {
    fe.bound_port = srv.bind_to_any_port(fe.opts.host);
    if (fe.bound_port <= 0) return make_error(fmt::format("cannot listen on {}: no free port", fe.opts.host));
  } else {
    if (!srv.bind_to_port(fe.opts.host, fe.opts.port))
      return make_error(fmt::format("cannot listen on {}:{}: {}", fe.opts.host, fe.opts.port, std::strerror(errno)));
    fe.bound_port = fe.opts.port;
  }
  if (!srv.raise_backlog(4096))
    return make_error(fmt::format("cannot raise the listen backlog: {}", std::strerror(errno)));
  fe.listener = std::thread([&srv] { srv.listen_after_bind(); });
  return {};
}

result<std::string> http_get(const std::string& url, const std::string& api_key) {
  const size_t scheme = url.find("://");
  const size_t path_at = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  const std::string base = path_at == std::string::npos ? url : url.substr(0, path_at);
  const std::string path = path_at == std::string::npos ? "/" : url.substr(path_at);
  httplib::Client cli(base);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(30);
  httplib::Headers headers;
  if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
  auto res = cli.Get(path, headers);
  if (!res) return make_error(fmt::format("{}: {}", url, httplib::to_string(res.error())));
  if (res->status != 200) return make_error(fmt::format("{}: HTTP {}: {}", url, res->status, res->body));
  return res->body;
}

}  // namespace troupe
