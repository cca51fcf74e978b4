#include "cli/cmd_generate.hpp"

#include <chrono>
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cluster.hpp"
#include "config/model_source.hpp"
#include "cli/command_line.hpp"
#include "kernels/cuda/device_name.hpp"
#include "runtime/text/chat_template.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/engine/engine.hpp"
#include "runtime/engine/factory.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/text/tokenizer.hpp"

using namespace troupe;

namespace {

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

int run_generate_command(const std::vector<std::string>& args) {
  CLI::App app{"Generate text offline, with no server: the prompt's continuation goes to stdout as it is made.",
               "troupe generate"};
  cli::setup(app);
  std::string model = default_model_path(), prompt, device = "cpu";
  sampling_params p;
  p.max_tokens = 64;
  bool json = false, chat = false;
  int threads = 0, top_logprobs = -1;
  std::optional<uint64_t> seed;
  namespace group = cli::group;
  app.add_option("--model", model,
                 "a model directory, a .gguf file, or a hub id (org/name[@revision]) in the local Hugging Face cache")
      ->type_name("MODEL")
      ->envname("TROUPE_MODEL")
      ->group(group::model);
  app.add_option("--prompt", prompt, "the text to continue")->type_name("TEXT")->required()->group(group::sampling);
  app.add_flag("--chat", chat, "send the prompt as a user message through the model's chat template")
      ->group(group::sampling);
  app.add_option("--max-tokens", p.max_tokens, "tokens to generate at most")
      ->type_name("N")
      ->check(cli::at_least(1))
      ->group(group::sampling);
  app.add_option("--temperature", p.temperature, "0: greedy")
      ->type_name("T")
      ->check(cli::between(0, 100))
      ->group(group::sampling);
  app.add_option("--top-p", p.top_p, "nucleus sampling: the smallest set of tokens whose probabilities reach P")
      ->type_name("P")
      ->check(cli::above_up_to(0, 1))
      ->group(group::sampling);
  app.add_option("--top-k", p.top_k, "sample among the K likeliest tokens; 0 or -1: all")
      ->type_name("K")
      ->check(cli::at_least(-1))
      ->group(group::sampling);
  app.add_option("--min-p", p.min_p, "drop tokens less likely than P times the likeliest")
      ->type_name("P")
      ->check(cli::between(0, 1))
      ->group(group::sampling);
  app.add_option("--repetition-penalty", p.repetition_penalty,
                 "above 1 discourages the tokens of the prompt and the output so far")
      ->type_name("X")
      ->check(cli::above_up_to(0, 100))
      ->group(group::sampling);
  app.add_option("--seed", seed, "makes sampling reproducible (default: a random seed)")
      ->type_name("N")
      ->check(cli::at_least(0))
      ->group(group::sampling);
  app.add_option("--stop", p.stop, "a stop string, never part of the output (repeat the option for more)")
      ->type_name("TEXT")
      ->group(group::sampling);
  app.add_flag("--ignore-eos", p.ignore_eos, "keep going past end-of-sequence tokens")->group(group::sampling);
  app.add_option("--threads", threads, "CPU threads; 0: every core this process may use")
      ->type_name("N")
      ->check(cli::at_least(0))
      ->group(group::engine);
  app.add_option("--device", device, "where the model runs: the CPU, or CUDA device 0 or N")
      ->type_name("DEVICE")
      ->check(cli::device_name())
      ->group(group::engine);
  app.add_flag("--json", json, "print one JSON object: text, token ids, logprobs, timings")->group(group::output);
  app.add_option("--logprobs", top_logprobs,
                 "with --json: the chosen token's logprob and this many alternatives per token; -1: none")
      ->type_name("K")
      ->check(cli::between(-1, 20))
      ->group(group::output);
  cli::add_kernel_environment(app);
  cli::add_hf_cache_environment(app);
  if (auto rc = cli::parse(app, args)) return *rc;
  if (status s = check_device(device); !s.ok()) {  // before the model loads
    std::fprintf(stderr, "troupe generate: %s\n", s.message().c_str());
    return 1;
  }
  p.seed = seed;
  p.logprobs = top_logprobs;

  auto source = resolve_model_arg(model);
  if (!source.ok()) return cli::usage_error(app, source.message());
  const auto t0 = std::chrono::steady_clock::now();
  auto bundle = load_model_showing_progress(source->path, source->served_name);
  if (!bundle.ok()) {
    std::fprintf(stderr, "troupe generate: %s\n", bundle.message().c_str());
    return 1;
  }
  bundle->name = source->served_name;
  if (!bundle->tok) {
    std::fprintf(stderr, "troupe generate: %s ships no tokenizer\n", model.c_str());
    return 1;
  }
  const tokenizer& tok = *bundle->tok;
  std::string text = prompt;
  bool add_special = true;
  if (chat) {
    if (!bundle->chat) {
      std::fprintf(stderr, "troupe generate: %s has no usable chat template%s%s\n", model.c_str(),
                   bundle->chat_error.empty() ? "" : ": ", bundle->chat_error.c_str());
      return 1;
    }
    nlohmann::json ctx = {{"messages", {{{"role", "user"}, {"content", prompt}}}},
                          {"add_generation_prompt", true},
                          {"bos_token", tok.bos_text()},
                          {"eos_token", tok.eos_text()}};
    auto r = bundle->chat->render(ctx);
    if (!r.ok()) {
      std::fprintf(stderr, "troupe generate: chat template: %s\n", r.message().c_str());
      return 1;
    }
    text = *r;
    add_special = false;  // the template writes BOS itself
  }
  request req;
  req.id = "generate";
  req.prompt = tok.encode(text, add_special, chat);
  req.params = p;

  engine_spec spec;
  spec.device = device;
  spec.threads = threads;
  spec.kv_n_blocks = static_cast<int32_t>((req.prompt.size() + static_cast<size_t>(p.max_tokens)) / 16 + 8);
  spec.max_batch_size = 8;  // one request: a small batch keeps a GPU's scratch small
  executor_factory factory;
  auto ex = factory.make_executor(bundle->weights, model, spec);
  if (!ex.ok()) {
    std::fprintf(stderr, "troupe generate: %s\n", ex.message().c_str());
    return 1;
  }
  auto eng = make_engine(spec, **ex, &tok, bundle->name);
  if (!eng.ok()) {
    std::fprintf(stderr, "troupe generate: %s\n", eng.message().c_str());
    return 1;
  }
  if (status s = (*eng)->add_request(req); !s.ok()) {
    std::fprintf(stderr, "troupe generate: %s\n", s.message().c_str());
    return 1;
  }
  const double load_ms = ms_since(t0);

  const auto t1 = std::chrono::steady_clock::now();
  double first_ms = 0;
  std::string out_text;
  std::vector<token_id> out_tokens;
  nlohmann::json logprobs = nlohmann::json::array();
  std::string finish = "length";
  usage use;
  while ((*eng)->has_work()) {
    auto step = (*eng)->step(**ex);
    if (!step.ok()) {
      std::fprintf(stderr, "troupe generate: %s\n", step.message().c_str());
      return 1;
    }
    for (const auto& o : step->outputs) {
      if (out_tokens.empty() && !o.tokens.empty()) first_ms = ms_since(t1);
      out_tokens.insert(out_tokens.end(), o.tokens.begin(), o.tokens.end());
      out_text += o.text;
      if (!json) {
        std::fwrite(o.text.data(), 1, o.text.size(), stdout);
        std::fflush(stdout);
      }
      for (const auto& lp : o.logprobs) {
        nlohmann::json top = nlohmann::json::array();
        for (const auto& t : lp.top) top.push_back({{"token", t.id}, {"logprob", t.logprob}});
        logprobs.push_back({{"token", lp.id}, {"logprob", lp.logprob}, {"top_logprobs", top}});
      }
      if (o.finished) {
        finish = finish_reason_name(*o.finished);
        use = o.use;
      }
    }
  }
  const double total_ms = ms_since(t1);
  if (!json) {
    std::printf("\n");
    return 0;
  }
  const double decode_ms = total_ms - first_ms;
  nlohmann::json j = {
      {"model", bundle->name},
      {"text", out_text},
      {"finish_reason", finish},
      {"prompt_tokens", use.prompt_tokens},
      {"completion_tokens", use.completion_tokens},
      {"prompt_token_ids", req.prompt},
      {"token_ids", out_tokens},
      {"timings",
       {{"load_ms", load_ms},
        {"time_to_first_token_ms", first_ms},
        {"prefill_tokens_per_s", first_ms > 0 ? 1000.0 * static_cast<double>(req.prompt.size()) / first_ms : 0.0},
        {"decode_tokens_per_s",
         out_tokens.size() > 1 && decode_ms > 0 ? 1000.0 * static_cast<double>(out_tokens.size() - 1) / decode_ms : 0.0},
        {"total_ms", total_ms}}},
  };
  if (p.logprobs >= 0) j["logprobs"] = logprobs;
  std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  return 0;
}
