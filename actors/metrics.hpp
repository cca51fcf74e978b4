// metrics: the Prometheus side of troupe (the only file pair that includes prometheus-cpp).
// Request-level figures are recorded by the frontend as requests end; router and actor
// figures are read when /metrics is scraped. Names follow DESIGN.md.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace troupe {

struct actor_stats;
struct router_stats;

class metrics {
 public:
  metrics();
  ~metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  void request_started(const std::string& model);
  // seconds: arrival to last token; completion tokens per second is tps_per_request.
  void request_finished(const std::string& model, int64_t prompt_tokens, int64_t completion_tokens,
                        double seconds, bool ok);

  // A request that produced output: seconds from arrival to its first token, and mean seconds
  // per output token after it (tpot_s < 0: it had one token).
  void request_latency(const std::string& model, double ttft_s, double tpot_s);

  // Prometheus text exposition of everything, with the router's and actors' figures now.
  std::string render(const router_stats& router, const std::vector<actor_stats>& actors);

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
