// troupe actors: the actors of a running deployment with their metrics, as a table.
#pragma once

#include <string>
#include <vector>

int run_actors_command(const std::vector<std::string>& args);
