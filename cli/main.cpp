// troupe: the command line. Each subcommand lives in its own file.
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/cmd_actors.hpp"
#include "cli/cmd_bench.hpp"
#include "cli/cmd_config.hpp"
#include "cli/cmd_generate.hpp"
#include "cli/cmd_models.hpp"
#include "cli/cmd_serve.hpp"


int main(int argc, char** argv) {
  CLI::App app{"troupe: an LLM serving runtime"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "troupe 0.1.0");

  auto* serve = app.add_subcommand("serve", "serve a model over an OpenAI-compatible API");
  serve->prefix_command();  // everything after the name is the subcommand's own
  auto* node = app.add_subcommand("node", "run one node of a multi-process deployment");
  node->prefix_command();  // everything after the name is the subcommand's own
  auto* generate = app.add_subcommand("generate", "generate text offline, with no server");
  generate->prefix_command();  // everything after the name is the subcommand's own
  auto* bench = app.add_subcommand("bench", "run a benchmark and print JSON results");
  bench->prefix_command();  // everything after the name is the subcommand's own
  auto* config = app.add_subcommand("config", "validate or migrate a config.yaml");
  config->prefix_command();  // everything after the name is the subcommand's own
  auto* actors = app.add_subcommand("actors", "list the actors of a running deployment");
  actors->prefix_command();  // everything after the name is the subcommand's own
  auto* models = app.add_subcommand("models", "list the models in the local Hugging Face cache");
  models->prefix_command();  // everything after the name is the subcommand's own

  CLI11_PARSE(app, argc, argv);

  if (*serve) return run_serve_command(serve->remaining());
  if (*node) return run_node_command(node->remaining());
  if (*generate) return run_generate_command(generate->remaining());
  if (*bench) return run_bench_command(bench->remaining());
  if (*config) return run_config_command(config->remaining());
  if (*actors) return run_actors_command(actors->remaining());
  if (*models) return run_models_command(models->remaining());
  return 2;
}
