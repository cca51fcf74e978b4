// plot: `troupe bench ... --plot FILE.png`: a benchmark's JSON drawn by scripts/plot_bench.py
// (compiled into the binary, so it needs no source tree) with python3 and matplotlib.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.hpp"

namespace troupe {

// Runs $TROUPE_PYTHON (default /usr/bin/python3, Debian's, where python3-matplotlib
// installs) on the result; the script's own message is the error when it fails.
[[nodiscard]] status plot_bench_result(const nlohmann::json& result, const std::string& png);

}  // namespace troupe
