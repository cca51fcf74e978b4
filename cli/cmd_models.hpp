// troupe models: what the local Hugging Face cache holds, and whether troupe can serve each.
#pragma once

#include <string>
#include <vector>

int run_models_command(const std::vector<std::string>& args);
