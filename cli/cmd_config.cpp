// cmd_config: `troupe config validate FILE` and `troupe config migrate FILE`.
#include "cli/cmd_config.hpp"

#include <cstdio>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/command_line.hpp"
#include "config/atomic_file.hpp"
#include "config/checkpoint.hpp"
#include "config/config.hpp"
#include "config/migrate.hpp"

namespace {

using namespace troupe::config;

std::string dir_of(const std::string& file) {
  std::filesystem::path p = std::filesystem::absolute(file).parent_path();
  return p.empty() ? "." : p.string();
}

void print_errors(std::FILE* out, const error_list& errors, const std::string& file) {
  std::fputs(format_errors(errors, file).c_str(), out);
}

int validate(const std::string& file, bool schema_only) {
  auto text = read_file(file);
  if (!text.ok()) {
    std::fprintf(stderr, "troupe config validate: %s\n", text.message().c_str());
    return 2;
  }
  auto c = parse_config_yaml(*text);
  error_list errors = std::move(c.errors);
  // The checkpoint is looked up only in a file whose build block could be read.
  const bool build_ok = std::none_of(errors.begin(), errors.end(), [](const config_error& e) {
    return e.path.rfind("trt_llm.build.checkpoint_repository", 0) == 0 ||
           e.path == "trt_llm.build" || e.path == "trt_llm" || e.path.empty();
  });
  if (!schema_only && build_ok) {
    auto r = resolve_checkpoint(c.value.build.checkpoint, hf_cache_from_environment(),
                                dir_of(file));
    errors.insert(errors.end(), r.errors.begin(), r.errors.end());
  }
  if (errors.empty()) {
    std::printf("%s: valid\n", file.c_str());
    return 0;
  }
  print_errors(stdout, errors, file);
  std::printf("%s: %zu error%s\n", file.c_str(), errors.size(), errors.size() == 1 ? "" : "s");
  return 1;
}

int migrate(const std::string& file, const migrate_options& options, const std::string& output) {
  auto text = read_file(file);
  if (!text.ok()) {
    std::fprintf(stderr, "troupe config migrate: %s\n", text.message().c_str());
    return 2;
  }
  auto m = migrate_to_v2(*text, options);
  if (!m.ok()) {
    print_errors(stderr, m.errors, file);
    return 1;
  }
  if (output.empty()) {
    std::fputs(m.value.text.c_str(), stdout);
    std::fflush(stdout);
  } else {
    std::filesystem::path out = std::filesystem::absolute(output);
    auto s = write_file_atomic(out.parent_path().string(), out.filename().string(), m.value.text);
    if (!s.ok()) {
      std::fprintf(stderr, "troupe config migrate: %s\n", s.message().c_str());
      return 2;
    }
  }
  for (const auto& n : m.value.notes) std::fprintf(stderr, "note: %s\n", n.c_str());
  // What the seven steps cannot fix (unknown fields, values out of range) is reported now.
  auto check = parse_config_yaml(m.value.text);
  if (!check.ok()) {
    std::fprintf(stderr, "the migrated file still has %zu error%s:\n", check.errors.size(),
                 check.errors.size() == 1 ? "" : "s");
    print_errors(stderr, check.errors, output.empty() ? "<migrated>" : output);
    return 1;
  }
  return 0;
}

}  // namespace

int run_config_command(const std::vector<std::string>& args) {
  CLI::App app{"Validate a v2 config.yaml, or migrate a v1 one to v2.", "troupe config"};
  troupe::cli::setup(app);
  app.require_subcommand(1);
  std::string file;
  bool schema_only = false;
  auto* v = app.add_subcommand(
      "validate", "Check FILE against the v2 schema and look up its checkpoint; print every "
                  "error, or \"FILE: valid\". Exit status 1 when there are errors.");
  v->add_option("FILE", file, "the config.yaml")->required();
  v->add_flag("--schema-only", schema_only,
              "do not look up the checkpoint (in the local Hugging Face cache or on disk)");
  troupe::cli::add_hf_cache_environment(*v);
  migrate_options options;
  std::string output;
  auto* m = app.add_subcommand(
      "migrate", "Rewrite a v1 (Engine-Builder-LLM) FILE as v2 (BIS-LLM) and print it, keeping "
                 "comments; notes on what changed go to stderr.");
  m->add_option("FILE", file, "the v1 config.yaml")->required();
  m->add_option("--avg-input-tokens", options.avg_input_tokens,
                "average input tokens per request, for concurrency_target -> "
                "target_in_flight_tokens")
      ->type_name("N")
      ->check(troupe::cli::at_least(1));
  m->add_option("--avg-output-tokens", options.avg_output_tokens,
                "average output tokens per request, for the same conversion")
      ->type_name("N")
      ->check(troupe::cli::at_least(1));
  m->add_option("-o,--output", output, "write the v2 file here instead of printing it")->type_name("FILE");
  if (auto rc = troupe::cli::parse(app, args)) return *rc;
  if (*v) return validate(file, schema_only);
  return migrate(file, options, output);
}
