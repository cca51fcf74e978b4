// deployment_store: request validation, model resolution, one atomically written file each.
#include "config/deployment_store.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>
#include <fmt/format.h>
#include <random>

#include <nlohmann/json.hpp>

#include "config/atomic_file.hpp"
#include "config/config.hpp"
#include "config/map_reader.hpp"
#include "config/model_source.hpp"
#include "config/node.hpp"
#include "config/readers.hpp"

namespace troupe::config {

namespace fs = std::filesystem;

namespace {

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64 || !std::isalnum(static_cast<unsigned char>(n[0]))) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

// "Qwen/Qwen3-4B" -> "qwen3-4b"; "/models/my model/" -> "my-model".
std::string name_from_model(const std::string& model) {
  std::string m = model;
  while (!m.empty() && m.back() == '/') m.pop_back();
  std::string base = m.substr(m.find_last_of('/') == std::string::npos ? 0 : m.find_last_of('/') + 1);
  std::string out;
  for (char c : base) {
    char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out += (std::isalnum(static_cast<unsigned char>(l)) || l == '.' || l == '_' || l == '-') ? l : '-';
  }
  while (!out.empty() && !std::isalnum(static_cast<unsigned char>(out[0]))) out.erase(0, 1);
  if (out.size() > 64) out.resize(64);
  return out.empty() ? "model" : out;
}

std::string new_id() {
  static std::mutex mu;
  static std::mt19937_64 rng{[] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
           static_cast<uint64_t>(std::time(nullptr));
  }()};
  std::lock_guard<std::mutex> lock(mu);
  return fmt::format("dpl-{:016x}", rng());
}

void read_request(const node& root, deployment_request& out, error_list& errors) {
  map_reader r(&root, "", errors);
  if (!r.is_map()) return;
  if (auto v = r.string("name")) {
    if (valid_name(*v)) out.name = *v;
    else
      r.error("name", fmt::format("name: must be 1 to 64 letters, digits, '.', '_' or '-', "
                                  "starting with a letter or digit, got \"{}\"", *v));
  }
  if (auto v = r.string("model")) out.model = *v;
  else if (!r.has("model"))
    r.error("model", "model: required (a Hugging Face repo id in the local cache, or a "
                     "checkpoint directory)");
  if (auto v = r.string("revision")) out.revision = *v;
  const node* l = r.map("llm_config");
  read_llm_config(l, "llm_config", out.llm, &out.runtime, errors);
  if (l && l->kind == node_kind::map) out.llm_config_json = to_json_text(*l);
  r.hint("trt_llm", "the Management API takes the model and an llm_config block; "
                    "engine settings go in llm_config.runtime");
  r.finish();
}

}  // namespace

checked<deployment_request> parse_deployment_request(std::string_view json) {
  checked<deployment_request> out;
  auto doc = parse_json(json);
  if (!doc.ok()) {
    out.errors = std::move(doc.errors);
    return out;
  }
  if (doc.value.kind != node_kind::map) {
    out.errors.push_back({"", "the request body must be a JSON object, got " +
                                  doc.value.describe()});
    return out;
  }
  read_request(doc.value, out.value, out.errors);
  return out;
}

std::string deployment_to_record(const deployment& d) {
  nlohmann::json j{{"version", 1},
                   {"id", d.id},
                   {"name", d.name},
                   {"model", d.model},
                   {"revision", d.revision},
                   {"model_path", d.model_path},
                   {"commit", d.commit},
                   {"created_at", d.created_at},
                   {"llm_config", nlohmann::json::parse(d.llm_config_json, nullptr, false)}};
  return j.dump(2) + "\n";
}

checked<deployment> deployment_from_record(std::string_view text) {
  checked<deployment> out;
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto str = [&](const char* k) -> std::string {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (!j.is_object() || j.value("version", 0) != 1 || str("id").empty() ||
      !j.contains("llm_config") || !j["created_at"].is_number_integer()) {
    out.errors.push_back({"", "not a deployment record (version 1)"});
    return out;
  }
  // The stored llm_config goes through the same validation as a new request.
  nlohmann::json req{{"name", str("name")}, {"model", str("model")},
                     {"revision", str("revision")}, {"llm_config", j["llm_config"]}};
  auto r = parse_deployment_request(req.dump());
  if (!r.ok()) {
    out.errors = std::move(r.errors);
    return out;
  }
  deployment& d = out.value;
  d.id = str("id");
  d.name = r.value.name;
  d.model = r.value.model;
  d.revision = r.value.revision;
  d.model_path = str("model_path");
  d.commit = str("commit");
  d.created_at = j["created_at"].get<int64_t>();
  d.llm = r.value.llm;
  d.runtime = r.value.runtime;
  d.llm_config_json = r.value.llm_config_json;
  if (d.runtime.served_model_name.empty()) d.runtime.served_model_name = d.name;
  return out;
}

deployment_store::deployment_store(store_options options)
    : options_(std::move(options)), dir_(options_.state_dir + "/deployments") {}

deployment_store::deployment_store(deployment_store&& o) noexcept
    : options_(std::move(o.options_)),
      dir_(std::move(o.dir_)),
      deployments_(std::move(o.deployments_)),
      warnings_(std::move(o.warnings_)) {}

result<deployment_store> deployment_store::open(store_options options) {
  if (options.state_dir.empty()) return make_error("deployment store: no state directory given");
  deployment_store s(std::move(options));
  TROUPE_CHECK(make_dir_durable(s.dir_));
  TROUPE_CHECK(s.load());
  return s;
}

status deployment_store::load() {
  std::error_code ec;
  std::vector<fs::path> files;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec))
    files.push_back(it->path());
  if (ec) return make_error(fmt::format("cannot list {}: {}", dir_, ec.message()));
  std::sort(files.begin(), files.end());
  for (const auto& p : files) {
    const std::string name = p.filename().string();
    if (is_temp_file(name)) {
      // A write that a crash interrupted before its rename: it was never acknowledged.
      TROUPE_CHECK(remove_file_durable(dir_, name));
      warnings_.push_back(fmt::format("removed {}, left by an interrupted write", name));
      continue;
    }
    if (p.extension() != ".json") continue;
    auto text = read_file(p.string());
    if (!text.ok()) {
      warnings_.push_back(text.message());
      continue;
    }
    auto d = deployment_from_record(*text);
    if (!d.ok()) {
      warnings_.push_back(fmt::format("skipped {}: {}", p.string(), format_errors(d.errors)));
      continue;
    }
    if (d.value.id + ".json" != name) {
      warnings_.push_back(fmt::format("skipped {}: its id is {}", p.string(), d.value.id));
      continue;
    }
    deployments_.push_back(std::move(d.value));
  }
  std::stable_sort(deployments_.begin(), deployments_.end(),
                   [](const deployment& a, const deployment& b) {
                     return a.created_at != b.created_at ? a.created_at < b.created_at
                                                         : a.id < b.id;
                   });
  return {};
}

const deployment* deployment_store::find(std::string_view id_or_name) const {
  for (const auto& d : deployments_)
    if (d.id == id_or_name || d.name == id_or_name) return &d;
  return nullptr;
}

store_outcome deployment_store::create(const deployment_request& request, deployment* created) {
  store_outcome out;
  if (nlohmann::json::parse(request.llm_config_json, nullptr, false).is_discarded()) {
    out.failure = store_failure::invalid;  // only a request built by hand can get here
    out.errors.push_back({"llm_config", "llm_config: not valid JSON"});
    return out;
  }
  deployment d;
  d.model = request.model;
  d.revision = request.revision;
  d.name = request.name.empty() ? name_from_model(request.model) : request.name;
  d.llm = request.llm;
  d.runtime = request.runtime;
  d.llm_config_json = request.llm_config_json;
  if (d.runtime.served_model_name.empty()) d.runtime.served_model_name = d.name;

  auto resolved = resolve_model(request.model, options_.hf_cache, options_.base_dir,
                                request.revision == "main" ? "" : request.revision, "model", "revision");
  if (!resolved.ok()) {
    out.failure = store_failure::invalid;
    out.errors = std::move(resolved.errors);
    return out;
  }
  d.model_path = resolved.value.path;
  d.commit = resolved.value.commit;
  if (d.llm.speculative) {
    auto missing = mtp_layers_missing(*d.llm.speculative, d.model_path);
    if (!missing) missing = eagle_head_unfit(*d.llm.speculative, d.model_path);
    if (missing) {
      out.failure = store_failure::invalid;
      out.errors.push_back(std::move(*missing));
      return out;
    }
  }

  std::lock_guard<std::mutex> lock(mu_);
  if (const deployment* other = find(d.name)) {
    out.failure = store_failure::conflict;
    out.errors.push_back({"name", fmt::format("name: a deployment named {} already exists "
                                              "(id {}); choose another name",
                                              d.name, other->id)});
    return out;
  }
  do d.id = new_id();
  while (find(d.id));
  d.created_at = static_cast<int64_t>(std::time(nullptr));
  if (auto s = write_file_atomic(dir_, d.id + ".json", deployment_to_record(d)); !s.ok()) {
    out.failure = store_failure::io;
    out.errors.push_back({"", "cannot store the deployment: " + s.message()});
    return out;
  }
  deployments_.push_back(d);
  if (created) *created = std::move(d);
  return out;
}

std::vector<deployment> deployment_store::list() const {
  std::lock_guard<std::mutex> lock(mu_);
  return deployments_;
}

std::optional<deployment> deployment_store::get(std::string_view id_or_name) const {
  std::lock_guard<std::mutex> lock(mu_);
  const deployment* d = find(id_or_name);
  return d ? std::optional<deployment>(*d) : std::nullopt;
}

store_outcome deployment_store::set_autoscaling(std::string_view id_or_name, std::string_view autoscaling_json,
                                                deployment* updated) {
  store_outcome out;
  std::lock_guard<std::mutex> lock(mu_);
  const deployment* found = find(id_or_name);
  deployment* d = found ? &deployments_[static_cast<size_t>(found - deployments_.data())] : nullptr;
  if (!d) {
    out.failure = store_failure::not_found;
    out.errors.push_back({"", fmt::format("no deployment with id or name \"{}\"", id_or_name)});
    return out;
  }
  nlohmann::json llm = nlohmann::json::parse(d->llm_config_json, nullptr, false);
  if (!llm.is_object()) llm = nlohmann::json::object();
  nlohmann::json block = nlohmann::json::parse(autoscaling_json, nullptr, false);
  if (block.is_discarded()) {
    out.failure = store_failure::invalid;
    out.errors.push_back({"autoscaling_settings", "autoscaling_settings: not valid JSON"});
    return out;
  }
  llm["autoscaling_settings"] = std::move(block);
  // The whole llm_config again through a new request's validation (paths and messages alike).
  nlohmann::json req{{"name", d->name}, {"model", d->model}, {"revision", d->revision}, {"llm_config", llm}};
  auto r = parse_deployment_request(req.dump());
  if (!r.ok()) {
    out.failure = store_failure::invalid;
    out.errors = std::move(r.errors);
    return out;
  }
  deployment next = *d;
  next.llm = r.value.llm;
  next.llm_config_json = llm.dump();
  if (auto s = write_file_atomic(dir_, next.id + ".json", deployment_to_record(next)); !s.ok()) {
    out.failure = store_failure::io;
    out.errors.push_back({"", "cannot store the deployment: " + s.message()});
    return out;
  }
  *d = next;
  if (updated) *updated = std::move(next);
  return out;
}

store_outcome deployment_store::remove(std::string_view id_or_name) {
  store_outcome out;
  std::lock_guard<std::mutex> lock(mu_);
  const deployment* d = find(id_or_name);
  if (!d) {
    out.failure = store_failure::not_found;
    out.errors.push_back({"", fmt::format("no deployment with id or name \"{}\"", id_or_name)});
    return out;
  }
  if (auto s = remove_file_durable(dir_, d->id + ".json"); !s.ok()) {
    out.failure = store_failure::io;
    out.errors.push_back({"", "cannot remove the deployment: " + s.message()});
    return out;
  }
  deployments_.erase(deployments_.begin() + (d - deployments_.data()));
  return out;
}

}  // namespace troupe::config
