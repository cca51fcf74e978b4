// troupe serve and troupe node: one process with every actor, or one node of a cluster.
#pragma once

#include <string>
#include <vector>

int run_serve_command(const std::vector<std::string>& args);
int run_node_command(const std::vector<std::string>& args);
