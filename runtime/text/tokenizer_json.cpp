#include "runtime/text/tokenizer_json.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/mapped_file.hpp"

namespace troupe {
namespace {
using json = nlohmann::json;

// Builds the JSON tree for everything but model.vocab and model.merges, which a 150k-entry
// vocabulary makes the bulk of the file and which std::map nodes would make slow to build.
class reader final : public nlohmann::json_sax<json> {
 public:
  explicit reader(tokenizer_json_file& out) : out_(out) {}

  json root;
  std::string error;  // set when a handler stops the parse

  bool null() override { return value(json()); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override {
    if (mode_ == mode::vocab) return vocab_entry(v);
    return value(json(v));
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (mode_ == mode::vocab) return vocab_entry(static_cast<int64_t>(std::min<number_unsigned_t>(v, INT64_MAX)));
    return value(json(v));
  }
  bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
  bool binary(binary_t&) override { return value(json()); }
  bool string(string_t& s) override {
    if (mode_ == mode::merges) {
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        return fail(fmt::format("model.merges[{}]: '{}' is not two tokens separated by a space", out_.merges.size(), s));
      out_.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      return true;
    }
    if (mode_ == mode::merge_pair) {
      pair_.push_back(std::move(s));
      return pair_.size() <= 2 || bad_merge();
    }
    return value(json(std::move(s)));
  }

  bool start_object(std::size_t) override {
    if (mode_ == mode::dom && in_model() && key_ == "vocab") {
      mode_ = mode::vocab;
      out_.has_vocab = true;
      return true;
    }
    if (mode_ != mode::dom) return value(json());  // reports the misplaced object
    return open(json::object());
  }
  bool end_object() override {
    if (mode_ == mode::vocab) {
      mode_ = mode::dom;
      return true;
    }
    return close();
  }
  bool start_array(std::size_t) override {
    if (mode_ == mode::dom && in_model() && key_ == "merges") {
      mode_ = mode::merges;
      out_.has_merges = true;
      return true;
    }
    if (mode_ == mode::merges) {
      mode_ = mode::merge_pair;
      pair_.clear();
      return true;
    }
    if (mode_ != mode::dom) return value(json());
    return open(json::array());
  }
  bool end_array() override {
    if (mode_ == mode::merges) {
      mode_ = mode::dom;
      return true;
    }
    if (mode_ == mode::merge_pair) {
      if (pair_.size() != 2) return bad_merge();
      out_.merges.emplace_back(std::move(pair_[0]), std::move(pair_[1]));
      mode_ = mode::merges;
      return true;
    }
    return close();
  }
  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    return fail(std::string("not valid JSON: ") + e.what());
  }

 private:
  enum class mode { dom, vocab, merges, merge_pair };

  bool fail(std::string message) {
    if (error.empty()) error = std::move(message);
    return false;
  }
  bool bad_merge() { return fail(fmt::format("model.merges[{}]: must be \"a b\" or [\"a\", \"b\"]", out_.merges.size())); }

  // Directly inside root["model"].
  bool in_model() const { return stack_.size() == 2 && keys_[1] == "model" && stack_[1]->is_object(); }

  bool vocab_entry(int64_t id) {
    out_.vocab.emplace_back(std::move(key_), id);
    return true;
  }

  // Places v where the parse is: the root, the pending key of an object, or an array's end.
  json* place(json&& v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    json& top = *stack_.back();
    if (top.is_object()) {
      json& slot = top[key_];
      slot = std::move(v);
      return &slot;
    }
    top.push_back(std::move(v));
    return &top.back();
  }
  bool value(json&& v) {
    if (mode_ == mode::vocab) return fail(fmt::format("model.vocab: '{}' has no integer id", key_));
    if (mode_ != mode::dom) return bad_merge();
    place(std::move(v));
    return true;
  }
  bool open(json&& container) {
    const bool in_object = !stack_.empty() && stack_.back()->is_object();
    keys_.push_back(in_object ? key_ : std::string());
    stack_.push_back(place(std::move(container)));  // stays valid: nothing else joins its parent while open
    return true;
  }
  bool close() {
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }

  tokenizer_json_file& out_;
  mode mode_ = mode::dom;
  std::vector<json*> stack_;       // open containers of the tree
  std::vector<std::string> keys_;  // the key each was opened under ("" in an array)
  std::string key_;                // the last key read
  std::vector<std::string> pair_;  // the merge pair being read
};

}  // namespace

tokenizer_json_file::tokenizer_json_file() = default;
tokenizer_json_file::tokenizer_json_file(tokenizer_json_file&&) noexcept = default;
tokenizer_json_file& tokenizer_json_file::operator=(tokenizer_json_file&&) noexcept = default;
tokenizer_json_file::~tokenizer_json_file() = default;

result<tokenizer_json_file> read_tokenizer_json(const std::string& path) {
  TROUPE_TRY(mapped_file f, mapped_file::open(path));
  tokenizer_json_file out;
  reader r(out);
  const auto* begin = reinterpret_cast<const char*>(f.data());
  bool ok = false;
  try {
    ok = json::sax_parse(begin, begin + f.size(), &r);
  } catch (const json::exception& e) {
    r.error = std::string("not valid JSON: ") + e.what();
  }
  if (!ok) return make_error(fmt::format("{}: {}", path, r.error.empty() ? "not valid JSON" : r.error));
  if (!r.root.is_object()) return make_error(path + ": not a JSON object");
  out.rest = std::make_unique<json>(std::move(r.root));
  return out;
}

}  // namespace troupe
