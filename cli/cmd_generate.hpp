// troupe generate: text generation offline, with no server.
#pragma once

#include <string>
#include <vector>

int run_generate_command(const std::vector<std::string>& args);
