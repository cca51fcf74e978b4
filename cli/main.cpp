// troupe: the command line. Each command lives in its own file (cli/cmd_*.cpp) and parses the
// words after its name with its own CLI::App, so that `troupe serve --help` is answered by the
// parser that knows serve's options. This top-level parser only picks the command and answers
// `troupe --help` and `troupe --version`.
//
// A new command: a row in `commands` below, and a run function that builds
// `CLI::App app{"What it does.", "troupe NAME"}`, calls cli::setup(app) before adding options
// and `if (auto rc = cli::parse(app, args)) return *rc;` (cli/command_line.hpp), and README.md
// rows for its options (tests/cli/help_test.cpp checks them).
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/cmd_actors.hpp"
#include "cli/cmd_bench.hpp"
#include "cli/cmd_config.hpp"
#include "cli/cmd_generate.hpp"
#include "cli/cmd_models.hpp"
#include "cli/cmd_serve.hpp"
#include "cli/command_line.hpp"
#include "cli/version.hpp"
#include "config/map_reader.hpp"

namespace {

struct command {
  std::string_view name;
  const char* about;
  int (*run)(const std::vector<std::string>& args);
};

const command commands[] = {
    {"serve", "serve a model over an OpenAI-compatible API, every actor in this process", run_serve_command},
    {"node", "run one node of a multi-process deployment (control or worker)", run_node_command},
    {"generate", "generate text offline, with no server", run_generate_command},
    {"bench", "run a benchmark and print JSON results (engine, serve, router)", run_bench_command},
    {"config", "validate a config.yaml, or migrate a v1 one to v2", run_config_command},
    {"actors", "list the actors of a running deployment with their metrics", run_actors_command},
    {"models", "list the models in the local Hugging Face cache and whether troupe serves each", run_models_command},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2)
    for (const command& c : commands)
      if (argv[1] == c.name) return c.run(std::vector<std::string>(argv + 2, argv + argc));

  CLI::App app{"troupe: an LLM serving runtime. 'troupe COMMAND --help' lists a command's options.", "troupe"};
  troupe::cli::setup(app);
  app.set_version_flag("--version", troupe::version_text,
                       "print the version, the git commit, the build, the CPU kernels used on this machine, "
                       "and whether CUDA is compiled in and a GPU is seen");
  app.require_subcommand(1);
  std::vector<std::string> names;
  for (const command& c : commands) {
    app.add_subcommand(std::string(c.name), c.about);
    names.emplace_back(c.name);
  }
  if (argc == 1) return troupe::cli::usage_error(app, "name a command");
  const std::string first = argv[1];
  if (first != "-h" && first != "--help" && first != "--version") {
    std::string msg = (first[0] == '-' ? "unknown option " : "unknown command ") + first;
    if (std::string s = troupe::config::did_you_mean(first, names); first[0] != '-' && !s.empty())
      msg += "; did you mean " + s + "?";
    return troupe::cli::usage_error(app, msg);
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  if (auto rc = troupe::cli::parse(app, args)) return *rc;
  return troupe::cli::exit_usage;  // not reached: a command's name is dispatched above
}
