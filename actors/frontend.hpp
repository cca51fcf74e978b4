// frontend: the OpenAI-compatible HTTP server (cpp-httplib, the only place that includes it,
// with simdjson through openai_api). It parses and validates requests, applies the chat
// template, tokenizes, hands each choice to the router as an engine request with a stream
// actor to receive its deltas, and streams SSE chunks or answers with one JSON body. A client
// that disconnects aborts its requests. It also serves /health, /v1/models, /metrics,
// /v1/actors and the management API (/v1/llm_models).
//
// It does not own the engines, the routing or the model weights: workers do.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "actors/protocol.hpp"
#include "runtime/result.hpp"

namespace troupe {

struct model_bundle;
class metrics;

namespace config {
class management_api;
class deployment_store;
struct deployment;
struct autoscaling_settings;
}

// The models the frontend can tokenize for: name -> bundle and its context length.
class model_registry {
 public:
  struct entry {
    std::shared_ptr<const model_bundle> model;
    int64_t max_seq_len = 0;
    int64_t created = 0;  // unix seconds
  };
  void add(const std::string& name, entry e);
  void remove(const std::string& name);
  std::shared_ptr<const entry> get(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const entry>> models_;
};

struct frontend_options {
  std::string host = "0.0.0.0";
  int port = 8000;               // 0: any free port (see frontend::port)
  std::string api_key;           // empty: no authentication
  int max_in_flight = 512;       // HTTP requests being served; beyond that, 429
  size_t max_body_bytes = 16u << 20;
  double idle_timeout_s = 600;   // a request with no news from its worker for this long fails
  std::string node = "local";
  std::vector<router_actor> replicas;  // more routers (replicas of the first) to spread requests over
  std::string status_json = "{}";  // the deployment as `troupe serve` settled it, for /v1/status
};

class frontend {
 public:
  frontend(caf::actor_system& sys, router_actor router, std::shared_ptr<model_registry> models,
           std::shared_ptr<metrics> m, frontend_options options);
  ~frontend();
  frontend(const frontend&) = delete;
  frontend& operator=(const frontend&) = delete;

  // The management API over a deployment store; on_created starts a new deployment's
  // workers (an error message if it cannot; the deployment is then removed again), on_removed
  // stops them.
  void set_management(config::deployment_store* store,
                      std::function<std::string(const config::deployment&)> on_created,
                      std::function<void(const config::deployment&)> on_removed);

  // PATCH /v1/llm_models/{id} changed a deployment's autoscaling_settings: on_updated hands
  // them to its autoscaler (they take effect at its next decision, without a restart).
  void set_management_update(std::function<void(const config::deployment&)> on_updated);

  // PATCH /v1/llm_models/{model} of the model `troupe serve` started with (not a deployment;
  // with or without --state-dir): valid autoscaling_settings go to on_update, which hands them
  // to the model's autoscaler ("" when it did, else why it cannot: a 400 error).
  void set_startup_update(std::string model, std::function<std::string(const config::autoscaling_settings&)> on_update);

  // Binds (with a listen backlog far above cpp-httplib's 5) and serves on its own threads.
  [[nodiscard]] status start();
  // Refuses new generation requests (503) and waits up to timeout_s for the ones in flight to
  // finish; /health says "draining" meanwhile. Returns how many were still running.
  int drain(double timeout_s);
  void stop();
  int port() const;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

// GET url (http://host:port/path) with a timeout: the body, or an error naming the URL.
// (The CLI's `troupe actors` uses it; cpp-httplib stays inside the frontend's files.)
[[nodiscard]] result<std::string> http_get(const std::string& url, const std::string& api_key = "");

}  // namespace troupe
