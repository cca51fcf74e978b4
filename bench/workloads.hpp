// workloads: the serving engine under request streams (`troupe bench engine --workload`).
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe {
class checkpoint;
}

namespace troupe::bench {

struct engine_bench_options;

[[nodiscard]] result<nlohmann::json> run_workload(const std::string& name, std::shared_ptr<const checkpoint> ck,
                                                  int threads, const engine_bench_options& o);

}  // namespace troupe::bench
