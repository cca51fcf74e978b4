// The frontend's engine endpoints: /v1/chat/completions and /v1/completions, streaming and
// not, and /v1/embeddings, from request body to the last byte.
#include <algorithm>
#include <chrono>
#include <map>

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "actors/frontend_internal.hpp"
#include "actors/metrics.hpp"
#include "runtime/text/chat_template.hpp"
#include "runtime/checkpoint.hpp"
#include "runtime/model_bundle.hpp"
#include "runtime/structured/tool_calls.hpp"
#include "runtime/text/tokenizer.hpp"

namespace troupe {
namespace {

using clock_type = std::chrono::steady_clock;
using openai::api_error;

api_error error_with(int status, std::string message, std::string type, std::string code = "") {
  api_error e;
  e.status = status;
  e.message = std::move(message);
  e.type = std::move(type);
  e.code = std::move(code);
  return e;
}

api_error model_not_found(const std::string& model) {
  api_error e = openai::invalid_request("model", fmt::format("The model `{}` does not exist", model), "model_not_found");
  e.status = 404;
  return e;
}

// The error a failed engine request becomes.
api_error delta_error(const token_delta& d) {
  const int s = d.error_status ? d.error_status : 500;
  if (s == 400) return openai::invalid_request("", d.error, "invalid_request");
  if (s == 429) return error_with(s, d.error, "rate_limit_error", "rate_limit_exceeded");
  return error_with(s, d.error, s == 404 ? "invalid_request_error" : "server_error");
}

struct choice_state {
  std::string text;
  std::vector<openai::logprob_entry> logprobs;
  std::optional<openai::finish_reason> finish;
  openai::stop_reason stop;
  int32_t completion_tokens = 0;
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;
  int32_t draft_tokens = 0;  // speculative decoding, summed over the deltas
  int32_t accepted_draft_tokens = 0;
  bool accepted = false;
  bool role_sent = false;
  int32_t text_offset = 0;  // code points written so far (completions' logprobs)
  std::unique_ptr<structured::tool_call_parser> tools;  // chat with tools: calls out of the text
  std::vector<std::string> call_ids;
  std::vector<openai::logprob_entry> prompt_logprobs;  // echo with logprobs: every prompt token's
  std::vector<float> embedding;                       // an embedding request's result
};

std::vector<openai::logprob_entry> entries_of(const std::vector<wire_logprob>& ws, const tokenizer& tok) {
  std::vector<sampled> s;
  s.reserve(ws.size());
  for (const wire_logprob& w : ws) {
    sampled x;
    x.id = w.id;
    x.logprob = w.logprob;
    for (size_t k = 0; k < w.top_ids.size() && k < w.top_logprobs.size(); ++k)
      x.top.push_back({w.top_ids[k], w.top_logprobs[k]});
    s.push_back(std::move(x));
  }
  return openai::logprob_entries(s, [&](token_id t) { return tok.token_bytes(t); });
}

// The parser of a chat request's tool calls, or null when its output is content only.
std::unique_ptr<structured::tool_call_parser> tool_parser_for(const openai::chat_request& r, const model_bundle& m) {
  using structured::tool_format;
  switch (r.tool_mode) {
    case openai::tool_mode::none: return nullptr;
    case openai::tool_mode::required: return std::make_unique<structured::tool_call_parser>(tool_format::json_array);
    case openai::tool_mode::named:
      return std::make_unique<structured::tool_call_parser>(tool_format::arguments, r.tool_choice->function_name);
    case openai::tool_mode::parse:
      for (tool_format f : {tool_format::hermes, tool_format::llama3_json, tool_format::mistral})
        if (m.tool_format == structured::tool_format_name(f)) return std::make_unique<structured::tool_call_parser>(f);
      return nullptr;  // the template shows no tool format: the model answers in text
  }
  return nullptr;
}

std::string new_call_id() {
  std::string id = openai::new_request_id("call");
  id[4] = '_';
  return id.substr(0, 29);  // "call_" and 24 hex digits, as OpenAI's
}

// Parser events folded into a delta's content and tool_calls entries; new calls get ids.
void fold_tool_events(choice_state& c, const std::vector<structured::tool_event>& events, std::string& content,
                      std::vector<openai::tool_call_delta>& calls) {
  for (const auto& e : events) {
    const auto index = static_cast<int32_t>(e.index);
    switch (e.what) {
      case structured::tool_event::kind::content: content += e.text; break;
      case structured::tool_event::kind::call_start:
        c.call_ids.push_back(new_call_id());
        calls.push_back({index, c.call_ids.back(), e.text, ""});
        break;
      case structured::tool_event::kind::arguments:
        if (!calls.empty() && calls.back().index == index) calls.back().arguments += e.text;
        else calls.push_back({index, "", "", e.text});
        break;
    }
  }
}

openai::finish_reason finish_of(const std::string& s) {
  if (s == "length") return openai::finish_reason::length;
  if (s == "abort") return openai::finish_reason::abort;
  return openai::finish_reason::stop;
}

int32_t code_points(std::string_view s) {
  int32_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

// One HTTP request's engine requests (its choices), from submission to the end. Shared by
// the handler and, when streaming, by the content provider that outlives the handler.
class generation {
 public:
  generation(frontend::impl& fe, std::string model, std::shared_ptr<const tokenizer> tok,
             std::vector<generate_request> reqs)
      : fe_(fe), model_(std::move(model)), tok_(std::move(tok)), reqs_(std::move(reqs)),
        choices_(reqs_.size()), ch_(std::make_shared<delta_channel>()), router_(fe_.pick_router()),
        last_news_(clock_type::now()), start_(clock_type::now()) {
    fe_.stats->request_started(model_);
  }
  ~generation() {
    abort();
    int64_t prompt = 0, completion = 0;
    for (auto& c : choices_) completion += c.completion_tokens;
    for (size_t i = 0; i < choices_.size(); ++i)
      if (i == 0 || reqs_[i].prompt != reqs_[i - 1].prompt) prompt += choices_[i].prompt_tokens;
    const auto end = clock_type::now();
    fe_.stats->request_finished(model_, prompt, completion, std::chrono::duration<double>(end - start_).count(), ok_);
    if (ok_ && first_token_ != clock_type::time_point{}) {
      int32_t longest = 0;
      for (auto& c : choices_) longest = std::max(longest, c.completion_tokens);
      fe_.stats->request_latency(model_, std::chrono::duration<double>(first_token_ - start_).count(),
                                 longest > 1 ? std::chrono::duration<double>(end - first_token_).count() / (longest - 1) : -1);
    }
    --fe_.in_flight;
  }

  // Submits every choice and waits until each is accepted or refused; a refusal of any is
  // the error of the whole request (the others are aborted).
  std::optional<api_error> submit(connection_probe& probe) {
    stream_ = spawn_stream_actor(fe_.sys, ch_, reqs_.size());
    for (auto& r : reqs_) {
      r.reply_to = stream_;
      caf::anon_send(router_, submit_atom::value, r);
    }
    size_t accepted = 0;
    while (accepted < reqs_.size()) {
      std::vector<token_delta> ds;
      if (!ch_->pop_all(ds, std::chrono::milliseconds(200))) {
        if (probe.client_gone()) return error_with(499, "the client closed the connection", "client_closed");
        if (idle_too_long()) return error_with(503, "no worker accepted the request in time", "server_error", "timeout");
        continue;
      }
      for (auto& d : ds) {
        if (d.error_status) return delta_error(d);
        const size_t i = index_of(d.id);
        if (!choices_[i].accepted) {
          choices_[i].accepted = true;
          ++accepted;
        }
        if (!d.tokens.empty() || d.finished) pending_.push_back(std::move(d));  // early output
      }
    }
    return std::nullopt;
  }

  // Deltas with output, waiting up to `wait`; folds each into its choice and calls fn with
  // the choice index, the delta and its new logprob entries. An error delta ends the run.
  template <class F>
  std::optional<api_error> poll(std::chrono::milliseconds wait, F&& fn) {
    std::vector<token_delta> ds;
    ds.swap(pending_);
    if (ds.empty() && !ch_->pop_all(ds, wait)) return std::nullopt;
    last_news_ = clock_type::now();
    for (auto& d : ds) {
      if (d.error_status) return delta_error(d);
      if (d.tokens.empty() && !d.finished) continue;  // an acceptance
      if (!d.tokens.empty() && first_token_ == clock_type::time_point{}) first_token_ = clock_type::now();
      const size_t i = index_of(d.id);
      choice_state& c = choices_[i];
      std::vector<openai::logprob_entry> lp;
      if (!d.logprobs.empty()) {
        lp = entries_of(d.logprobs, *tok_);
        c.logprobs.insert(c.logprobs.end(), lp.begin(), lp.end());
      }
      if (c.prompt_logprobs.empty() && reqs_[i].params.prompt_logprobs >= 0 && !reqs_[i].prompt.empty() &&
          (!d.prompt_logprobs.empty() || reqs_[i].prompt.size() == 1)) {
        openai::logprob_entry first;  // the prompt's first token has nothing before it
        first.token = tok_->token_bytes(reqs_[i].prompt.front());
        first.none = true;
        c.prompt_logprobs.push_back(std::move(first));
        auto rest = entries_of(d.prompt_logprobs, *tok_);
        c.prompt_logprobs.insert(c.prompt_logprobs.end(), rest.begin(), rest.end());
      }
      if (!d.embedding.empty()) c.embedding = std::move(d.embedding);
      c.text += d.text;
      c.completion_tokens = d.completion_tokens;
      c.prompt_tokens = d.prompt_tokens;
      c.cached_tokens = d.cached_tokens;
      c.draft_tokens += d.draft_tokens;
      c.accepted_draft_tokens += d.accepted_draft_tokens;
      if (d.finished) {
        c.finish = finish_of(d.finish_reason);
        if (!d.stop_string.empty()) c.stop = d.stop_string;
        ++finished_;
      }
      fn(i, d, lp);
      if (d.finished) {
        // finished_ counted above
      }
    }
    if (finished_ == choices_.size()) ok_ = true;
    return std::nullopt;
  }

  bool done() const { return finished_ == choices_.size(); }
  bool idle_too_long() const {
    return std::chrono::duration<double>(clock_type::now() - last_news_).count() > fe_.opts.idle_timeout_s;
  }
  // Stops every unfinished choice (their workers free the KV blocks at once).
  void abort() {
    if (aborted_ || !stream_) return;
    aborted_ = true;
    for (size_t i = 0; i < reqs_.size(); ++i)
      if (!choices_[i].finish) caf::anon_send(router_, abort_atom::value, reqs_[i].id);
    caf::anon_send_exit(stream_, caf::exit_reason::user_shutdown);
  }

  std::vector<choice_state>& choices() { return choices_; }
  openai::usage_info usage() const {
    openai::usage_info u;
    for (size_t i = 0; i < choices_.size(); ++i) {
      u.completion_tokens += choices_[i].completion_tokens;
      u.draft_tokens += choices_[i].draft_tokens;
      u.accepted_draft_tokens += choices_[i].accepted_draft_tokens;
      if (i == 0 || reqs_[i].prompt != reqs_[i - 1].prompt) {
        u.prompt_tokens += choices_[i].prompt_tokens;
        u.cached_tokens += choices_[i].cached_tokens;
      }
    }
    return u;
  }

 private:
  size_t index_of(const std::string& id) const {
    const size_t slash = id.rfind('/');
    return static_cast<size_t>(std::stoul(id.substr(slash + 1)));
  }

  frontend::impl& fe_;
  std::string model_;
  std::shared_ptr<const tokenizer> tok_;
  std::vector<generate_request> reqs_;
  std::vector<choice_state> choices_;
  std::shared_ptr<delta_channel> ch_;
  router_actor router_;  // the one that routes all its choices
  stream_actor stream_;
  std::vector<token_delta> pending_;
  size_t finished_ = 0;
  bool aborted_ = false;
  bool ok_ = false;
  clock_type::time_point last_news_, start_;
  clock_type::time_point first_token_{};  // when the first output token reached the frontend
};

// Admission: a slot among max_in_flight, or a 429.
std::optional<api_error> admit(frontend::impl& fe) {
  if (fe.draining)
    return error_with(503, "The server is shutting down; retry on another replica.", "server_error", "shutting_down");
  if (++fe.in_flight > fe.opts.max_in_flight) {
    --fe.in_flight;
    return error_with(429, fmt::format("The server is overloaded: {} requests are in flight. Retry shortly.",
                                       fe.opts.max_in_flight),
                      "rate_limit_error", "rate_limit_exceeded");
  }
  return std::nullopt;
}

std::vector<generate_request> choices_for(const std::string& base, size_t first_index, const std::string& model,
                                          const std::vector<token_id>& prompt, const sampling_params& p, int32_t n,
                                          int32_t priority, const std::string& constraint) {
  std::vector<generate_request> out;
  for (int32_t j = 0; j < n; ++j) {
    generate_request r;
    r.id = fmt::format("{}/{}", base, first_index + static_cast<size_t>(j));
    r.model = model;
    r.prompt = prompt;
    sampling_params q = p;
    if (q.seed && j > 0) *q.seed += static_cast<uint64_t>(j);  // n choices, n streams
    r.params = to_wire(q);
    r.priority = priority;
    r.constraint = constraint;
    out.push_back(std::move(r));
  }
  return out;
}

// Streams SSE from a generation: `write_delta` appends a choice's chunk(s), `write_end`
// appends the closing chunks. Waits for tokens inside the provider (cpp-httplib calls a
// provider that wrote nothing again at once) and notices a client that went away.
template <class WriteDelta, class WriteEnd>
void stream(httplib::Response& res, std::shared_ptr<generation> gen, std::shared_ptr<connection_probe> probe,
            WriteDelta write_delta, WriteEnd write_end) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [gen, probe, write_delta, write_end](size_t, httplib::DataSink& sink) {
        std::string out;
        while (out.empty()) {
          if (gen->done()) {
            write_end(out);
            out += openai::sse_done;
            if (!sink.write(out.data(), out.size())) return false;
            sink.done();
            return true;
          }
          if (probe->client_gone()) return false;
          std::optional<api_error> err = gen->poll(std::chrono::milliseconds(200), [&](size_t i, const token_delta& d,
                                                                                      const std::vector<openai::logprob_entry>& lp) {
            write_delta(out, i, d, lp);
          });
          if (!err && gen->idle_too_long()) err = error_with(503, "the worker stopped answering", "server_error", "timeout");
          if (err) {
            gen->abort();
            out += "data: " + openai::write_error(*err) + "\n\n";
            out += openai::sse_done;
            if (!sink.write(out.data(), out.size())) return false;
            sink.done();
            return true;
          }
        }
        return sink.write(out.data(), out.size());
      },
      [gen](bool) { gen->abort(); });
}

// Runs a generation to its end for a one-body answer; nullopt when the client went away.
std::optional<api_error> wait_all(generation& gen, connection_probe& probe, bool& client_gone) {
  while (!gen.done()) {
    if (probe.client_gone()) {
      client_gone = true;
      gen.abort();
      return std::nullopt;
    }
    auto err = gen.poll(std::chrono::milliseconds(200), [](size_t, const token_delta&, const auto&) {});
    if (err) return err;
    if (gen.idle_too_long()) return error_with(503, "the worker stopped answering", "server_error", "timeout");
  }
  return std::nullopt;
}

// Cuts the rendered conversation right after the final message's content, so the model
// continues it (continue_final_message).
std::string cut_after_final(const std::string& text, const openai::chat_request& r) {
  if (r.messages.empty() || !r.messages.back().content) return text;
  const std::string& last = *r.messages.back().content;
  const size_t at = text.rfind(last);
  return at == std::string::npos ? text : text.substr(0, at + last.size());
}

}  // namespace

void frontend::impl::handle_chat(const httplib::Request& req, httplib::Response& res) {
  auto parsed = openai::parse_chat_request(req.body);
  if (!parsed) return send_error(res, parsed.error());
  openai::chat_request& r = parsed.value();
  auto entry = models->get(r.model);
  if (!entry) return send_error(res, model_not_found(r.model));
  const model_bundle& m = *entry->model;
  if (!m.tok) return send_error(res, error_with(400, fmt::format("model {} ships no tokenizer", r.model), "invalid_request_error"));
  if (!m.chat)
    return send_error(res, openai::invalid_request("messages", fmt::format("model {} has no usable chat template{}{}; use "
                                                                            "/v1/completions",
                                                                            r.model, m.chat_error.empty() ? "" : ": ",
                                                                            m.chat_error),
                                                   "no_chat_template"));
  nlohmann::ordered_json ctx = openai::chat_template_context(r);
  ctx["bos_token"] = m.tok->bos_text();
  ctx["eos_token"] = m.tok->eos_text();
  auto rendered = m.chat->render(ctx);
  if (!rendered.ok()) return send_error(res, openai::invalid_request("messages", "chat template: " + rendered.message(), "chat_template_error"));
  std::string text = r.continue_final_message ? cut_after_final(*rendered, r) : *rendered;
  std::vector<token_id> prompt = m.tok->encode(text, false, true);
  openai::model_limits limits{m.weights->config().n_vocab, entry->max_seq_len};
  auto params = openai::sampling_for_prompt(r, static_cast<int64_t>(prompt.size()), limits);
  if (!params) return send_error(res, params.error());
  if (auto e = admit(*this)) return send_error(res, *e);

  const std::string id = openai::new_request_id("chatcmpl");
  auto gen = std::make_shared<generation>(*this, r.model, m.tok,
                                          choices_for(id, 0, r.model, prompt, params.value(), r.n, r.priority,
                                                      r.constraint));
  for (auto& c : gen->choices()) c.tools = tool_parser_for(r, m);
  auto probe = std::make_shared<connection_probe>(req);
  if (auto e = gen->submit(*probe)) return send_error(res, *e);

  openai::stream_info info{id, openai::unix_seconds(), r.model, r.include_usage};
  const bool want_logprobs = r.logprobs;
  if (r.stream) {
    stream(
        res, gen, probe,
        [gen, info, want_logprobs](std::string& out, size_t i, const token_delta& d,
                                   const std::vector<openai::logprob_entry>& lp) {
          choice_state& c = gen->choices()[i];
          if (!c.role_sent) {
            c.role_sent = true;
            openai::chat_delta first;
            first.index = static_cast<int32_t>(i);
            first.role = true;
            openai::append_chat_chunk(out, info, first);
          }
          std::string content = d.text;
          std::vector<openai::tool_call_delta> calls;
          if (c.tools) {
            content.clear();
            fold_tool_events(c, c.tools->push(d.text), content, calls);
            if (d.finished) fold_tool_events(c, c.tools->finish(), content, calls);
          }
          if (content.empty() && calls.empty() && !d.finished && lp.empty()) return;
          openai::chat_delta cd;
          cd.index = static_cast<int32_t>(i);
          cd.content = content;
          cd.tool_calls = calls;
          if (want_logprobs) cd.logprobs = std::span<const openai::logprob_entry>(lp);
          if (d.finished) {
            cd.finish_reason = c.finish;
            if (c.tools && !c.tools->calls().empty() && c.finish == openai::finish_reason::stop)
              cd.finish_reason = openai::finish_reason::tool_calls;
            cd.stop_reason = c.stop;
          }
          openai::append_chat_chunk(out, info, cd);
        },
        [gen, info](std::string& out) {
          if (info.include_usage) openai::append_chat_usage_chunk(out, info, gen->usage());
        });
    return;
  }
  bool gone = false;
  if (auto e = wait_all(*gen, *probe, gone)) return send_error(res, *e);
  if (gone) return;
  openai::chat_completion out;
  out.id = id;
  out.created = info.created;
  out.model = r.model;
  for (size_t i = 0; i < gen->choices().size(); ++i) {
    choice_state& c = gen->choices()[i];
    openai::chat_choice cc;
    cc.index = static_cast<int32_t>(i);
    cc.content = c.text;
    cc.finish_reason = c.finish.value_or(openai::finish_reason::stop);
    cc.stop_reason = c.stop;
    if (c.tools) {
      (void)c.tools->push(c.text);
      (void)c.tools->finish();
      cc.content = c.tools->content();
      for (const auto& call : c.tools->calls()) cc.tool_calls.push_back({new_call_id(), call.name, call.arguments});
      if (!cc.tool_calls.empty() && cc.finish_reason == openai::finish_reason::stop)
        cc.finish_reason = openai::finish_reason::tool_calls;
    }
    if (r.logprobs) cc.logprobs = c.logprobs;
    out.choices.push_back(std::move(cc));
  }
  out.usage = gen->usage();
  res.set_content(openai::write_chat_completion(out), "application/json");
}

void frontend::impl::handle_completion(const httplib::Request& req, httplib::Response& res) {
  auto parsed = openai::parse_completion_request(req.body);
  if (!parsed) return send_error(res, parsed.error());
  openai::completion_request& r = parsed.value();
  auto entry = models->get(r.model);
  if (!entry) return send_error(res, model_not_found(r.model));
  const model_bundle& m = *entry->model;
  if (!m.tok) return send_error(res, error_with(400, fmt::format("model {} ships no tokenizer", r.model), "invalid_request_error"));
  openai::model_limits limits{m.weights->config().n_vocab, entry->max_seq_len};
  const std::string id = openai::new_request_id("cmpl");
  std::vector<generate_request> reqs;
  std::vector<std::string> echoes;
  for (size_t p = 0; p < r.prompts.size(); ++p) {
    const openai::prompt_input& in = r.prompts[p];
    std::vector<token_id> prompt = in.is_tokens ? in.tokens : m.tok->encode(in.text, true, false);
    auto params = openai::sampling_for_prompt(r, p, static_cast<int64_t>(prompt.size()), limits);
    if (!params) return send_error(res, params.error());
    const std::string echo = r.echo ? (in.is_tokens ? m.tok->decode(in.tokens, true) : in.text) : std::string();
    auto some = choices_for(id, p * static_cast<size_t>(r.n), r.model, prompt, params.value(), r.n, r.priority,
                            r.constraint);
    for (auto& x : some) {
      reqs.push_back(std::move(x));
      echoes.push_back(echo);
    }
  }
  if (auto e = admit(*this)) return send_error(res, *e);
  auto gen = std::make_shared<generation>(*this, r.model, m.tok, std::move(reqs));
  auto probe = std::make_shared<connection_probe>(req);
  if (auto e = gen->submit(*probe)) return send_error(res, *e);
  openai::stream_info info{id, openai::unix_seconds(), r.model, r.include_usage};
  const bool want_logprobs = r.logprobs.has_value();
  if (r.stream) {
    stream(
        res, gen, probe,
        [gen, info, want_logprobs, echoes](std::string& out, size_t i, const token_delta& d,
                                           const std::vector<openai::logprob_entry>& lp) {
          choice_state& c = gen->choices()[i];
          std::string text = d.text;
          std::vector<openai::logprob_entry> with_prompt;
          if (!c.role_sent) {  // the first chunk of a choice carries the echo (and its logprobs)
            c.role_sent = true;
            text = echoes[i] + text;
            with_prompt = c.prompt_logprobs;
            with_prompt.insert(with_prompt.end(), lp.begin(), lp.end());
          }
          if (text.empty() && !d.finished && lp.empty()) return;
          openai::completion_delta cd;
          cd.index = static_cast<int32_t>(i);
          cd.text = text;
          if (want_logprobs) cd.logprobs = std::span<const openai::logprob_entry>(with_prompt.empty() ? lp : with_prompt);
          cd.text_offset = c.text_offset;
          c.text_offset += code_points(text);
          if (d.finished) {
            cd.finish_reason = c.finish;
            cd.stop_reason = c.stop;
          }
          openai::append_completion_chunk(out, info, cd);
        },
        [gen, info](std::string& out) {
          if (info.include_usage) openai::append_completion_usage_chunk(out, info, gen->usage());
        });
    return;
  }
  bool gone = false;
  if (auto e = wait_all(*gen, *probe, gone)) return send_error(res, *e);
  if (gone) return;
  openai::completion out;
  out.id = id;
  out.created = info.created;
  out.model = r.model;
  for (size_t i = 0; i < gen->choices().size(); ++i) {
    choice_state& c = gen->choices()[i];
    openai::completion_choice cc;
    cc.index = static_cast<int32_t>(i);
    cc.text = echoes[i] + c.text;
    cc.finish_reason = c.finish.value_or(openai::finish_reason::stop);
    cc.stop_reason = c.stop;
    if (want_logprobs) {
      cc.logprobs = c.logprobs;
      cc.text_offset_base = code_points(echoes[i]);
      if (!c.prompt_logprobs.empty()) {  // echo: the prompt's tokens lead, from offset 0
        cc.logprobs->insert(cc.logprobs->begin(), c.prompt_logprobs.begin(), c.prompt_logprobs.end());
        cc.text_offset_base = 0;
      }
    }
    out.choices.push_back(std::move(cc));
  }
  out.usage = gen->usage();
  res.set_content(openai::write_completion(out), "application/json");
}

pooling embedding_pooling_of(const model_bundle&) { return pooling::mean; }

void frontend::impl::handle_embeddings(const httplib::Request& req, httplib::Response& res) {
  auto parsed = openai::parse_embedding_request(req.body);
  if (!parsed) return send_error(res, parsed.error());
  openai::embedding_request& r = parsed.value();
  auto entry = models->get(r.model);
  if (!entry) return send_error(res, model_not_found(r.model));
  const model_bundle& m = *entry->model;
  const int64_t width = m.weights->config().n_embd;
  // The models troupe loads were not trained to keep their meaning in a prefix of the vector
  // (Matryoshka), so a shortened embedding would be a worse one: only the full width is served.
  if (r.dimensions && *r.dimensions != width)
    return send_error(res, openai::invalid_request("dimensions",
                                                   fmt::format("model {} gives {}-dimensional embeddings and does not "
                                                               "support shortened ones; leave out 'dimensions' or "
                                                               "give {}",
                                                               r.model, width, width),
                                                   "unsupported_value"));
  openai::model_limits limits{m.weights->config().n_vocab, entry->max_seq_len};
  const std::string id = openai::new_request_id("embd");
  const pooling pool = embedding_pooling_of(m);
  std::vector<generate_request> reqs;
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    const openai::prompt_input& in = r.inputs[i];
    if (!in.is_tokens && !m.tok)
      return send_error(res, openai::invalid_request(r.batch ? fmt::format("input[{}]", i) : "input",
                                                     fmt::format("model {} ships no tokenizer: give token ids", r.model)));
    std::vector<token_id> prompt = in.is_tokens ? in.tokens : m.tok->encode(in.text, true, false);
    if (auto e = openai::check_embedding_input(r, i, static_cast<int64_t>(prompt.size()), limits))
      return send_error(res, *e);
    generate_request g;
    g.id = fmt::format("{}/{}", id, i);
    g.model = r.model;
    g.prompt = std::move(prompt);
    g.params.max_tokens = 0;  // nothing is generated (the router counts the prompt only)
    g.priority = r.priority;
    g.pool = pool;
    reqs.push_back(std::move(g));
  }
  if (auto e = admit(*this)) return send_error(res, *e);
  auto gen = std::make_shared<generation>(*this, r.model, m.tok, std::move(reqs));
  auto probe = std::make_shared<connection_probe>(req);
  if (auto e = gen->submit(*probe)) return send_error(res, *e);
  bool gone = false;
  if (auto e = wait_all(*gen, *probe, gone)) return send_error(res, *e);
  if (gone) return;
  openai::embedding_response out;
  out.model = r.model;
  out.encoding_format = r.encoding_format;
  for (choice_state& c : gen->choices()) {
    out.prompt_tokens += c.prompt_tokens;
    out.embeddings.push_back(std::move(c.embedding));
  }
  res.set_content(openai::write_embeddings(out), "application/json");
}

}  // namespace troupe
