// Fuzzes the OpenAI request parsers (chat, completions, embeddings) and the response writers.
//
// Not built by CMake. Build and run (from the repository root):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I. \
//     tests/fuzz/openai_request_fuzz.cpp \
//     actors/openai_api_*.cpp runtime/sampler.cpp -lsimdjson -lfmt \
//     -o openai_request_fuzz
//   ./openai_request_fuzz -dict=tests/fuzz/openai_request.dict -max_len=8192 -max_total_time=300 \
//     fuzz-corpus/openai_request tests/fuzz/seeds/openai_request
// Besides crashes, leaks and sanitizer reports it checks: an error is a 400 whose body is valid
// JSON; an accepted request holds what the parser promises, its sampling parameters pass the
// sampler's own validate(), and its chat template context serializes (so every string in it is
// valid UTF-8); the writers give valid JSON for any bytes they are handed.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/openai_api.hpp"

namespace {

using namespace troupe::openai;

constexpr int64_t k_n_vocab = int64_t{1} << 31;  // every id the parser lets through
constexpr model_limits k_limits{k_n_vocab, int64_t{1} << 20};

void check_error(const api_error& e) {
  if (e.status != 400 || e.type != "invalid_request_error" || e.message.empty()) __builtin_trap();
  if (!nlohmann::json::accept(write_error(e))) __builtin_trap();
}

void check_sampling(const api_result<troupe::sampling_params>& p) {
  if (!p.ok()) {
    check_error(p.error());
    return;
  }
  if (!p->validate(k_n_vocab).ok()) __builtin_trap();  // the API let through what the sampler refuses
}

void check_generation(const generation_request& g) {
  if (g.model.empty() || g.n < 1 || g.n > 128) __builtin_trap();
  if (g.include_usage && !g.stream) __builtin_trap();
}

// The writers over arbitrary bytes: every output must be valid JSON (and so valid UTF-8).
void check_writers(std::string_view bytes) {
  const std::string s(bytes);
  const std::string half(bytes.substr(0, bytes.size() / 2));
  std::vector<logprob_entry> lp = {{s, -1.0f, {{half, -2.0f}, {s, -3.0f}}}, {half, -0.5f, {}}};
  std::string out;
  stream_info info{s, 1, half, true};
  append_chat_chunk(out, info, {0, true, s, half, std::span<const logprob_entry>(lp), finish_reason::stop, half});
  append_completion_chunk(out, info, {1, s, std::span<const logprob_entry>(lp), 3, std::nullopt, {}});
  for (size_t pos = 0; pos < out.size();) {
    const size_t end = out.find("\n\n", pos);
    if (end == std::string::npos || out.compare(pos, 6, "data: ") != 0) __builtin_trap();
    if (!nlohmann::json::accept(std::string_view(out).substr(pos + 6, end - pos - 6))) __builtin_trap();
    pos = end + 2;
  }
  completion c{s, 1, half, {}, {}};
  c.choices.push_back({0, s, finish_reason::length, s, lp, 0});
  if (!nlohmann::json::accept(write_completion(c))) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  auto chat = parse_chat_request(body);
  if (chat.ok()) {
    const chat_request& r = chat.value();
    check_generation(r);
    if (r.messages.empty()) __builtin_trap();
    if (r.params.logprobs != (r.logprobs ? r.top_logprobs : -1)) __builtin_trap();
    for (const int64_t n_prompt : {int64_t{1}, int64_t{1000}, k_limits.max_seq_len}) check_sampling(sampling_for_prompt(r, n_prompt, k_limits));
    template_options raw;
    raw.content_as_parts = true;
    raw.arguments_as_objects = false;
    (void)chat_template_context(r).dump();  // throws (and so aborts) on invalid UTF-8
    (void)chat_template_context(r, raw).dump();
  } else {
    check_error(chat.error());
  }

  auto completion = parse_completion_request(body);
  if (completion.ok()) {
    const completion_request& r = completion.value();
    check_generation(r);
    if (r.prompts.empty() || (r.echo && r.logprobs)) __builtin_trap();
    for (size_t i = 0; i < r.prompts.size(); ++i) {
      const auto& p = r.prompts[i];
      if (p.is_tokens ? p.tokens.empty() : p.text.empty()) __builtin_trap();
      check_sampling(sampling_for_prompt(r, i, static_cast<int64_t>(p.is_tokens ? p.tokens.size() : p.text.size()), k_limits));
    }
  } else {
    check_error(completion.error());
  }

  auto embedding = parse_embedding_request(body);
  if (embedding.ok()) {
    const embedding_request& r = embedding.value();
    if (r.model.empty() || r.inputs.empty() || r.inputs.size() > 2048) __builtin_trap();
    for (size_t i = 0; i < r.inputs.size(); ++i)
      if (auto e = check_embedding_input(r, i, 1, k_limits)) check_error(*e);
  } else {
    check_error(embedding.error());
  }

  if (size <= 1024) check_writers(body);
  return 0;
}
