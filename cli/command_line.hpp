// command_line: what the parser of every troupe command shares: help that lists each option
// with its default, accepted values and environment variable, in groups; validators whose
// errors say what is accepted; and one reading of CLI11's outcomes into exit statuses.
//
// Each command (cli/cmd_*.cpp) builds its own CLI::App, calls setup() on it before adding
// options, and parse() on the words after its name; main.cpp hands those words over, so a
// command's --help is always answered by the command's own parser.
//
// Help lines read (tests/cli/help_test.cpp parses them, and README.md's tables follow them):
//   --port PORT                 HTTP port; 0: any free port [0 to 65535] [default: 8000]
//   --api-key KEY               require 'Authorization: Bearer KEY' [env: TROUPE_API_KEY]
//   --role ROLE                 ... [values: control, worker] [required]
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace troupe::cli {

// Exit statuses of every command: 0 done; 1 the work failed (a model would not load, a file
// has errors, no GPU); 2 the command line is wrong (an unknown option, a bad value, a missing
// argument), with a message naming the option and what it accepts.
inline constexpr int exit_usage = 2;

// The option groups of --help. Options that name none are listed under "Options".
namespace group {
inline constexpr const char* model = "Model";
inline constexpr const char* server = "Server";
inline constexpr const char* cluster = "Cluster";
inline constexpr const char* engine = "Engine";
inline constexpr const char* sampling = "Sampling";
inline constexpr const char* workload = "Workload";
inline constexpr const char* output = "Output";
inline constexpr const char* observability = "Observability";
}  // namespace group

// Gives a command's parser troupe's help layout and records each option's default as it is
// added. Call it right after constructing the App, before adding options or subcommands
// (they inherit both).
void setup(CLI::App& app);

// Parses `args`, the words after the command's name. nullopt: go on and run the command.
// Otherwise the exit status to return at once: 0 after --help (printed to stdout), or
// exit_usage after a command-line error (printed to stderr with the help line of the option
// it names and the command to ask for --help).
[[nodiscard]] std::optional<int> parse(CLI::App& app, const std::vector<std::string>& args);

// A command-line error found after parsing (an option another one needs): printed as
// parse() prints its errors; returns exit_usage.
int usage_error(const CLI::App& app, const std::string& message);

// Environment variables a command reads besides those of its options; --help lists them last.
void add_environment(CLI::App& app, const std::string& name, const std::string& what);
void add_kernel_environment(CLI::App& app);    // TROUPE_ISA
void add_hf_cache_environment(CLI::App& app);  // HF_HUB_CACHE, HF_HOME

// Validators. Each shows in --help as "[what it accepts]" and fails as
// "--option: must be <what it accepts>, not <value>".
CLI::Validator one_of(std::vector<std::string> values);  // [values: a, b]
CLI::Validator at_least(double min);                     // [at least 1]
CLI::Validator above(double min);                        // [above 0]
CLI::Validator between(double lo, double hi);            // [0 to 65535]
CLI::Validator above_up_to(double lo, double hi);        // [above 0, at most 1]
CLI::Validator device_name();                            // cpu, cuda, cuda:N
CLI::Validator host_port();                              // HOST:PORT
CLI::Validator memory_size();                            // as kv_cache_memory in config.yaml
CLI::Validator existing_path();                          // a file or folder that exists (not shown)

}  // namespace troupe::cli
