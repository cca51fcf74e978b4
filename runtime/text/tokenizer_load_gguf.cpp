// Reads a tokenizer from GGUF metadata (llama.cpp's tokenizer.ggml.* keys).
#include <fmt/format.h>

#include "runtime/gguf.hpp"
#include "runtime/text/tokenizer_impl.hpp"
#include "runtime/text/tokenizer_regex.hpp"

namespace troupe {
namespace {

// GGUF's token_type numbers (llama.cpp's llama_token_type).
token_kind kind_of(int64_t t) {
  switch (t) {
    case 2: return token_kind::unknown;
    case 3: return token_kind::control;
    case 4: return token_kind::user_defined;
    case 5: return token_kind::unused;
    case 6: return token_kind::byte;
    default: return token_kind::normal;  // 1 normal, 0 undefined
  }
}

class gguf_reader {
 public:
  explicit gguf_reader(const gguf_file& f) : f_(f) {}

  error fail(std::string_view key, std::string_view what) const {
    return make_error(fmt::format("{}: {}: {}", f_.path(), key, what));
  }
  result<const gguf_value*> require(std::string_view key) const {
    const gguf_value* v = f_.find(key);
    if (!v) return fail(key, "missing (the file has no tokenizer, or not one troupe reads)");
    return v;
  }
  result<std::optional<bool>> opt_bool(std::string_view key) const {
    const gguf_value* v = f_.find(key);
    if (!v) return std::optional<bool>();
    auto b = v->as_bool();
    if (!b) return fail(key, "must be a bool");
    return std::optional<bool>(*b);
  }
  // An optional token id; present ids must lie in the vocabulary.
  result<token_id> opt_id(std::string_view key, size_t n_vocab) const {
    const gguf_value* v = f_.find(key);
    if (!v) return token_id{-1};
    auto i = v->as_int();
    if (!i) return fail(key, "must be an integer");
    if (*i < 0 || static_cast<uint64_t>(*i) >= n_vocab)
      return fail(key, fmt::format("token id {} is outside the vocabulary of {}", *i, n_vocab));
    return static_cast<token_id>(*i);
  }

 private:
  const gguf_file& f_;
};

status load_merges(const gguf_reader& r, const gguf_value& v, tokenizer::impl& m) {
  const auto* list = v.as_strings();
  if (!list) return r.fail("tokenizer.ggml.merges", "must be an array of strings");
  m.merges.reserve(list->size());
  std::string joined;
  for (size_t i = 0; i < list->size(); ++i) {
    const std::string& s = (*list)[i];
    // "left right"; a token may itself start with a space in other alphabets, hence from 1.
    const size_t sp = s.find(' ', 1);
    if (sp == std::string::npos)
      return r.fail("tokenizer.ggml.merges", fmt::format("entry {} '{}' is not two tokens separated by a space", i, s));
    const std::string_view a(s.data(), sp), b(s.data() + sp + 1, s.size() - sp - 1);
    joined.assign(a).append(b);
    const token_id ia = m.any_by_text.find(a), ib = m.any_by_text.find(b), im = m.any_by_text.find(joined);
    if (ia < 0 || ib < 0 || im < 0)
      return r.fail("tokenizer.ggml.merges", fmt::format("entry {} '{}' names a token that is not in the vocabulary", i, s));
    m.merges.insert(ia, ib, static_cast<int32_t>(i), im);
  }
  return {};
}

}  // namespace

result<std::unique_ptr<tokenizer::impl>> load_gguf_tokenizer(const gguf_file& f) {
  gguf_reader r(f);
  auto m = std::make_unique<tokenizer::impl>();
  m->source = f.path();

  TROUPE_TRY(const gguf_value* model_v, r.require("tokenizer.ggml.model"));
  if (!model_v->as_string()) return r.fail("tokenizer.ggml.model", "must be a string");
  const std::string model = *model_v->as_string();
  if (model == "bert") return r.fail("tokenizer.ggml.model", "'bert' (WordPiece) tokenizers are not supported");
  if (model == "t5") return r.fail("tokenizer.ggml.model", "'t5' (Unigram) tokenizers are not supported");
  if (model != "gpt2" && model != "llama")
    return r.fail("tokenizer.ggml.model", fmt::format("'{}' is not supported (troupe reads gpt2 and llama)", model));

  TROUPE_TRY(const gguf_value* tokens_v, r.require("tokenizer.ggml.tokens"));
  const auto* tokens = tokens_v->as_strings();
  if (!tokens) return r.fail("tokenizer.ggml.tokens", "must be an array of strings");
  const size_t n = tokens->size();
  if (n == 0) return r.fail("tokenizer.ggml.tokens", "is empty");
  m->resize(n);
  for (size_t i = 0; i < n; ++i) {
    m->text[i] = (*tokens)[i];
    m->present[i] = 1;
  }
  if (const gguf_value* t = f.find("tokenizer.ggml.token_type")) {
    const auto* types = t->as_ints();
    if (!types) return r.fail("tokenizer.ggml.token_type", "must be an array of integers");
    if (types->size() != n)
      return r.fail("tokenizer.ggml.token_type", fmt::format("has {} entries for {} tokens", types->size(), n));
    for (size_t i = 0; i < n; ++i) m->kind[i] = kind_of((*types)[i]);
  }

  TROUPE_TRY(m->bos, r.opt_id("tokenizer.ggml.bos_token_id", n));
  TROUPE_TRY(m->eos, r.opt_id("tokenizer.ggml.eos_token_id", n));
  TROUPE_TRY(m->unk_id, r.opt_id("tokenizer.ggml.unknown_token_id", n));
  bool add_bos = false;

  if (model == "llama") {
    m->model = model_kind::spm;
    TROUPE_TRY(const gguf_value* scores_v, r.require("tokenizer.ggml.scores"));
    const auto* scores = scores_v->as_floats();
    if (!scores) return r.fail("tokenizer.ggml.scores", "must be an array of numbers");
    if (scores->size() != n)
      return r.fail("tokenizer.ggml.scores", fmt::format("has {} entries for {} tokens", scores->size(), n));
    m->score.assign(scores->begin(), scores->end());
    TROUPE_TRY(auto prefix, r.opt_bool("tokenizer.ggml.add_space_prefix"));
    const bool add_space_prefix = prefix.value_or(true);
    // SentencePiece writes spaces as U+2581 and (by default) puts one before the text.
    if (add_space_prefix) m->normalizer.push_back({normalize_step::prepend, "", "\xE2\x96\x81"});
    m->normalizer.push_back({normalize_step::replace, " ", "\xE2\x96\x81"});
    m->decode_replacements.emplace_back("\xE2\x96\x81", " ");
    m->strip_leading_space = add_space_prefix;
    m->byte_fallback = true;
    add_bos = true;
  } else {
    m->model = model_kind::bpe;
    m->byte_level = m->decode_byte_level = true;
    const gguf_value* pre_v = f.find("tokenizer.ggml.pre");
    const std::string pre = pre_v && pre_v->as_string() ? *pre_v->as_string() : std::string();
    const pre_tokenizer_preset* preset = find_pre_tokenizer_preset(pre);
    if (!preset)
      return r.fail("tokenizer.ggml.pre",
                    pre.empty() ? std::string("missing: a gpt2 vocabulary must name its pre-tokenizer")
                                : fmt::format("'{}' is not a pre-tokenizer troupe knows", pre));
    TROUPE_TRY(auto re, split_regex::compile(preset->regex, false));
    m->splits.push_back({std::move(re), split_behavior::isolated, false});
    m->ignore_merges = preset->ignore_merges;
    if (preset->nfc) m->normalizer.push_back({normalize_step::nfc, "", ""});
    add_bos = preset->add_bos;
  }

  // Control, unknown and user-defined entries are matched in text before the model runs.
  for (size_t i = 0; i < n; ++i) {
    const token_kind k = m->kind[i];
    if (k == token_kind::control || k == token_kind::unknown || k == token_kind::user_defined)
      m->added.push_back({m->text[i], static_cast<token_id>(i), k != token_kind::user_defined, false, false});
  }
  if (m->unk_id < 0 && m->model == model_kind::spm) {
    for (size_t i = 0; i < n; ++i)
      if (m->kind[i] == token_kind::unknown) { m->unk_id = static_cast<token_id>(i); break; }
  }

  m->build_index();  // the text maps, which the merges need
  if (m->model == model_kind::bpe) {
    TROUPE_TRY(const gguf_value* merges_v, r.require("tokenizer.ggml.merges"));
    TROUPE_CHECK(load_merges(r, *merges_v, *m));
  }

  TROUPE_TRY(auto add_bos_key, r.opt_bool("tokenizer.ggml.add_bos_token"));
  TROUPE_TRY(auto add_eos_key, r.opt_bool("tokenizer.ggml.add_eos_token"));
  add_bos = add_bos_key.value_or(add_bos);
  if (add_bos) {
    if (m->bos < 0) return r.fail("tokenizer.ggml.bos_token_id", "missing, but the vocabulary adds BOS");
    m->prefix_ids.push_back(m->bos);
  }
  if (add_eos_key.value_or(false)) {
    if (m->eos < 0) return r.fail("tokenizer.ggml.eos_token_id", "missing, but the vocabulary adds EOS");
    m->suffix_ids.push_back(m->eos);
  }
  m->finish();
  return m;
}

}  // namespace troupe
