// cmd_config: `troupe config validate|migrate FILE`.
#pragma once

#include <string>
#include <vector>

// Runs `troupe config ARGS...` (the words after "config") and returns the exit status:
// 0 valid / migrated cleanly, 1 the file has errors, 2 the command line or a file is unusable.
int run_config_command(const std::vector<std::string>& args);
