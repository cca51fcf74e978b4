// version: `troupe --version`: what this binary is (version, commit, build) and what it can
// use on this machine (the CPU kernels it dispatches to, CUDA and the GPUs it sees).
#pragma once

#include <string>

namespace troupe {

std::string version_text();

}  // namespace troupe
