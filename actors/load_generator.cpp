#include "actors/load_generator.hpp"

#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

namespace troupe {
namespace {

using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t) { return std::chrono::duration<double>(clock_type::now() - t).count(); }

const char* words[] = {"def", "return", "import", "class", "self", "value", "list", "for", "while", "print",
                       "data", "result", "index", "key", "item", "None", "True", "path", "file", "open"};

std::string prompt_text(std::mt19937& rng, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += words[std::uniform_int_distribution<size_t>(0, std::size(words) - 1)(rng)];
  }
  return s;
}

// One streamed request: the time of each event that carries a choice, the text of the first
// choice, the usage the server reported, and why it failed ("" when it did not).
struct streamed {
  std::string error;
  std::vector<double> times;  // seconds from the start, per event with a choice
  std::string text;
  int64_t prompt_tokens = -1, cached_tokens = -1;
};

streamed stream_request(httplib::Client& cli, const httplib::Headers& headers, const std::string& path,
                        const nlohmann::json& body) {
  streamed out;
  const auto start = clock_type::now();
  std::string buf, error;
  bool done = false;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.headers = headers;
  req.set_header("Content-Type", "application/json");
  req.body = body.dump();
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    buf.append(data, len);
    size_t at;
    while ((at = buf.find("\n\n")) != std::string::npos) {
      const std::string event = buf.substr(0, at);
      buf.erase(0, at + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      const std::string payload = event.substr(6);
      if (payload == "[DONE]") {
        done = true;
        continue;
      }
      auto j = nlohmann::json::parse(payload, nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("error")) error = j["error"].value("message", "error event");
      if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
        out.times.push_back(since(start));
        const auto& c = j["choices"][0];
        if (c.contains("text") && c["text"].is_string()) out.text += c["text"].get<std::string>();
        else if (c.contains("delta") && c["delta"].is_object() && c["delta"].contains("content") && c["delta"]["content"].is_string())
          out.text += c["delta"]["content"].get<std::string>();
      }
      if (j.contains("usage") && j["usage"].is_object()) {
        out.prompt_tokens = j["usage"].value("prompt_tokens", int64_t{-1});
        if (j["usage"].contains("prompt_tokens_details") && j["usage"]["prompt_tokens_details"].is_object())
          out.cached_tokens = j["usage"]["prompt_tokens_details"].value("cached_tokens", int64_t{-1});
      }
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool sent = cli.send(req, res, err);
  if (!sent) out.error = httplib::to_string(err);
  else if (res.status != 200) out.error = fmt::format("HTTP {}: {}", res.status, buf.substr(0, 200));
  else if (!error.empty()) out.error = error;
  else if (!done) out.error = "stream ended without [DONE]";
  else if (out.times.empty()) out.error = "the stream carried no token";
  return out;
}

}  // namespace

result<load_result> run_load(const load_options& o) {
  load_result total;
  std::mutex mu;
  const auto t0 = clock_type::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < o.concurrency; ++w) {
    threads.emplace_back([&, w] {
      httplib::Client cli(o.url);
      cli.set_connection_timeout(10);
      cli.set_read_timeout(120);
      cli.set_keep_alive(true);
      httplib::Headers headers;
      if (!o.api_key.empty()) headers.emplace("Authorization", "Bearer " + o.api_key);
      std::mt19937 rng(static_cast<unsigned>(w) * 7919u + 1);
      load_result mine;
      const double from = o.ramp ? 0.5 * o.duration_s * w / o.concurrency : 0, until = o.duration_s - from;
      while (since(t0) < until) {
        if (since(t0) < from) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          continue;
        }
        nlohmann::json body = {{"model", o.model}, {"max_tokens", o.max_tokens}, {"stream", true}, {"temperature", 0.8},
                               {"ignore_eos", true}};
        const std::string text = prompt_text(rng, o.prompt_words);
        if (o.chat) body["messages"] = {{{"role", "user"}, {"content", text}}};
        else body["prompt"] = text;
        const auto start = clock_type::now();
        const streamed r = stream_request(cli, headers, o.chat ? "/v1/chat/completions" : "/v1/completions", body);
        if (o.finished) ++*o.finished;
        if (!r.error.empty()) {
          ++mine.failed;
          if (mine.errors.size() < 3) mine.errors.push_back(r.error);
          continue;
        }
        const std::vector<double>& times = r.times;
        ++mine.ok;
        mine.output_tokens += static_cast<int64_t>(times.size());
        mine.ttft_s.push_back(times.front());
        mine.started_s.push_back(std::chrono::duration<double>(start - t0).count());
        for (size_t i = 1; i < times.size(); ++i) mine.itl_s.push_back(times[i] - times[i - 1]);
        mine.latency_s.push_back(since(start));
      }
      std::lock_guard<std::mutex> lock(mu);
      total.ok += mine.ok;
      total.failed += mine.failed;
      total.output_tokens += mine.output_tokens;
      total.ttft_s.insert(total.ttft_s.end(), mine.ttft_s.begin(), mine.ttft_s.end());
      total.started_s.insert(total.started_s.end(), mine.started_s.begin(), mine.started_s.end());
      total.itl_s.insert(total.itl_s.end(), mine.itl_s.begin(), mine.itl_s.end());
      total.latency_s.insert(total.latency_s.end(), mine.latency_s.begin(), mine.latency_s.end());
      for (auto& e : mine.errors)
        if (total.errors.size() < 5) total.errors.push_back(e);
    });
  }
  for (auto& t : threads) t.join();
  total.seconds = since(t0);
  return total;
}

timed_completion stream_completion(const load_options& o, const std::string& prompt, int max_tokens) {
  httplib::Client cli(o.url);
  cli.set_connection_timeout(10);
  cli.set_read_timeout(300);
  httplib::Headers headers;
  if (!o.api_key.empty()) headers.emplace("Authorization", "Bearer " + o.api_key);
  const nlohmann::json body = {{"model", o.model}, {"prompt", prompt}, {"max_tokens", max_tokens}, {"stream", true},
                               {"temperature", 0}, {"ignore_eos", true}, {"stream_options", {{"include_usage", true}}}};
  streamed r = stream_request(cli, headers, "/v1/completions", body);
  return {std::move(r.error), std::move(r.times), r.prompt_tokens};
}

result<multi_turn_result> run_multi_turn(const multi_turn_options& o) {
  multi_turn_result total;
  total.by_turn.resize(static_cast<size_t>(o.turns));
  std::mutex mu;
  const auto t0 = clock_type::now();
  std::vector<std::thread> threads;
  for (int u = 0; u < o.users; ++u) {
    threads.emplace_back([&, u] {
      httplib::Client cli(o.url);
      cli.set_connection_timeout(10);
      cli.set_read_timeout(600);
      cli.set_keep_alive(true);
      httplib::Headers headers;
      if (!o.api_key.empty()) headers.emplace("Authorization", "Bearer " + o.api_key);
      std::mt19937 rng(static_cast<unsigned>(o.seed * 7919 + static_cast<uint64_t>(u)));
      // The user's own system prompt: its own words in its own order, and its name first.
      std::string history = fmt::format("# Session {} of user {}. Instructions:\n{}\n", o.seed, u, prompt_text(rng, o.system_words));
      for (int turn = 0; turn < o.turns; ++turn) {
        history += fmt::format("\n# User turn {}:\n{}\n# Assistant:\n", turn, prompt_text(rng, o.turn_words));
        nlohmann::json body = {{"model", o.model}, {"prompt", history}, {"max_tokens", o.max_tokens}, {"stream", true},
                               {"temperature", 0}, {"ignore_eos", true},
                               {"stream_options", {{"include_usage", true}}}};
        const streamed r = stream_request(cli, headers, "/v1/completions", body);
        std::lock_guard<std::mutex> lock(mu);
        if (!r.error.empty()) {
          ++total.failed;
          if (total.errors.size() < 5) total.errors.push_back(r.error);
          return;  // this user's conversation ends with its error
        }
        ++total.ok;
        total.ttft_s.push_back(r.times.front());
        total.by_turn[static_cast<size_t>(turn)].push_back(r.times.front());
        total.prompt_tokens.push_back(r.prompt_tokens);
        total.cached_tokens.push_back(r.cached_tokens);
        history += r.text + "\n";
      }
    });
  }
  for (auto& t : threads) t.join();
  total.seconds = since(t0);
  return total;
}

}  // namespace troupe
