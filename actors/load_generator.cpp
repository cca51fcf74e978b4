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
      while (since(t0) < o.duration_s) {
        nlohmann::json body = {{"model", o.model}, {"max_tokens", o.max_tokens}, {"stream", true}, {"temperature", 0.8},
                               {"ignore_eos", true}};
        const std::string text = prompt_text(rng, o.prompt_words);
        if (o.chat) body["messages"] = {{{"role", "user"}, {"content", text}}};
        else body["prompt"] = text;
        const auto start = clock_type::now();
        std::vector<double> times;
        std::string buf, error;
        bool done = false;
        httplib::Request req;
        req.method = "POST";
        req.path = o.chat ? "/v1/chat/completions" : "/v1/completions";
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
                                if (j.contains("choices") && !j["choices"].empty()) times.push_back(since(start));
                              }
                              return true;
                            };
        httplib::Response res;
        httplib::Error err = httplib::Error::Success;
        const bool sent = cli.send(req, res, err);
        if (o.finished) ++*o.finished;
        if (!sent || res.status != 200 || !done || !error.empty() || times.empty()) {
          ++mine.failed;
          if (mine.errors.size() < 3)
            mine.errors.push_back(!sent ? httplib::to_string(err)
                                        : res.status != 200 ? fmt::format("HTTP {}: {}", res.status, buf.substr(0, 200))
                                                            : error.empty() ? "stream ended without [DONE]" : error);
          continue;
        }
        ++mine.ok;
        mine.output_tokens += static_cast<int64_t>(times.size());
        mine.ttft_s.push_back(times.front());
        for (size_t i = 1; i < times.size(); ++i) mine.itl_s.push_back(times[i] - times[i - 1]);
        mine.latency_s.push_back(since(start));
      }
      std::lock_guard<std::mutex> lock(mu);
      total.ok += mine.ok;
      total.failed += mine.failed;
      total.output_tokens += mine.output_tokens;
      total.ttft_s.insert(total.ttft_s.end(), mine.ttft_s.begin(), mine.ttft_s.end());
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

}  // namespace troupe
