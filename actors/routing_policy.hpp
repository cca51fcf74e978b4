// routing_policy: how the router picks a worker for a request. Plain C++ behind a narrow
// interface, so that policies are tested without actors: KV-aware (the default), least
// loaded, round robin and random.
//
// The KV-aware policy, per worker of the request's model (every count in KV blocks):
//
//   overlap  = the longest prefix of the request's blocks the worker holds, by the KV index,
//              or by what the router gave it and has not yet seen in its events
//   prefill  = (request_blocks - overlap) + queued_prefill_blocks
//   decode   = active_blocks + request_blocks
//   cost     = router_overlap_score_weight x prefill + decode
//
// router_temperature 0 picks the lowest cost (ties: fewer active blocks, then at random);
// above 0 it samples worker i with probability proportional to
//
//   exp(-(cost_i - min cost) / cold / temperature),  cold = (weight + 1) x request_blocks
//
// cold is the request's cost on an idle worker that holds none of it, so the temperature is
// a share of the request's own cost: at 0.05, a worker 5% of a cold request dearer than the
// best is e times less likely. A scale that does not depend on the other workers keeps the
// best worker's share whatever their number (normalising by the spread between the best and
// the worst worker gave 255 cold, idle workers of 256 ~93% of the draws at 0.05, taking
// requests away from the one worker holding their prefix). All equal: uniform.
// Defaults are the reference's: weight 3.5, temperature 0.05.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>

#include "runtime/result.hpp"

namespace troupe {

struct worker_view {
  std::string_view name;
  int64_t in_flight_tokens = 0;  // prompt + max_tokens of what it was given and has not finished
  int32_t in_flight_requests = 0;
  int32_t kv_blocks_total = 0;
  int32_t overlap_blocks = 0;         // leading blocks of this request it holds (or soon will)
  int64_t active_blocks = 0;          // prompt blocks of the requests it was given, not finished
  int64_t queued_prefill_blocks = 0;  // of those, blocks not cached that it has not prefilled yet
};

struct route_request_view {
  std::span<const int32_t> prompt;
  int32_t max_tokens = 0;
  int32_t request_blocks = 0;  // the prompt's KV blocks, a partial last block included
};

class routing_policy {
 public:
  virtual ~routing_policy() = default;
  // An index into workers (never empty).
  virtual size_t choose(const route_request_view& request, std::span<const worker_view> workers) = 0;
  virtual std::string name() const = 0;
};

struct kv_policy_options {
  double overlap_score_weight = 3.5;  // b10_routing_config.router_overlap_score_weight
  double temperature = 0.05;          // b10_routing_config.router_temperature
  uint64_t seed = 0;                  // for the samples (ties and temperature)
};

// The cost the KV-aware policy gives a worker (the formula above).
double kv_cost(const route_request_view& request, const worker_view& worker, double overlap_score_weight);

std::unique_ptr<routing_policy> make_kv_policy(const kv_policy_options& options);
// Fewest in-flight tokens; ties go to fewer requests, then round robin.
std::unique_ptr<routing_policy> make_least_loaded_policy();
std::unique_ptr<routing_policy> make_round_robin_policy();
std::unique_ptr<routing_policy> make_random_policy(uint64_t seed);

// The names of --routing: kv, least-loaded, round-robin, random.
enum class routing_kind { kv, least_loaded, round_robin, random };
[[nodiscard]] result<routing_kind> parse_routing_kind(std::string_view name);
std::string_view to_string(routing_kind k);
std::unique_ptr<routing_policy> make_policy(routing_kind k, const kv_policy_options& kv);

}  // namespace troupe
