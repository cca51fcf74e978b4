// What serve_bench.cpp shares with the workloads in their own files (mixed_bench.cpp): the
// started server process and the helpers that read a server. Not part of the bench's API.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "bench/serve_bench.hpp"
#include "runtime/result.hpp"

namespace troupe::bench::detail {

// A `troupe serve` child process (stopped with SIGTERM, then SIGKILL, when destroyed); its
// URL once it says where it listens.
struct server_process {
  pid_t pid = -1;
  std::string url;
  ~server_process();
};

// `troupe serve --model o.model` on a free loopback port, with the options' server flags.
[[nodiscard]] result<std::unique_ptr<server_process>> start_server(const serve_bench_options& o);
// The name of the first model a server lists on /v1/models.
[[nodiscard]] result<std::string> first_model(const std::string& url);
// Without --model: the random-weight 22 M-parameter model, written once.
[[nodiscard]] result<std::string> default_bench_model();
// mean, p50, p90 and p99 of seconds, in milliseconds.
nlohmann::json percentiles_ms(const std::vector<double>& v);

}  // namespace troupe::bench::detail

namespace troupe::bench {
// --workload mixed (mixed_bench.cpp).
[[nodiscard]] result<nlohmann::json> run_mixed_bench(serve_bench_options o);
}  // namespace troupe::bench
