// serve_bench: `troupe bench serve`: a `troupe serve` process under a bounded streaming load
// on loopback; prints throughput, time to first token, inter-token latency, errors, the
// server's memory over the run and its KV blocks afterwards. Several concurrency levels run
// one after another against the same server (latency over load): the JSON then has "runs".
// `--workload multi-turn` runs an agent loop instead (users x turns, each turn resending the
// whole history) once per routing policy, each against a fresh server, and prints time to
// first token, the router's hit-rate metrics and the load per worker for each.
// `--workload ramp` starts a server with token-based autoscaling and then one with a fixed
// single replica, runs the same rising and falling load against each, and prints replicas and
// in-flight tokens over time and time to first token for both.
// `--workload mixed` (bench/mixed_bench.cpp) runs short decoding streams alone and then with
// long prompts of held-out code arriving among them, against one server (a disaggregated one
// through --llm-config): the streams' inter-token latency in both phases, the long prompts'
// time to first token, and the server's kv_transfer_* figures when it has them.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe::bench {

struct serve_bench_options {
  std::string url;     // an existing server; or else:
  std::string model;   // start `troupe serve --model MODEL` on a free port
  std::string troupe;  // the troupe binary to start (default: this one)
  std::string served_name;
  int workers = 1;
  std::string kv_cache_memory = "1GiB";
  std::vector<int> concurrency = {64};  // one run per level, against the same server
  double duration_s = 30;
  int max_tokens = 32;
  int prompt_words = 48;
  bool chat = false;
  // --workload multi-turn
  std::string workload;               // "" (the streaming load above) or "multi-turn"
  std::vector<std::string> routing = {"kv", "round-robin", "least-loaded"};  // a server per policy
  std::string simulate;               // COSTS.json: the started server's workers are simulated
  int threads = 0;                    // per engine of the started server (0: its default)
  int users = 16;
  int turns = 6;
  int system_words = 300;
  int turn_words = 30;
  // --workload ramp: the load rises to the highest --concurrency and falls over --duration,
  // against an autoscaled server (1 to max_replica replicas) and then a fixed single replica.
  int max_replica = 3;
  int64_t target_in_flight_tokens = 0;  // 0: the peak's in-flight tokens over max_replica
  std::string llm_config;  // --llm-config of the started server (ramp: set per run)
  // --workload mixed: --concurrency short streams (--prompt-words, --max-tokens), and long
  // prompts arriving among them.
  double long_rate = 0.5;        // long prompts per second
  int long_prompt_tokens = 800;  // about, each
  int long_max_tokens = 8;
  std::string code_dir = "/usr/lib/python3.11";  // the held-out Python files
};

[[nodiscard]] result<nlohmann::json> run_serve_bench(const serve_bench_options& o);

}  // namespace troupe::bench
