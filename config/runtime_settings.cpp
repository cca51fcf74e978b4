// runtime_settings: trt_llm.runtime, the serving engine's settings and kv_cache_memory.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fmt/format.h>

#include "config/map_reader.hpp"
#include "config/readers.hpp"

namespace troupe::config {

namespace {

constexpr uint64_t kMiB = 1ull << 20;

// "16GiB", "1.5 GB", "512MiB", "90%". Returns false when the text is not of that form.
bool parse_size(std::string_view s, kv_cache_memory& out) {
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0 || i > 32) return false;
  std::string number(s.substr(0, i));
  char* end = nullptr;
  double v = std::strtod(number.c_str(), &end);
  if (!end || *end != 0 || !std::isfinite(v)) return false;
  while (i < s.size() && s[i] == ' ') ++i;
  std::string unit;
  for (; i < s.size(); ++i) unit += static_cast<char>(std::tolower(static_cast<unsigned char>(s[i])));
  if (unit == "%") {
    out.kind = kv_cache_memory::unit::fraction;
    out.fraction = v / 100.0;
    return true;
  }
  double scale = 0;
  if (unit == "b") scale = 1;
  else if (unit == "kb") scale = 1e3;
  else if (unit == "mb") scale = 1e6;
  else if (unit == "gb") scale = 1e9;
  else if (unit == "tb") scale = 1e12;
  else if (unit == "kib") scale = 1024.0;
  else if (unit == "mib") scale = 1024.0 * 1024;
  else if (unit == "gib") scale = 1024.0 * 1024 * 1024;
  else if (unit == "tib") scale = 1024.0 * 1024 * 1024 * 1024;
  else return false;
  double bytes = v * scale;
  if (bytes > 0x1p60) return false;  // an exbibyte and more is a typo, and would not fit int64
  out.kind = kv_cache_memory::unit::bytes;
  out.bytes = static_cast<uint64_t>(bytes);
  return true;
}

// Whether a parsed kv_cache_memory is within the limits: a fraction in (0, 1], or 1 MiB or more.
bool within_limits(const kv_cache_memory& v) {
  return v.kind == kv_cache_memory::unit::fraction ? (std::isfinite(v.fraction) && v.fraction > 0 && v.fraction <= 1)
                                                   : v.bytes >= kMiB;
}

}  // namespace

const std::string_view kv_cache_memory_forms =
    "a fraction of free memory in (0, 1] such as 0.9 or \"90%\", or a size of at least 1 MiB in "
    "bytes (an integer, or with a unit: \"512MiB\", \"16GiB\", \"16GB\")";

std::optional<kv_cache_memory> parse_kv_cache_memory(std::string_view text) {
  kv_cache_memory v;
  const bool integer = !text.empty() && text.size() <= 19 &&
                       std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (integer) {
    v.kind = kv_cache_memory::unit::bytes;
    v.bytes = std::strtoull(std::string(text).c_str(), nullptr, 10);
  } else if (!parse_size(text, v)) {
    const std::string s(text);
    char* end = nullptr;
    v.kind = kv_cache_memory::unit::fraction;
    v.fraction = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size()) return std::nullopt;
  }
  if (!within_limits(v)) return std::nullopt;
  return v;
}

void read_kv_cache_memory(const node& n, const std::string& path, kv_cache_memory& out,
                          error_list& errors) {
  kv_cache_memory v;
  bool parsed = false;
  if (n.kind == node_kind::integer) {
    parsed = n.integer >= 0;
    v.kind = kv_cache_memory::unit::bytes;
    v.bytes = static_cast<uint64_t>(n.integer);
  } else if (n.kind == node_kind::floating) {
    parsed = true;
    v.kind = kv_cache_memory::unit::fraction;
    v.fraction = n.floating;
  } else if (n.kind == node_kind::string) {
    parsed = parse_size(n.text, v);
  }
  if (!parsed || !within_limits(v)) {
    errors.push_back({path, fmt::format("{}: must be {}, got {}", path, kv_cache_memory_forms, n.describe()),
                      n.line, n.column});
    return;
  }
  out = v;
}

void read_runtime(const node* n, const std::string& path, runtime_settings& out,
                  error_list& errors) {
  map_reader r(n, path, errors);
  engine_settings& e = out.engine;
  auto seq = r.integer("max_seq_len", 1);
  auto batch = r.integer("max_batch_size", 1);
  auto tokens = r.integer("max_num_tokens", 1);
  if (seq) e.max_seq_len = *seq;
  if (batch) e.max_batch_size = *batch;
  if (tokens) e.max_num_tokens = *tokens;
  if (auto v = r.integer("tensor_parallel_size", 1)) out.tensor_parallel_size = *v;
  if (auto v = r.boolean("enable_chunked_prefill")) e.enable_chunked_prefill = *v;
  if (auto v = r.string("served_model_name")) out.served_model_name = *v;
  if (const node* p = r.get("patch_kwargs")) {
    if (p->kind == node_kind::map) out.patch_kwargs_json = to_json_text(*p);
    else if (p->kind != node_kind::null)
      r.error("patch_kwargs", fmt::format("{}: expected a map, got {}", r.path_of("patch_kwargs"),
                                          p->describe()));
  }

  auto mode = r.choice("prefill_mode", {"chunked", "hybrid"});
  if (mode) e.prefill = *mode == "hybrid" ? prefill_mode::hybrid : prefill_mode::chunked;
  else if (!r.has("prefill_mode") && !e.enable_chunked_prefill) e.prefill = prefill_mode::chunked;
  if (mode && *mode == "hybrid" && !e.enable_chunked_prefill)
    r.error("prefill_mode", fmt::format("{}: hybrid (split-fuse) prefill needs "
                                        "enable_chunked_prefill: true",
                                        r.path_of("prefill_mode")));

  auto cache = r.choice("prefix_cache_mode", {"radix", "disable"});
  if (cache) e.prefix_cache = *cache == "radix" ? prefix_cache_mode::radix
                                                : prefix_cache_mode::disable;
  auto recycling = r.integer("prefix_cache_max_num_recycling_seqs", 0);
  e.prefix_cache_max_num_recycling_seqs = recycling.value_or(e.max_batch_size);
  if (r.has("prefix_cache_max_num_recycling_seqs") && e.prefix_cache == prefix_cache_mode::disable)
    r.error("prefix_cache_max_num_recycling_seqs",
            fmt::format("{}: applies only when prefix_cache_mode is radix (it is disable)",
                        r.path_of("prefix_cache_max_num_recycling_seqs")));

  if (auto v = r.integer("kv_block_size", 1, 1024)) {
    if ((*v & (*v - 1)) != 0)
      r.error("kv_block_size", fmt::format("{}: must be a power of two (1, 2, 4, ... 1024), got {}",
                                           r.path_of("kv_block_size"), *v));
    else
      e.kv_block_size = *v;
  }
  if (const node* kv = r.get("kv_cache_memory"))
    read_kv_cache_memory(*kv, r.path_of("kv_cache_memory"), e.kv_memory, errors);

  // Each running sequence needs one token of a step's budget to decode.
  const bool sizes_read = !(r.has("max_batch_size") && !batch) && !(r.has("max_num_tokens") && !tokens);
  if (sizes_read && (batch || tokens) && e.max_num_tokens < e.max_batch_size) {
    const char* at = tokens ? "max_num_tokens" : "max_batch_size";
    r.error(at, fmt::format("{}: max_num_tokens must be at least max_batch_size ({} < {}{}): "
                            "every running sequence needs one token of a step's budget",
                            r.path_of(at), e.max_num_tokens, e.max_batch_size,
                            tokens && batch ? "" : ", one of them the default"));
  }

  // v1 names and build fields, with what to write instead.
  r.hint("tensor_parallel_count", "v2 calls it tensor_parallel_size");
  r.hint("enable_chunked_context", "v2 calls it enable_chunked_prefill");
  r.hint("kv_cache_free_gpu_mem_fraction",
         "v2 calls it kv_cache_memory (a fraction such as 0.9, or a size such as 16GiB)");
  r.hint("batch_scheduler_policy",
         "a v1 field; the v2 scheduler is first come, first served with priority and "
         "preemption by recompute");
  r.hint("total_token_limit", "a v1 field; the KV cache's size is set by kv_cache_memory");
  for (const char* k : {"checkpoint_repository", "quantization_type", "quantization_config",
                        "num_builder_gpus", "skip_build_result"})
    r.hint(k, "it belongs under trt_llm.build");
  r.finish();
}

}  // namespace troupe::config
