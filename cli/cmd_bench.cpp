#include "cli/cmd_bench.hpp"

#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bench/embed_bench.hpp"
#include "bench/engine_bench.hpp"
#include "bench/router_bench.hpp"
#include "bench/serve_bench.hpp"
#include "bench/spec_bench.hpp"
#include "bench/structured_bench.hpp"
#include "cli/cluster.hpp"
#include "cli/command_line.hpp"
#include "cli/plot.hpp"
#include "config/model_source.hpp"

namespace cli = troupe::cli;

int run_bench_command(const std::vector<std::string>& args) {
  CLI::App app{"Run a benchmark and print its results as JSON.", "troupe bench"};
  cli::setup(app);
  app.require_subcommand(1);
  namespace group = cli::group;
  troupe::bench::engine_bench_options eo;
  std::string plot;
  const std::string plot_help = "also draw the results into this PNG with matplotlib: ";
  auto* engine = app.add_subcommand("engine", "The forward pass and the serving engine on this machine.");
  engine->add_option("--model", eo.model,
                     "a model to measure: a directory, a .gguf file or a cached hub id (default: random weights, "
                     "see --dtype)")
      ->type_name("MODEL")
      ->group(group::model);
  engine->add_option("--dtype", eo.dtype, "type of the random weights")
      ->type_name("DTYPE")
      ->check(cli::one_of({"bf16", "f16", "f32", "q8_0", "q4_0", "q4_k", "q5_k", "q6_k"}))
      ->group(group::model);
  engine->add_option("--threads", eo.threads, "CPU threads; 0: every core this process may use")
      ->type_name("N")
      ->check(cli::at_least(0))
      ->group(group::engine);
  engine->add_option("--device", eo.device,
                     "the CPU, or CUDA device 0 or N: random bf16 weights in Llama-3-8B's shape made on the GPU "
                     "(decode batches 1,8,64,256 unless --batches)")
      ->type_name("DEVICE")
      ->check(cli::device_name())
      ->group(group::engine);
  engine->add_option("--prompt-tokens", eo.prompt_tokens, "prefill length")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  engine->add_option("--batches", eo.batches, "decode batch sizes, comma-separated")
      ->type_name("N,N")
      ->delimiter(',')
      ->check(cli::at_least(1))
      ->group(group::workload);
  engine->add_option("--decode-steps", eo.decode_steps, "timed decode steps per batch size")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  engine->add_option("--context", eo.context, "tokens cached per sequence while decoding")
      ->type_name("N")
      ->check(cli::at_least(0))
      ->group(group::workload);
  engine->add_option("--workload", eo.workload,
                     "instead of the forward figures, the serving engine under a request stream")
      ->type_name("NAME")
      ->check(cli::one_of({"shared-prefix", "mixed"}))
      ->group(group::workload);
  engine->add_option("--plot", plot, plot_help + "tokens/s by batch size, or the workload's latencies")
      ->type_name("FILE.png")
      ->group(group::output);
  engine->add_option("--compare-dtypes", eo.compare_dtypes,
                     "also prefill and batch-1 decode of random weights of these types, in the same run")
      ->type_name("DTYPE,DTYPE")
      ->delimiter(',')
      ->check(cli::one_of({"bf16", "f16", "f32", "q8_0", "q4_0", "q4_k", "q5_k", "q6_k"}))
      ->group(group::workload);
  engine->add_flag("--compare-threads", eo.compare_threads, "also prefill and batch-1 decode on 1 thread, in the same run")
      ->group(group::workload);
  engine->add_option("--precision", eo.precision, "the matmuls' accuracy contract (default: TROUPE_PRECISION, else fast)")
      ->type_name("fast|f32")
      ->check(cli::one_of({"fast", "f32"}))
      ->group(group::engine);
  cli::add_kernel_environment(*engine);
  cli::add_hf_cache_environment(*engine);
  // What the in-process model benchmarks (structured, embed) share: the model, the threads,
  // the batch sizes, a per-sequence count and the repetitions.
  auto add_model_bench = [](CLI::App* cmd, std::string& model, int& threads, std::vector<int>& batches,
                            const char* batches_help, const char* count_name, int& count, const char* count_help,
                            int& reps, const char* reps_help) {
    cmd->add_option("--model", model, "the model (default: the project's own, models/troupe-py-7m)")
        ->type_name("PATH")
        ->check(cli::existing_path())
        ->group(group::model);
    cmd->add_option("--threads", threads, "CPU threads; 0: every core this process may use")
        ->type_name("N")
        ->check(cli::at_least(0))
        ->group(group::engine);
    cmd->add_option("--batches", batches, batches_help)
        ->type_name("N,N")
        ->delimiter(',')
        ->check(cli::at_least(1))
        ->group(group::workload);
    cmd->add_option(count_name, count, count_help)->type_name("N")->check(cli::at_least(1))->group(group::workload);
    cmd->add_option("--reps", reps, reps_help)->type_name("N")->check(cli::at_least(1))->group(group::workload);
  };
  troupe::bench::structured_bench_options sto;
  auto* structured = app.add_subcommand("structured", "Decoding with and without a JSON Schema constraint.");
  add_model_bench(structured, sto.model, sto.threads, sto.batches, "batch sizes, comma-separated", "--max-tokens",
                  sto.max_tokens, "tokens generated per sequence", sto.reps,
                  "runs per batch size and mode; the fastest counts");
  troupe::bench::embed_bench_options emo;
  auto* embed = app.add_subcommand("embed", "Embeddings through the serving engine: embeddings and tokens per second.");
  add_model_bench(embed, emo.model, emo.threads, emo.batches, "inputs embedded at once, comma-separated",
                  "--input-tokens", emo.input_tokens, "tokens per input", emo.reps,
                  "runs per batch size; the fastest counts");
  troupe::bench::spec_bench_options spo;
  auto* spec = app.add_subcommand("spec", "Speculative decoding (NGram drafts, fixed and adaptive; a draft model, MTP and Eagle-3 drafts on free continuation) against plain decoding, greedy, on held-out code.");
  add_model_bench(spec, spo.model, spo.threads, spo.batches, "batch sizes, comma-separated", "--max-tokens",
                  spo.max_tokens, "tokens generated per sequence", spo.reps,
                  "runs per workload, batch size and mode; the fastest counts");
  spec->add_option("--code-dir", spo.code_dir, "where the held-out Python files of the models' validation split are")
      ->type_name("DIR")
      ->group(group::workload);
  spec->add_option("--draft-model", spo.draft_model,
                   "DraftTarget's draft model, run with the adaptive draft length on the continuation workload "
                   "(relative: also from the project's root); \"\" skips it")
      ->type_name("DIR")
      ->group(group::workload);
  spec->add_option("--eagle-dir", spo.eagle_dir,
                   "the Eagle-3 head, run with --mtp-draft-len drafts per step (3 when that is 0) on the continuation "
                   "workload (relative: also from the project's root); \"\" skips it")
      ->type_name("DIR")
      ->group(group::workload);
  spec->add_option("--max-draft-len", spo.max_draft_len, "draft tokens verified per step")
      ->type_name("N")
      ->check(cli::between(1, 32))
      ->group(group::engine);
  spec->add_option("--sequences", spo.sequences,
                   "sequences per measurement at least: smaller batches run several rounds over different prompts")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  spec->add_option("--mtp-draft-len", spo.mtp_draft_len,
                   "MTP drafts per step on the free-continuation workload (the model's MTP layer; 0: skip MTP)")
      ->type_name("N")
      ->check(cli::between(0, 32))
      ->group(group::engine);
  spec->add_option("--tree-width", spo.tree_width,
                   "spec_tree_width: above 1, also NGram trees on both workloads and DraftTarget trees against "
                   "DraftTarget chains on continuation (fixed draft length), and trees with the adaptive draft "
                   "length for every drafter; 1: chains only")
      ->type_name("W")
      ->check(cli::between(1, 8))
      ->group(group::engine);
  troupe::bench::router_bench_options ro;
  auto* router = app.add_subcommand(
      "router", "The KV-aware router's decision latency over a large KV index, and the index's event rate, in process.");
  router->add_option("--workers", ro.workers, "worker counts to measure, comma-separated")
      ->type_name("N,N")
      ->delimiter(',')
      ->check(cli::at_least(1))
      ->group(group::workload);
  router->add_option("--indexed-blocks", ro.indexed_blocks, "(worker, block) entries in the index")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  router->add_option("--decisions", ro.decisions, "timed decisions per worker count")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  router->add_option("--prompt-tokens", ro.prompt_tokens, "tokens of each request's known part")
      ->type_name("N")
      ->check(cli::at_least(16))
      ->group(group::workload);
  router->add_option("--events", ro.events, "KV events applied for the events-per-second figure")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  troupe::bench::serve_bench_options so;
  auto* serve = app.add_subcommand("serve", "A troupe server under concurrent streaming load on loopback.");
  serve->add_option("--url", so.url, "a running server (default: start one with --model)")
      ->type_name("URL")
      ->group(group::server);
  serve->add_option("--model", so.model, "start `troupe serve --model MODEL` on a free port")
      ->type_name("MODEL")
      ->group(group::server);
  serve->add_option("--workers", so.workers, "engines of the started server")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::server);
  serve->add_option("--kv-cache-memory", so.kv_cache_memory, "KV cache of the started server")
      ->type_name("SIZE")
      ->check(cli::memory_size())
      ->group(group::server);
  serve->add_option("--concurrency", so.concurrency, "streams open at once; a list runs each level in turn")
      ->type_name("N,N")
      ->delimiter(',')
      ->check(cli::at_least(1))
      ->group(group::workload);
  serve->add_option("--duration", so.duration_s, "seconds during which new requests start")
      ->type_name("SECONDS")
      ->check(cli::above(0))
      ->group(group::workload);
  serve->add_option("--max-tokens", so.max_tokens, "tokens per request")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  serve->add_option("--prompt-words", so.prompt_words, "words per prompt")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  serve->add_flag("--chat", so.chat, "use /v1/chat/completions (default: /v1/completions)")->group(group::workload);
  serve->add_option("--workload", so.workload,
                    "multi-turn: an agent loop (users x turns, each turn resending the whole history) against a "
                    "fresh server per --routing policy; ramp: streams rising to the highest --concurrency and "
                    "falling over --duration, against an autoscaled server and then a fixed single replica; "
                    "mixed: --concurrency short streams (default 8, --max-tokens default 128, --prompt-words default "
                    "16) alone, then with long prompts arriving among them; without --model, a random-weight 22 "
                    "M-parameter model")
      ->type_name("NAME")
      ->check(cli::one_of({"multi-turn", "ramp", "mixed"}))
      ->group(group::workload);
  serve->add_option("--llm-config", so.llm_config,
                    "the started server's --llm-config (as `troupe serve --llm-config`: e.g. is_disaggregated and "
                    "b10_disagg_config for a disaggregated deployment)")
      ->type_name("FILE")
      ->check(cli::existing_path())
      ->group(group::server);
  serve->add_option("--long-rate", so.long_rate, "mixed: long prompts arriving per second among the short streams")
      ->type_name("PER_S")
      ->check(cli::above(0))
      ->group(group::workload);
  serve->add_option("--long-prompt-tokens", so.long_prompt_tokens, "mixed: tokens of each long prompt (held-out code), about")
      ->type_name("N")
      ->check(cli::at_least(16))
      ->group(group::workload);
  serve->add_option("--long-max-tokens", so.long_max_tokens, "mixed: tokens generated per long prompt")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  serve->add_option("--code-dir", so.code_dir, "mixed: where the held-out Python files of the models' validation split are")
      ->type_name("DIR")
      ->group(group::workload);
  serve->add_option("--max-replica", so.max_replica, "ramp: the autoscaled server's max_replica")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  serve->add_option("--target-in-flight-tokens", so.target_in_flight_tokens,
                    "ramp: the autoscaled server's target_in_flight_tokens; 0: the peak's in-flight tokens "
                    "(streams x (prompt words + max tokens)) over --max-replica")
      ->type_name("N")
      ->check(cli::at_least(0))
      ->group(group::workload);
  serve->add_option("--routing", so.routing, "multi-turn: the routing policies to compare, comma-separated")
      ->type_name("POLICY,POLICY")
      ->delimiter(',')
      ->check(cli::one_of({"kv", "least-loaded", "round-robin", "random"}))
      ->group(group::workload);
  serve->add_option("--users", so.users, "multi-turn: conversations at once")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  serve->add_option("--turns", so.turns, "multi-turn: turns per conversation")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  serve->add_option("--system-words", so.system_words, "multi-turn: words of each user's own system prompt")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  serve->add_option("--turn-words", so.turn_words, "multi-turn: words of each user message")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::workload);
  serve->add_option("--simulate", so.simulate, "the started server's workers are simulated with these costs (COSTS.json)")
      ->type_name("FILE")
      ->check(cli::existing_path())
      ->group(group::server);
  serve->add_option("--threads", so.threads, "CPU threads per engine of the started server; 0: its default")
      ->type_name("N")
      ->check(cli::at_least(0))
      ->group(group::server);
  serve->add_option("--plot", plot, plot_help + "latency percentiles and tokens/s over the concurrency (ramp: replicas and "
                                              "in-flight tokens over time)")
      ->type_name("FILE.png")
      ->group(group::output);
  cli::add_hf_cache_environment(*serve);
  if (auto rc = cli::parse(app, args)) return *rc;
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
    if (!r.ok()) return cli::usage_error(*engine ? *engine : *serve, r.message());
    if (m == &so.model && so.served_name.empty()) so.served_name = r->served_name;
    *m = r->path;
  }
  if (*engine) {
    if (eo.device != "cpu" && engine->count("--batches") == 0) eo.batches = {1, 8, 64, 256};
    return report("engine", troupe::bench::run_engine_bench(eo));
  }
  if (*serve && so.workload == "mixed") {
    // Short streams: a short prompt, a long answer.
    if (serve->count("--concurrency") == 0) so.concurrency = {8};
    if (serve->count("--max-tokens") == 0) so.max_tokens = 128;
    if (serve->count("--prompt-words") == 0) so.prompt_words = 16;
  }
  if (*serve) return report("serve", troupe::bench::run_serve_bench(so));
  if (*structured) return report("structured", troupe::bench::run_structured_bench(sto));
  if (*spec) return report("spec", troupe::bench::run_spec_bench(spo));
  if (*embed) return report("embed", troupe::bench::run_embed_bench(emo));
  return report("router", troupe::bench::run_router_bench(ro));
}
