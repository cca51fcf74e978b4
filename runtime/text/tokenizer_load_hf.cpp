// Reads a tokenizer from Hugging Face's tokenizer.json (+ tokenizer_config.json).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/mapped_file.hpp"

#include "runtime/text/tokenizer_impl.hpp"
#include "runtime/text/tokenizer_json.hpp"
#include "runtime/text/tokenizer_regex.hpp"

namespace troupe {
namespace {
using json = nlohmann::json;

// Ids above this are a corrupt file rather than a vocabulary.
constexpr int64_t max_token_id = 1 << 24;

class hf_loader {
 public:
  hf_loader(tokenizer::impl& m, std::string path) : m_(m), path_(std::move(path)) {}

  error fail(std::string_view field, std::string_view what) const {
    return make_error(fmt::format("{}: {}: {}", path_, field, what));
  }

  status model(const json& j, const tokenizer_json_file& file);
  status normalizer(const json& n, const std::string& field);
  status pre_tokenizer(const json& p, const std::string& field);
  status decoder(const json& d, const std::string& field);
  status post_processor(const json& p, const std::string& field);
  status merges(const tokenizer_json_file& file);

  bool templated = false;  // the post-processor is a TemplateProcessing
  std::vector<token_id> template_prefix, template_suffix;
  bool decode_byte_fallback = false;

 private:
  tokenizer::impl& m_;
  std::string path_;
  bool fused_ = false;       // a Fuse decoder came before: Strip acts on the whole text
  bool byte_mapped_ = false;  // a ByteLevel pre-tokenizer came before
};

const json* member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

bool flag(const json& obj, const char* key, bool fallback) {
  const json* v = member(obj, key);
  return v && v->is_boolean() ? v->get<bool>() : fallback;
}

std::string text_of(const json& obj, const char* key) {
  const json* v = member(obj, key);
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

// A Replace or Split pattern: {"String": s} or {"Regex": s}.
bool pattern_of(const json& obj, std::string& out, bool& is_regex) {
  const json* p = member(obj, "pattern");
  if (!p) return false;
  if (const json* s = member(*p, "String"); s && s->is_string()) {
    out = s->get<std::string>();
    is_regex = false;
    return true;
  }
  if (const json* s = member(*p, "Regex"); s && s->is_string()) {
    out = s->get<std::string>();
    is_regex = true;
    return true;
  }
  return false;
}

status hf_loader::model(const json& j, const tokenizer_json_file& file) {
  const json* model = member(j, "model");
  if (!model || !model->is_object()) return fail("model", "missing or not an object");
  std::string type = text_of(*model, "type");
  if (type.empty() && file.has_merges) type = "BPE";  // files from before model.type
  if (type != "BPE")
    return fail("model.type", fmt::format("'{}' is not supported (troupe reads BPE tokenizers)", type));
  if (!text_of(*model, "continuing_subword_prefix").empty())
    return fail("model.continuing_subword_prefix", "is not supported");
  if (!text_of(*model, "end_of_word_suffix").empty()) return fail("model.end_of_word_suffix", "is not supported");

  if (!file.has_vocab) return fail("model.vocab", "missing or not an object");
  const json* added = member(j, "added_tokens");
  if (added && !added->is_array()) return fail("added_tokens", "must be an array");

  int64_t max_id = -1;
  for (const auto& [text, id] : file.vocab) {
    if (id < 0 || id >= max_token_id) return fail("model.vocab", fmt::format("'{}' has id {}", text, id));
    max_id = std::max(max_id, id);
  }
  if (added) {
    for (size_t i = 0; i < added->size(); ++i) {
      const json& a = (*added)[i];
      const json* id = member(a, "id");
      const json* content = member(a, "content");
      if (!id || !id->is_number_integer() || !content || !content->is_string() || content->get_ref<const std::string&>().empty())
        return fail(fmt::format("added_tokens[{}]", i), "needs an integer id and a non-empty content");
      const auto v = id->get<int64_t>();
      if (v < 0 || v >= max_token_id) return fail(fmt::format("added_tokens[{}].id", i), fmt::format("{} is out of range", v));
      max_id = std::max(max_id, v);
    }
  }
  if (max_id < 0) return fail("model.vocab", "is empty");

  m_.resize(static_cast<size_t>(max_id) + 1);
  for (const auto& [text, id] : file.vocab) {
    if (m_.present[id]) return fail("model.vocab", fmt::format("id {} appears twice", id));
    m_.text[id] = text;
    m_.present[id] = 1;
  }
  const std::string unk = text_of(*model, "unk_token");
  if (added) {
    for (const json& a : *added) {
      const auto id = a["id"].get<int64_t>();
      m_.text[id] = a["content"].get<std::string>();
      m_.present[id] = 1;
      const bool special = flag(a, "special", false);
      m_.kind[id] = special ? token_kind::control : token_kind::user_defined;
      m_.added.push_back({m_.text[id], static_cast<token_id>(id), special, flag(a, "lstrip", false),
                          flag(a, "rstrip", false)});
    }
  }
  m_.model = model_kind::bpe;
  m_.byte_fallback = flag(*model, "byte_fallback", false);
  m_.ignore_merges = flag(*model, "ignore_merges", false);
  m_.fuse_unk = flag(*model, "fuse_unk", false);
  if (!unk.empty()) {
    for (size_t i = 0; i < m_.text.size(); ++i) {
      if (m_.present[i] && m_.text[i] == unk) {
        m_.unk_id = static_cast<token_id>(i);
        m_.kind[i] = token_kind::unknown;
        break;
      }
    }
    if (m_.unk_id < 0) return fail("model.unk_token", fmt::format("'{}' is not in the vocabulary", unk));
  }
  return {};
}

status hf_loader::normalizer(const json& n, const std::string& field) {
  if (n.is_null()) return {};
  const std::string type = text_of(n, "type");
  if (type == "Sequence") {
    const json* list = member(n, "normalizers");
    if (!list || !list->is_array()) return fail(field + ".normalizers", "must be an array");
    for (size_t i = 0; i < list->size(); ++i)
      TROUPE_CHECK(normalizer((*list)[i], fmt::format("{}.normalizers[{}]", field, i)));
    return {};
  }
  if (type == "NFC") {
    m_.normalizer.push_back({normalize_step::nfc, "", ""});
    return {};
  }
  if (type == "Prepend") {
    m_.normalizer.push_back({normalize_step::prepend, "", text_of(n, "prepend")});
    return {};
  }
  if (type == "Replace") {
    std::string from;
    bool is_regex = false;
    if (!pattern_of(n, from, is_regex) || is_regex)
      return fail(field + ".pattern", "only String patterns are supported in a Replace normalizer");
    m_.normalizer.push_back({normalize_step::replace, from, text_of(n, "content")});
    return {};
  }
  return fail(field + ".type", fmt::format("normalizer '{}' is not supported", type));
}

status hf_loader::pre_tokenizer(const json& p, const std::string& field) {
  if (p.is_null()) return {};
  const std::string type = text_of(p, "type");
  if (type == "Sequence") {
    const json* list = member(p, "pretokenizers");
    if (!list || !list->is_array()) return fail(field + ".pretokenizers", "must be an array");
    for (size_t i = 0; i < list->size(); ++i)
      TROUPE_CHECK(pre_tokenizer((*list)[i], fmt::format("{}.pretokenizers[{}]", field, i)));
    return {};
  }
  // troupe maps bytes to GPT-2's alphabet inside BPE, so splitting must come first.
  if (byte_mapped_) return fail(field, fmt::format("a {} pre-tokenizer after ByteLevel is not supported", type));
  if (type == "Split") {
    std::string pattern;
    bool is_regex = false;
    if (!pattern_of(p, pattern, is_regex)) return fail(field + ".pattern", "needs a String or Regex");
    const std::string behavior = text_of(p, "behavior");
    split_behavior b;
    if (behavior == "Isolated") b = split_behavior::isolated;
    else if (behavior == "Removed") b = split_behavior::removed;
    else if (behavior == "MergedWithPrevious") b = split_behavior::merged_with_previous;
    else if (behavior == "MergedWithNext") b = split_behavior::merged_with_next;
    else if (behavior == "Contiguous") b = split_behavior::contiguous;
    else return fail(field + ".behavior", fmt::format("'{}' is not a split behavior", behavior));
    auto re = split_regex::compile(pattern, !is_regex);
    if (!re) return fail(field + ".pattern", re.message());
    m_.splits.push_back({std::move(re).value(), b, flag(p, "invert", false)});
    return {};
  }
  if (type == "ByteLevel") {
    m_.byte_level = true;
    m_.add_prefix_space = flag(p, "add_prefix_space", false);
    if (flag(p, "use_regex", true)) {
      auto re = split_regex::compile(gpt2_regex, false);
      if (!re) return fail(field, re.message());
      m_.splits.push_back({std::move(re).value(), split_behavior::isolated, false});
    }
    byte_mapped_ = true;
    return {};
  }
  if (type == "Metaspace") {
    if (!m_.splits.empty()) return fail(field, "a Metaspace pre-tokenizer after a split is not supported");
    m_.metaspace = true;
    m_.metaspace_replacement = text_of(p, "replacement");
    if (m_.metaspace_replacement.empty()) m_.metaspace_replacement = "\xE2\x96\x81";
    const std::string scheme = text_of(p, "prepend_scheme");
    if (scheme.empty()) m_.metaspace_prepend = flag(p, "add_prefix_space", true) ? 2 : 0;
    else if (scheme == "always") m_.metaspace_prepend = 2;
    else if (scheme == "first") m_.metaspace_prepend = 1;
    else if (scheme == "never") m_.metaspace_prepend = 0;
    else return fail(field + ".prepend_scheme", fmt::format("'{}' is not a prepend scheme", scheme));
    if (flag(p, "split", true)) {
      auto re = split_regex::compile(m_.metaspace_replacement, true);
      if (!re) return fail(field, re.message());
      m_.splits.push_back({std::move(re).value(), split_behavior::merged_with_next, false});
    }
    return {};
  }
  if (type == "Digits") {
    auto re = split_regex::compile("[0-9]", false);
    if (!re) return fail(field, re.message());
    const bool each = flag(p, "individual_digits", false);
    m_.splits.push_back({std::move(re).value(), each ? split_behavior::isolated : split_behavior::contiguous, false});
    return {};
  }
  return fail(field + ".type", fmt::format("pre-tokenizer '{}' is not supported", type));
}

status hf_loader::decoder(const json& d, const std::string& field) {
  if (d.is_null()) return {};
  const std::string type = text_of(d, "type");
  if (type == "Sequence") {
    const json* list = member(d, "decoders");
    if (!list || !list->is_array()) return fail(field + ".decoders", "must be an array");
    for (size_t i = 0; i < list->size(); ++i)
      TROUPE_CHECK(decoder((*list)[i], fmt::format("{}.decoders[{}]", field, i)));
    return {};
  }
  if (type == "ByteLevel") {
    m_.decode_byte_level = true;
    return {};
  }
  if (type == "ByteFallback") {
    decode_byte_fallback = true;
    return {};
  }
  if (type == "Fuse") {
    fused_ = true;
    return {};
  }
  if (type == "Replace") {
    std::string from;
    bool is_regex = false;
    if (!pattern_of(d, from, is_regex) || is_regex)
      return fail(field + ".pattern", "only String patterns are supported in a Replace decoder");
    m_.decode_replacements.emplace_back(from, text_of(d, "content"));
    return {};
  }
  if (type == "Strip") {
    const json* start = member(d, "start");
    const json* stop = member(d, "stop");
    const int64_t n_start = start && start->is_number_integer() ? start->get<int64_t>() : 0;
    const int64_t n_stop = stop && stop->is_number_integer() ? stop->get<int64_t>() : 0;
    if (n_start == 0 && n_stop == 0) return {};
    // The one form tokenizers ship: after Fuse, drop the space SentencePiece put first.
    if (n_start == 1 && n_stop == 0 && text_of(d, "content") == " " && fused_) {
      m_.strip_leading_space = true;
      return {};
    }
    return fail(field, "only Strip of one leading ' ' after Fuse is supported");
  }
  if (type == "Metaspace") {
    std::string repl = text_of(d, "replacement");
    if (repl.empty()) repl = "\xE2\x96\x81";
    m_.decode_replacements.emplace_back(repl, " ");
    const std::string scheme = text_of(d, "prepend_scheme");
    m_.strip_leading_space = scheme.empty() ? flag(d, "add_prefix_space", true) : scheme != "never";
    return {};
  }
  return fail(field + ".type", fmt::format("decoder '{}' is not supported", type));
}

status hf_loader::post_processor(const json& p, const std::string& field) {
  if (p.is_null()) return {};
  const std::string type = text_of(p, "type");
  if (type == "ByteLevel") return {};  // offsets only
  if (type == "Sequence") {
    const json* list = member(p, "processors");
    if (!list || !list->is_array()) return fail(field + ".processors", "must be an array");
    for (size_t i = 0; i < list->size(); ++i)
      TROUPE_CHECK(post_processor((*list)[i], fmt::format("{}.processors[{}]", field, i)));
    return {};
  }
  if (type == "TemplateProcessing") {
    const json* single = member(p, "single");
    const json* specials = member(p, "special_tokens");
    if (!single || !single->is_array()) return fail(field + ".single", "must be an array");
    templated = true;
    template_prefix.clear();
    template_suffix.clear();
    bool after = false;
    for (const json& item : *single) {
      if (member(item, "Sequence")) {
        after = true;
        continue;
      }
      const json* st = member(item, "SpecialToken");
      if (!st) return fail(field + ".single", "holds an item that is neither SpecialToken nor Sequence");
      const std::string name = text_of(*st, "id");
      const json* entry = specials ? member(*specials, name.c_str()) : nullptr;
      const json* ids = entry ? member(*entry, "ids") : nullptr;
      if (!ids || !ids->is_array()) return fail(field + ".special_tokens", fmt::format("has no ids for '{}'", name));
      for (const json& id : *ids) {
        if (!id.is_number_integer() || !m_.valid(id.get<token_id>()))
          return fail(field + ".special_tokens", fmt::format("'{}' has an id outside the vocabulary", name));
        (after ? template_suffix : template_prefix).push_back(id.get<token_id>());
      }
    }
    return {};
  }
  return fail(field + ".type", fmt::format("post-processor '{}' is not supported", type));
}

status hf_loader::merges(const tokenizer_json_file& file) {
  if (!file.has_merges) return fail("model.merges", "missing or not an array");
  m_.merges.reserve(file.merges.size());
  std::string joined;
  for (size_t i = 0; i < file.merges.size(); ++i) {
    const auto& [a, b] = file.merges[i];
    joined.assign(a).append(b);
    const token_id ia = m_.any_by_text.find(a), ib = m_.any_by_text.find(b), im = m_.any_by_text.find(joined);
    if (ia < 0 || ib < 0 || im < 0)
      return fail(fmt::format("model.merges[{}]", i), "names a token that is not in the vocabulary");
    m_.merges.insert(ia, ib, static_cast<int32_t>(i), im);
  }
  return {};
}

result<json> read_json(const std::string& path) {
  TROUPE_TRY(std::string text, read_text_file(path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return make_error(path + ": not valid JSON");
  if (!j.is_object()) return make_error(path + ": not a JSON object");
  return j;
}

// bos_token / eos_token in tokenizer_config.json: a string, {"content": ...}, or null.
std::string special_text(const json& config, const char* key) {
  const json* v = member(config, key);
  if (!v) return {};
  if (v->is_string()) return v->get<std::string>();
  return text_of(*v, "content");
}

}  // namespace

result<std::unique_ptr<tokenizer::impl>> load_hf_tokenizer(const std::string& tokenizer_json,
                                                          const std::string& config_json) {
  auto m = std::make_unique<tokenizer::impl>();
  m->source = tokenizer_json;
  try {
    TROUPE_TRY(tokenizer_json_file file, read_tokenizer_json(tokenizer_json));
    const json& j = *file.rest;
    hf_loader l(*m, tokenizer_json);
    TROUPE_CHECK(l.model(j, file));
    static const json null_json;
    auto field = [&](const char* key) -> const json& {
      const json* v = member(j, key);
      return v ? *v : null_json;
    };
    TROUPE_CHECK(l.normalizer(field("normalizer"), "normalizer"));
    TROUPE_CHECK(l.pre_tokenizer(field("pre_tokenizer"), "pre_tokenizer"));
    TROUPE_CHECK(l.decoder(field("decoder"), "decoder"));
    if (m->byte_level != m->decode_byte_level)
      return l.fail("decoder", "a ByteLevel pre-tokenizer needs a ByteLevel decoder, and the other way round");
    if (l.decode_byte_fallback || m->byte_fallback) {
      for (size_t i = 0; i < m->text.size(); ++i)
        if (m->present[i] && m->kind[i] == token_kind::normal && parse_byte_token(m->text[i]) >= 0)
          m->kind[i] = token_kind::byte;
    }
    m->build_index();
    TROUPE_CHECK(l.post_processor(field("post_processor"), "post_processor"));
    TROUPE_CHECK(l.merges(file));

    json config = json::object();
    if (!config_json.empty()) {
      TROUPE_TRY(config, read_json(config_json));
    }
    auto lookup = [&](const char* key, token_id& out) -> status {
      const std::string t = special_text(config, key);
      if (t.empty()) return {};
      const token_id id = m->any_by_text.find(t);
      if (id < 0) return make_error(fmt::format("{}: {}: '{}' is not in the vocabulary", config_json, key, t));
      out = id;
      return {};
    };
    TROUPE_CHECK(lookup("bos_token", m->bos));
    TROUPE_CHECK(lookup("eos_token", m->eos));
    if (m->bos < 0 && !l.template_prefix.empty()) m->bos = l.template_prefix.front();

    // What add_special adds: tokenizer_config.json's add_bos_token/add_eos_token when it says,
    // else the post-processor's template. The first Llama 3 tokenizer.json has no template
    // (Meta added one later); llama.cpp adds its <|begin_of_text|> all the same, and so do we.
    m->prefix_ids = l.template_prefix;
    m->suffix_ids = l.template_suffix;
    const json* add_bos = member(config, "add_bos_token");
    const json* add_eos = member(config, "add_eos_token");
    if (add_bos && add_bos->is_boolean()) {
      m->prefix_ids.clear();
      if (add_bos->get<bool>()) {
        if (m->bos < 0) return make_error(config_json + ": add_bos_token is true but there is no bos_token");
        m->prefix_ids.push_back(m->bos);
      }
    } else if (!l.templated && m->bos >= 0 && m->text[m->bos] == "<|begin_of_text|>") {
      m->prefix_ids = {m->bos};
    }
    if (add_eos && add_eos->is_boolean()) {
      m->suffix_ids.clear();
      if (add_eos->get<bool>()) {
        if (m->eos < 0) return make_error(config_json + ": add_eos_token is true but there is no eos_token");
        m->suffix_ids.push_back(m->eos);
      }
    }
  } catch (const json::exception& e) {
    // A field of an unexpected type that the checks above did not foresee.
    return make_error(fmt::format("{}: malformed tokenizer file: {}", tokenizer_json, e.what()));
  }
  m->finish();
  return m;
}

}  // namespace troupe
