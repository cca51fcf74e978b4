// llm_config: routing, disaggregation, speculative decoding and autoscaling blocks.
#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "config/map_reader.hpp"
#include "config/readers.hpp"

namespace troupe::config {

void read_routing(const node* n, const std::string& path, routing_settings& out,
                  error_list& errors) {
  map_reader r(n, path, errors);
  if (auto v = r.choice("router_queue_policy", {"fcfs", "wspt"}))
    out.router_queue_policy = *v == "wspt" ? queue_policy::wspt : queue_policy::fcfs;
  if (auto v = r.number("router_overlap_score_weight", 0, HUGE_VAL))
    out.router_overlap_score_weight = *v;
  if (auto v = r.number("router_temperature", 0, HUGE_VAL)) out.router_temperature = *v;
  r.finish();
}

void read_speculative(const node* n, const std::string& path, speculative_settings& out,
                      error_list& errors) {
  map_reader r(n, path, errors);
  if (!r.is_map()) return;
  // DraftTarget: troupe's extension beyond the reference's three (MLC's small draft model).
  auto type = r.choice("decoding_type", {"Eagle", "MTP", "NGram", "DraftTarget"}, /*case_insensitive=*/true);
  if (!r.has("decoding_type"))
    r.error("decoding_type", fmt::format("{}: required; one of Eagle, MTP, or NGram "
                                         "(case-insensitive; troupe also runs DraftTarget)", r.path_of("decoding_type")));
  if (type) {
    out.type = *type == "Eagle"         ? decoding_type::eagle
               : *type == "MTP"         ? decoding_type::mtp
               : *type == "DraftTarget" ? decoding_type::draft_target
                                        : decoding_type::ngram;
  }
  auto dir = r.string("speculative_model_dir");
  auto layers = r.integer("num_nextn_predict_layers", 1);
  out.max_draft_len = r.integer("max_draft_len", 1, kMaxDraftLen);
  out.spec_draft_length = r.integer("spec_draft_length", 0, kMaxDraftLen);
  if (out.max_draft_len && out.spec_draft_length && *out.spec_draft_length > *out.max_draft_len)
    r.error("spec_draft_length", fmt::format("{}: must not exceed max_draft_len ({} > {})",
                                             r.path_of("spec_draft_length"), *out.spec_draft_length,
                                             *out.max_draft_len));
  out.spec_tree_width = r.integer("spec_tree_width", 1, kMaxSpecTreeWidth);
  auto one_model = r.boolean("eagle3_one_model");
  auto ngram_max = r.integer("max_matching_ngram_size", 1, kMaxDraftLen);
  auto ngram_min = r.integer("min_matching_ngram_size", 1, kMaxDraftLen);
  if (type) {
    const std::string& t = *type;
    const bool has_dir = t == "Eagle" || t == "DraftTarget";
    if (has_dir && !r.has("speculative_model_dir"))
      r.error("speculative_model_dir", fmt::format("{}: required when decoding_type is {}",
                                                   r.path_of("speculative_model_dir"), t));
    if (!has_dir && r.has("speculative_model_dir"))
      r.error("speculative_model_dir",
              fmt::format("{}: used only when decoding_type is Eagle or DraftTarget (decoding_type is {})",
                          r.path_of("speculative_model_dir"), t));
    if (t == "MTP" && !r.has("num_nextn_predict_layers"))
      r.error("num_nextn_predict_layers", fmt::format("{}: required when decoding_type is MTP",
                                                      r.path_of("num_nextn_predict_layers")));
    if (t != "MTP" && r.has("num_nextn_predict_layers"))
      r.error("num_nextn_predict_layers",
              fmt::format("{}: used only when decoding_type is MTP (decoding_type is {})",
                          r.path_of("num_nextn_predict_layers"), t));
    for (const char* f : {"max_matching_ngram_size", "min_matching_ngram_size"})
      if (t != "NGram" && r.has(f))
        r.error(f, fmt::format("{}: used only when decoding_type is NGram (decoding_type is {})", r.path_of(f), t));
    if (t == "NGram" && ngram_max && ngram_min && *ngram_min > *ngram_max)
      r.error("min_matching_ngram_size", fmt::format("{}: must not exceed max_matching_ngram_size ({} > {})",
                                                     r.path_of("min_matching_ngram_size"), *ngram_min, *ngram_max));
    // Tree drafts (NGram's matches; DraftTarget's, MTP's and Eagle's top-w candidates) go with
    // a fixed or the adaptive draft length (spec_draft_length 0 chooses each step's depth and
    // whether a tree or its spine pays: runtime/engine/draft_chooser.hpp).
    if (t != "Eagle" && r.has("eagle3_one_model"))
      r.error("eagle3_one_model",
              fmt::format("{}: allowed only when decoding_type is Eagle (decoding_type is {})",
                          r.path_of("eagle3_one_model"), t));
  }
  if (dir) out.speculative_model_dir = *dir;
  out.num_nextn_predict_layers = layers;
  out.eagle3_one_model = one_model;
  out.max_matching_ngram_size = ngram_max;
  out.min_matching_ngram_size = ngram_min;
  r.finish();
}

std::optional<config_error> unbuilt_decoding_type(const speculative_settings& s, const std::string& path) {
  if (s.type == decoding_type::ngram || s.type == decoding_type::mtp || s.type == decoding_type::draft_target ||
      s.type == decoding_type::eagle)
    return std::nullopt;
  const std::string field = path + ".decoding_type";
  return config_error{field,
                      fmt::format("{}: {} is not built in troupe yet (its drafter has not landed); NGram, MTP, Eagle "
                                  "and DraftTarget are the decoding types troupe runs",
                                  field, to_string(s.type))};
}

std::optional<config_error> mtp_layers_missing(const speculative_settings& s, const std::string& model_path,
                                               const std::string& path) {
  if (s.type != decoding_type::mtp) return std::nullopt;
  const std::string field = path + ".num_nextn_predict_layers";
  const int64_t asked = s.num_nextn_predict_layers.value_or(1);
  int64_t has = 0;
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(model_path, ec)) {
    std::ifstream in(fs::path(model_path) / "config.json");
    if (!in) return std::nullopt;  // no config to read here: the engine checks when it loads the model
    const nlohmann::json c = nlohmann::json::parse(in, nullptr, false);
    if (c.is_discarded()) return std::nullopt;
    if (auto it = c.find("num_nextn_predict_layers"); it != c.end() && it->is_number_integer()) has = it->get<int64_t>();
  }
  if (has <= 0)
    return config_error{field, fmt::format("{}: the model {} has no MTP layers (no num_nextn_predict_layers in its "
                                           "config), so decoding_type MTP cannot run on it",
                                           field, model_path)};
  if (asked > has)
    return config_error{field, fmt::format("{}: {} asked, but the model {} has {} MTP layer{}", field, asked,
                                           model_path, has, has == 1 ? "" : "s")};
  return std::nullopt;
}

std::optional<config_error> eagle_head_unfit(const speculative_settings& s, const std::string& model_path,
                                             const std::string& path) {
  if (s.type != decoding_type::eagle) return std::nullopt;
  const std::string field = path + ".speculative_model_dir";
  namespace fs = std::filesystem;
  std::error_code ec;
  const std::string& dir = s.speculative_model_dir;
  if (dir.empty()) return config_error{field, fmt::format("{}: required when decoding_type is Eagle", field)};
  // As given, else (relative) from the project's root: the folder above the one holding the model.
  fs::path found = dir;
  if (!fs::is_directory(found, ec) && fs::path(dir).is_relative()) {
    fs::path model = fs::path(model_path).lexically_normal();
    if (!model.has_filename()) model = model.parent_path();  // a trailing separator
    found = model.parent_path().parent_path() / dir;
  }
  if (!fs::is_directory(found, ec))
    return config_error{field, fmt::format("{}: {}: no such directory", field, dir)};
  const nlohmann::json h = [&] {
    std::ifstream in(found / "config.json");
    return in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
  }();
  if (!h.is_object())
    return config_error{field, fmt::format("{}: {} holds no readable config.json", field, dir)};
  const auto arch = h.value("architectures", nlohmann::json::array());
  if (!arch.is_array() || arch.empty() || arch[0] != "LlamaForCausalLMEagle3")
    return config_error{field, fmt::format("{}: {} is not an Eagle-3 head (its config.json architectures is {}, not "
                                           "LlamaForCausalLMEagle3)",
                                           field, dir, arch.dump())};
  nlohmann::json t;
  if (fs::is_directory(model_path, ec)) {
    std::ifstream in(fs::path(model_path) / "config.json");
    if (in) t = nlohmann::json::parse(in, nullptr, false);
  }
  if (!t.is_object()) return std::nullopt;  // no target config to read here: the engine checks when it loads
  auto num = [](const nlohmann::json& j, const char* k, int64_t dflt) {
    auto it = j.find(k);
    return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : dflt;
  };
  const int64_t target_hidden = num(t, "hidden_size", 0), target_layers = num(t, "num_hidden_layers", 0),
                target_vocab = num(t, "vocab_size", 0);
  const int64_t head_target_hidden = num(h, "target_hidden_size", num(h, "hidden_size", 0));
  if (target_hidden > 0 && head_target_hidden != target_hidden)
    return config_error{field, fmt::format("{}: {} is a head for a target of hidden size {}, the model {} has {}", field,
                                           dir, head_target_hidden, model_path, target_hidden)};
  const int64_t head_vocab = num(h, "draft_vocab_size", num(h, "vocab_size", 0));
  if (target_vocab > 0 && (head_vocab != target_vocab || num(h, "vocab_size", 0) != target_vocab))
    return config_error{field, fmt::format("{}: {} drafts over {} tokens, the model {} has {}", field, dir, head_vocab,
                                           model_path, target_vocab)};
  const auto ids = h.value("eagle_aux_hidden_state_layer_ids", nlohmann::json());
  if (!ids.is_array() || ids.size() != 3)
    return config_error{field, fmt::format("{}: {}: config.json's eagle_aux_hidden_state_layer_ids must list 3 layer "
                                           "ids (low, mid, high)",
                                           field, dir)};
  for (const auto& id : ids)
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || (target_layers > 0 && id.get<int64_t>() >= target_layers))
      return config_error{field, fmt::format("{}: {}: eagle_aux_hidden_state_layer_ids holds {}, beyond the {} layers "
                                             "of the model {}",
                                             field, dir, id.dump(), target_layers, model_path)};
  return std::nullopt;
}

void read_autoscaling(const node* n, const std::string& path, autoscaling_settings& out,
                      error_list& errors) {
  map_reader r(n, path, errors);
  if (auto v = r.integer("target_in_flight_tokens", 1)) out.target_in_flight_tokens = *v;
  auto min_r = r.integer("min_replica", 0);
  auto max_r = r.integer("max_replica", 1);
  if (min_r) out.min_replica = *min_r;
  if (max_r) out.max_replica = *max_r;
  // One replica at least while a minimum above one is asked for: follow the minimum.
  if (min_r && !r.has("max_replica") && out.max_replica < out.min_replica)
    out.max_replica = out.min_replica;
  if (min_r && max_r && *min_r > *max_r)
    r.error("min_replica", fmt::format("{}: must not exceed max_replica ({} > {})",
                                       r.path_of("min_replica"), *min_r, *max_r));
  if (auto v = r.integer("scale_up_delay", 0)) out.scale_up_delay = *v;
  if (auto v = r.integer("scale_down_delay", 0)) out.scale_down_delay = *v;
  if (auto v = r.integer("autoscaling_window", 1)) out.autoscaling_window = *v;
  r.reject("concurrency_target",
           fmt::format("{}: the v2 deployment API rejects concurrency_target: v2 scales on "
                       "tokens in flight, set target_in_flight_tokens instead",
                       r.path_of("concurrency_target")),
           "target_in_flight_tokens = concurrency_target x (average input + output tokens per "
           "request): 10 at 4K input and 1K output tokens is about 50,000; "
           "`troupe config migrate FILE` converts it");
  r.reject("target_utilization_percentage",
           fmt::format("{}: the v2 deployment API rejects target_utilization_percentage: v2 "
                       "scales on tokens in flight, set target_in_flight_tokens instead",
                       r.path_of("target_utilization_percentage")),
           "remove it, and tune target_in_flight_tokens on the observed "
           "autoscaler_in_flight_tokens; aim for the 50,000-150,000 starting range");
  r.finish();
}

void read_llm_config(const node* n, const std::string& path, llm_config& out,
                     runtime_settings* runtime, error_list& errors) {
  map_reader r(n, path, errors);
  if (!r.is_map()) return;

  if (runtime) {
    read_runtime(r.map("runtime"), r.path_of("runtime"), *runtime, errors);
  } else {
    r.hint("runtime", "in config.yaml the engine settings go under trt_llm.runtime");
  }

  out.has_routing = r.has("b10_routing_config");
  read_routing(r.map("b10_routing_config"), r.path_of("b10_routing_config"), out.routing, errors);

  // Disaggregation: both documented rejections. b10_disagg_config without
  // is_disaggregated: true, and is_disaggregated: true with a count missing or below one.
  auto disagg = r.boolean("is_disaggregated");
  const bool disagg_bad_type = r.has("is_disaggregated") && !disagg;
  const node* dcfg = r.map("b10_disagg_config");
  if (dcfg && dcfg->kind == node_kind::null) dcfg = nullptr;  // "b10_disagg_config: null"
  out.has_disaggregation = r.has("is_disaggregated") || dcfg != nullptr;
  out.disaggregation.is_disaggregated = disagg.value_or(false);
  const std::string dpath = r.path_of("b10_disagg_config");
  if (dcfg && !disagg_bad_type && !disagg.value_or(false)) {
    r.error("b10_disagg_config",
            fmt::format("{}: b10_disagg_config is set without is_disaggregated: true "
                        "(is_disaggregated is {}); is_disaggregated must be true for "
                        "b10_disagg_config to take effect",
                        dpath, r.has("is_disaggregated") ? "false" : "absent"));
  }
  {
    map_reader d(dcfg, dpath, errors);
    auto prefill = d.integer("prefill_workers_per_replica", 1);
    auto decode = d.integer("decode_workers_per_replica", 1);
    if (disagg.value_or(false) && (dcfg == nullptr || d.is_map())) {
      for (const char* k : {"prefill_workers_per_replica", "decode_workers_per_replica"}) {
        if (!d.has(k))
          d.error(k, fmt::format("{}: required when is_disaggregated is true; must be an "
                                 "integer >= 1", d.path_of(k)));
      }
    }
    if (disagg.value_or(false)) {
      out.disaggregation.prefill_workers_per_replica = prefill.value_or(0);
      out.disaggregation.decode_workers_per_replica = decode.value_or(0);
    }
    d.finish();
  }

  if (const node* s = r.map("speculative_config"); s && s->kind != node_kind::null) {
    speculative_settings spec;
    read_speculative(s, r.path_of("speculative_config"), spec, errors);
    out.speculative = spec;
  }

  out.has_autoscaling = r.has("autoscaling_settings");
  read_autoscaling(r.map("autoscaling_settings"), r.path_of("autoscaling_settings"),
                   out.autoscaling, errors);
  r.finish();
}

}  // namespace troupe::config
