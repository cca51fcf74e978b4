#include "cli/cmd_bench.hpp"

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bench/engine_bench.hpp"
#include "bench/serve_bench.hpp"
#include "cli/cluster.hpp"
#include "cli/plot.hpp"
#include "config/model_source.hpp"

int run_bench_command(const std::vector<std::string>& args) {
  CLI::App app{"troupe bench: run a benchmark and print JSON results"};
  app.require_subcommand(1);
  troupe::bench::engine_bench_options eo;
  std::string plot;
  const char* plot_help = "also draw the results into this PNG (matplotlib): ";
  auto* engine = app.add_subcommand("engine", "the forward pass and the serving engine on this machine");
  engine->add_option("--model", eo.model, "a model to measure (default: random weights, see --dtype)");
  engine->add_option("--dtype", eo.dtype, "type of the random weights: bf16, f16, f32, q8_0")->capture_default_str();
  engine->add_option("--threads", eo.threads, "CPU threads (default: every core this process may use)");
  engine->add_option("--prompt-tokens", eo.prompt_tokens, "prefill length")->capture_default_str();
  engine->add_option("--batches", eo.batches, "decode batch sizes")->delimiter(',')->capture_default_str();
  engine->add_option("--decode-steps", eo.decode_steps, "timed decode steps per batch size")->capture_default_str();
  engine->add_option("--context", eo.context, "tokens cached per sequence while decoding")->capture_default_str();
  engine->add_option("--workload", eo.workload, "shared-prefix or mixed: the serving engine under a request stream");
  engine->add_option("--device", eo.device,
                     "cpu, or cuda / cuda:N: random bf16 weights in Llama-3-8B's shape made on the GPU "
                     "(decode batches 1,8,64,256 unless --batches)")
      ->capture_default_str();
  engine->add_option("--plot", plot, std::string(plot_help) + "tokens/s by batch size, or the workload's latencies");
  app.add_subcommand("router", "the KV-aware router (lands with the routing issue)");
  troupe::bench::serve_bench_options so;
  auto* serve = app.add_subcommand("serve", "a troupe server under concurrent streaming load on loopback");
  serve->add_option("--url", so.url, "a running server (default: start one with --model)");
  serve->add_option("--model", so.model, "start `troupe serve --model MODEL` on a free port");
  serve->add_option("--workers", so.workers, "engines of the started server")->capture_default_str();
  serve->add_option("--kv-cache-memory", so.kv_cache_memory, "KV cache of the started server")->capture_default_str();
  serve->add_option("--concurrency", so.concurrency, "streams open at once; a list (1,8,64) runs each level in turn")
      ->delimiter(',')
      ->capture_default_str();
  serve->add_option("--duration", so.duration_s, "seconds during which new requests start")->capture_default_str();
  serve->add_option("--max-tokens", so.max_tokens, "tokens per request")->capture_default_str();
  serve->add_option("--prompt-words", so.prompt_words, "words per prompt")->capture_default_str();
  serve->add_flag("--chat", so.chat, "use /v1/chat/completions");
  serve->add_option("--plot", plot, std::string(plot_help) + "latency percentiles and tokens/s over the concurrency");
  std::vector<std::string> rev(args.rbegin(), args.rend());
  try {
    app.parse(rev);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // The JSON on stdout, then the figure.
  auto report = [&plot](const char* what, const troupe::result<nlohmann::json>& r) {
    if (!r.ok()) {
      std::fprintf(stderr, "troupe bench %s: %s\n", what, r.message().c_str());
      return 1;
    }
    std::cout << r->dump(2) << "\n" << std::flush;
    if (plot.empty()) return 0;
    if (auto s = troupe::plot_bench_result(*r, plot); !s.ok()) {
      std::fprintf(stderr, "troupe bench %s: %s\n", what, s.message().c_str());
      return 1;
    }
    return 0;
  };
  // A model named by hub id resolves the way `troupe serve --model` does.
  for (std::string* m : {&eo.model, &so.model}) {
    if (m->empty()) continue;
    auto r = troupe::resolve_model_arg(*m);
    if (!r.ok()) {
      std::fprintf(stderr, "troupe bench: %s\n", r.message().c_str());
      return 1;
    }
    if (m == &so.model && so.served_name.empty()) so.served_name = r->served_name;
    *m = r->path;
  }
  if (*engine) {
    if (eo.device != "cpu" && engine->count("--batches") == 0) eo.batches = {1, 8, 64, 256};
    return report("engine", troupe::bench::run_engine_bench(eo));
  }
  if (*serve) return report("serve", troupe::bench::run_serve_bench(so));
  std::fprintf(stderr, "troupe bench router: not implemented yet (it lands with the KV-aware routing issue)\n");
  return 2;
}
