// load_generator: drives an OpenAI-compatible server with concurrent streaming requests and
// times each token (`troupe bench serve`). Part of the frontend component: it is the one that
// may speak HTTP through cpp-httplib.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

struct load_options {
  std::string url;            // http://host:port
  std::string model;
  std::string api_key;
  int concurrency = 64;       // streams open at once
  double duration_s = 30;     // new requests start until then
  int max_tokens = 32;
  int prompt_words = 48;
  bool chat = false;
  // A ramp: stream w of n runs during [w/n x T/2, T - w/n x T/2] of T = duration_s, so that
  // the concurrency rises to n at the middle and falls back.
  bool ramp = false;
  std::atomic<int64_t>* finished = nullptr;  // when set, counts requests as they end (for progress)
};

struct load_result {
  int64_t ok = 0;
  int64_t failed = 0;
  int64_t output_tokens = 0;
  double seconds = 0;
  std::vector<double> ttft_s, itl_s, latency_s;
  std::vector<double> started_s;  // each ok request's start, seconds from the run's, as ttft_s
  std::vector<std::string> errors;  // the first few
};

[[nodiscard]] result<load_result> run_load(const load_options& o);

// One streamed completion of a given prompt (temperature 0, ignore_eos), on its own
// connection: the time of each event that carries a token, from the request's start, and the
// prompt tokens the server reported (-1 when it did not); error is "" when it went well.
struct timed_completion {
  std::string error;
  std::vector<double> times;
  int64_t prompt_tokens = -1;
};

[[nodiscard]] timed_completion stream_completion(const load_options& o, const std::string& prompt, int max_tokens);

// An agent loop: `users` conversations at once, each with its own long system prompt, each
// turn resending the whole history (system prompt, then every user message and reply so far)
// as a streamed completion, its reply appended to the history.
struct multi_turn_options {
  std::string url;
  std::string model;
  std::string api_key;
  int users = 16;
  int turns = 6;
  int system_words = 300;  // per user, unique
  int turn_words = 30;     // per user message
  int max_tokens = 24;     // per reply
  uint64_t seed = 1;
};

struct multi_turn_result {
  int64_t ok = 0;
  int64_t failed = 0;
  double seconds = 0;
  std::vector<double> ttft_s;               // every request's time to first token
  std::vector<std::vector<double>> by_turn;  // [turn] -> times to first token
  std::vector<int64_t> prompt_tokens, cached_tokens;  // per request, as the server reported
  std::vector<std::string> errors;          // the first few
};

[[nodiscard]] result<multi_turn_result> run_multi_turn(const multi_turn_options& o);

}  // namespace troupe
