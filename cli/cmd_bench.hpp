// troupe bench: benchmarks that print JSON figures (engine now; router and serve later).
#pragma once

#include <string>
#include <vector>

int run_bench_command(const std::vector<std::string>& args);
