// frontend_internal: what the frontend's files share: its state, the channel between a
// request's stream actor and the HTTP thread serving it, and the client-connection probe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "actors/frontend.hpp"
#include "actors/openai_api.hpp"

namespace httplib {
struct Request;
struct Response;
class Server;
}  // namespace httplib

namespace troupe {

// Deltas from a request's stream actor to the HTTP thread that serves it.
class delta_channel {
 public:
  void push(token_delta d);
  // Waits up to timeout for at least one delta, then moves every waiting one into out.
  bool pop_all(std::vector<token_delta>& out, std::chrono::milliseconds timeout);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<token_delta> q_;
};

// Receives the deltas of n engine requests; quits after the last.
stream_actor spawn_stream_actor(caf::actor_system& sys, std::shared_ptr<delta_channel> ch, size_t n_requests);

// Watches the TCP connection a request came on, to notice a client that went away while
// its request runs (cpp-httplib gives handlers no socket; the connection is found by its
// addresses, and checked again each time, so a reused descriptor is never mistaken for it).
class connection_probe {
 public:
  explicit connection_probe(const httplib::Request& req);
  bool client_gone();

 private:
  int fd_ = -1;
  std::string peer_;
  int peer_port_ = 0;
  int local_port_ = 0;
};

struct frontend::impl {
  caf::actor_system& sys;
  router_actor router;
  std::shared_ptr<model_registry> models;
  std::shared_ptr<metrics> stats;
  frontend_options opts;
  std::atomic<int> in_flight{0};
  std::atomic<bool> draining{false};
  config::deployment_store* store = nullptr;
  std::unique_ptr<config::management_api> management;
  std::function<std::string(const config::deployment&)> on_created;
  std::function<void(const config::deployment&)> on_removed;
  std::function<void(const config::deployment&)> on_updated;
  std::string startup_model;  // PATCH of it goes to on_startup_update
  std::function<std::string(const config::autoscaling_settings&)> on_startup_update;
  struct server;
  std::unique_ptr<server> srv;
  std::thread listener;
  int bound_port = 0;

  std::atomic<size_t> next_router{0};

  impl(caf::actor_system& s, router_actor r, std::shared_ptr<model_registry> m, std::shared_ptr<metrics> st,
       frontend_options o);
  // The router for a new request: the routers (replicas) take turns.
  router_actor pick_router() {
    const size_t n = 1 + opts.replicas.size(), i = next_router++ % n;
    return i == 0 ? router : opts.replicas[i - 1];
  }
  ~impl();

  void handle_chat(const httplib::Request& req, httplib::Response& res);
  void handle_completion(const httplib::Request& req, httplib::Response& res);
  void handle_embeddings(const httplib::Request& req, httplib::Response& res);
};

// How /v1/embeddings pools a model's final hidden states: mean for the decoder-only models
// troupe loads (every token's state; the last token's alone carries mostly what comes next).
pooling embedding_pooling_of(const model_bundle& m);

// The status page at / and /v1/status (frontend_status.cpp).
void add_status_routes(frontend::impl& fe, httplib::Server& srv);
// Each model's autoscaler as /v1/actors and /v1/status show it: settings, load, replicas and
// the decision log (JSON text, so that this header needs no JSON library).
std::string autoscalers_json(const router_stats& rs);

// Writes an OpenAI error body with its status.
void send_error(httplib::Response& res, const openai::api_error& e);

}  // namespace troupe
