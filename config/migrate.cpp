// migrate: the v1 -> v2 plan, applied to the parsed tree and, keeping comments, to the text.
#include "config/migrate.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <optional>

#include "config/node.hpp"

namespace troupe::config {

namespace {

using block_path = std::vector<std::string>;

// One change, described once and applied twice: to the tree (the meaning) and to the text
// (the layout and comments).
struct action {
  enum class kind { insert_first, set_value, remove, move_to_runtime, rename };
  kind k;
  block_path block;       // the map that holds `key`
  std::string key;
  std::string new_key;    // rename, move_to_runtime, set_value
  node value;             // insert_first, set_value
  std::string value_text;
  std::string comment;    // set_value: added to the line when it has none
};

struct plan {
  std::vector<action> actions;
  std::vector<std::string> notes;
};

const node_member* member_of(const node& map, std::string_view key) {
  for (const auto& m : map.members)
    if (m.key == key) return &m;
  return nullptr;
}

const node* find_block(const node& root, const block_path& p) {
  const node* n = &root;
  for (const auto& k : p) {
    if (!n->is_map()) return nullptr;
    n = n->find(k);
    if (!n) return nullptr;
  }
  return n->is_map() ? n : nullptr;
}

node* find_block(node& root, const block_path& p) {
  return const_cast<node*>(find_block(static_cast<const node&>(root), p));
}

node scalar(node_kind k, std::string text) {
  node n;
  n.kind = k;
  n.text = std::move(text);
  if (k == node_kind::integer) n.integer = std::stoll(n.text);
  n.yaml_plain = true;
  return n;
}

const block_path kTrt = {"trt_llm"};
const block_path kBuild = {"trt_llm", "build"};
const block_path kRuntime = {"trt_llm", "runtime"};

void plan_autoscaling(const node& doc, const block_path& p, const migrate_options& o, plan& out) {
  const node* a = find_block(doc, p);
  if (!a) return;
  std::string where;
  for (const auto& k : p) where += (where.empty() ? "" : ".") + k;
  if (const node_member* ct = member_of(*a, "concurrency_target")) {
    const node& v = ct->value;
    const bool numeric = (v.kind == node_kind::integer || v.kind == node_kind::floating) &&
                         std::isfinite(v.kind == node_kind::integer ? 1.0 : v.floating);
    const double c = v.kind == node_kind::integer ? static_cast<double>(v.integer) : v.floating;
    if (member_of(*a, "target_in_flight_tokens")) {
      out.actions.push_back({action::kind::remove, p, "concurrency_target"});
      out.notes.push_back(fmt::format("autoscaling: removed {}.concurrency_target; "
                                      "target_in_flight_tokens is already set", where));
    } else if (numeric && c >= 0 && c < 1e9) {
      const int64_t per_request = o.avg_input_tokens + o.avg_output_tokens;
      const auto tokens = static_cast<int64_t>(std::llround(c * static_cast<double>(per_request)));
      action act{action::kind::set_value, p, "concurrency_target", "target_in_flight_tokens"};
      act.value = scalar(node_kind::integer, std::to_string(tokens));
      act.value_text = act.value.text;
      act.comment = fmt::format("# from v1 concurrency_target {} x ({} input + {} output tokens)",
                                v.text, o.avg_input_tokens, o.avg_output_tokens);
      out.actions.push_back(std::move(act));
      out.notes.push_back(fmt::format(
          "autoscaling: {0}.concurrency_target: {1} became target_in_flight_tokens: {2} = {1} x "
          "({3} + {4}) tokens, ASSUMING requests average {3} input and {4} output tokens (set "
          "your model's averages with --avg-input-tokens and --avg-output-tokens); then tune it "
          "on the observed autoscaler_in_flight_tokens (the documented starting range is "
          "50,000-150,000)",
          where, v.text, tokens, o.avg_input_tokens, o.avg_output_tokens));
    } else {
      out.notes.push_back(fmt::format("autoscaling: {}.concurrency_target is {}, not a number: "
                                      "left as it is; replace it with target_in_flight_tokens",
                                      where, v.describe()));
    }
  }
  if (member_of(*a, "target_utilization_percentage")) {
    out.actions.push_back({action::kind::remove, p, "target_utilization_percentage"});
    out.notes.push_back(fmt::format(
        "autoscaling: removed {}.target_utilization_percentage: v2 scales on tokens in flight and "
        "rejects it (it was not folded into target_in_flight_tokens)", where));
  }
}

checked<plan> make_plan(const node& doc, const migrate_options& o) {
  checked<plan> out;
  plan& p = out.value;
  const node* trt = find_block(doc, kTrt);
  if (!doc.is_map() || !trt) {
    out.errors.push_back({"trt_llm", "trt_llm: the file has no trt_llm block to migrate"});
    return out;
  }
  const node* build = find_block(doc, kBuild);
  const node* runtime = find_block(doc, kRuntime);
  if (const node* b = trt->find("build"); b && !build && b->kind != node_kind::null) {
    out.errors.push_back({"trt_llm.build", "trt_llm.build: expected a map, got " + b->describe()});
    return out;
  }
  if (const node* r = trt->find("runtime"); r && !runtime && r->kind != node_kind::null) {
    out.errors.push_back({"trt_llm.runtime",
                          "trt_llm.runtime: expected a map, got " + r->describe()});
    return out;
  }

  // Step 1: inference_stack: v2 first in trt_llm.
  const node_member* stack = member_of(*trt, "inference_stack");
  const bool first = !trt->members.empty() && trt->members[0].key == "inference_stack";
  if (stack && first && stack->value.text == "v2") {
    p.notes.push_back("step 1: inference_stack is already v2");
  } else {
    if (stack) p.actions.push_back({action::kind::remove, kTrt, "inference_stack"});
    action a{action::kind::insert_first, kTrt, "inference_stack"};
    a.value = scalar(node_kind::string, "v2");
    a.value_text = "v2";
    p.actions.push_back(std::move(a));
    p.notes.push_back(stack ? fmt::format("step 1: set inference_stack: v2 (was {}) at the top "
                                          "of trt_llm", stack->value.describe())
                            : "step 1: added inference_stack: v2 at the top of trt_llm");
  }

  auto remove_from_build = [&](const char* key, const char* step, const char* why) {
    if (build && member_of(*build, key)) {
      p.actions.push_back({action::kind::remove, kBuild, key});
      p.notes.push_back(fmt::format("{}: removed trt_llm.build.{}{}", step, key, why));
    } else {
      p.notes.push_back(fmt::format("{}: no trt_llm.build.{}, nothing to do", step, key));
    }
  };
  remove_from_build("base_model", "step 2", " (v2 detects the architecture from the checkpoint)");

  // Steps 3 and 4, in the order the fields appear under build.
  std::vector<std::string> moved;
  bool tp = false;
  if (build) {
    for (const auto& m : build->members) {
      const bool is_tp = m.key == "tensor_parallel_count";
      if (!is_tp && m.key != "max_seq_len" && m.key != "max_batch_size" &&
          m.key != "max_num_tokens")
        continue;
      const std::string target = is_tp ? "tensor_parallel_size" : m.key;
      if (runtime && member_of(*runtime, target)) {
        p.actions.push_back({action::kind::remove, kBuild, m.key});
        p.notes.push_back(fmt::format("step {}: removed trt_llm.build.{}: runtime already sets "
                                      "{}, which is kept", is_tp ? 4 : 3, m.key, target));
        continue;
      }
      p.actions.push_back({action::kind::move_to_runtime, kBuild, m.key, target});
      if (is_tp) tp = true;
      else moved.push_back(m.key);
    }
  }
  if (moved.empty()) p.notes.push_back("step 3: no max_seq_len, max_batch_size or max_num_tokens "
                                       "under build, nothing to move");
  else {
    std::string list;
    for (size_t i = 0; i < moved.size(); ++i) list += (i ? ", " : "") + moved[i];
    p.notes.push_back(fmt::format("step 3: moved {} from build: to runtime:", list));
  }
  p.notes.push_back(tp ? "step 4: renamed tensor_parallel_count to tensor_parallel_size and "
                         "moved it to runtime:"
                       : "step 4: no tensor_parallel_count, nothing to do");
  remove_from_build("plugin_configuration", "step 5",
                    " (v2 handles paged_kv_cache, use_paged_context_fmha and "
                    "use_fp8_context_fmha automatically)");
  remove_from_build("speculator", "step 6",
                    ": v1 lookahead decoding is not supported in v2; for speculative decoding "
                    "set speculative_config (Eagle, MTP or NGram) in llm_config through the "
                    "Management API");

  // Step 7 and the other v1 runtime fields.
  if (runtime && member_of(*runtime, "enable_chunked_context")) {
    const node_member* m = member_of(*runtime, "enable_chunked_context");
    if (member_of(*runtime, "enable_chunked_prefill")) {
      p.actions.push_back({action::kind::remove, kRuntime, "enable_chunked_context"});
      p.notes.push_back("step 7: removed enable_chunked_context: enable_chunked_prefill is "
                        "already set and is kept");
    } else {
      p.actions.push_back({action::kind::rename, kRuntime, "enable_chunked_context",
                           "enable_chunked_prefill"});
      p.notes.push_back(fmt::format("step 7: replaced enable_chunked_context: {0} with "
                                    "enable_chunked_prefill: {0}", m->value.text));
    }
  } else {
    p.notes.push_back("step 7: no enable_chunked_context, nothing to do");
  }
  if (runtime) {
    if (const node_member* m = member_of(*runtime, "kv_cache_free_gpu_mem_fraction")) {
      const node& v = m->value;
      const bool is_default = (v.kind == node_kind::floating && v.floating == 0.9);
      if (is_default || member_of(*runtime, "kv_cache_memory")) {
        p.actions.push_back({action::kind::remove, kRuntime, m->key});
        p.notes.push_back(is_default
                              ? "v1 runtime: removed kv_cache_free_gpu_mem_fraction: 0.9, which "
                                "is v2's default kv_cache_memory (90% of free memory)"
                              : "v1 runtime: removed kv_cache_free_gpu_mem_fraction: "
                                "kv_cache_memory is already set and is kept");
      } else {
        p.actions.push_back({action::kind::rename, kRuntime, m->key, "kv_cache_memory"});
        p.notes.push_back(fmt::format("v1 runtime: kv_cache_free_gpu_mem_fraction: {0} became "
                                      "kv_cache_memory: {0} (the same fraction of free memory)",
                                      v.text));
      }
    }
    if (member_of(*runtime, "batch_scheduler_policy")) {
      p.actions.push_back({action::kind::remove, kRuntime, "batch_scheduler_policy"});
      p.notes.push_back("v1 runtime: removed batch_scheduler_policy: the v2 scheduler is first "
                        "come, first served with priority, and preempts by recompute");
    }
    if (member_of(*runtime, "total_token_limit")) {
      p.actions.push_back({action::kind::remove, kRuntime, "total_token_limit"});
      p.notes.push_back("v1 runtime: removed total_token_limit: the KV cache's size is set by "
                        "kv_cache_memory");
    }
  }

  plan_autoscaling(doc, {"autoscaling_settings"}, o, p);
  plan_autoscaling(doc, {"llm_config", "autoscaling_settings"}, o, p);
  return out;
}

// ---- the meaning: the plan applied to the parsed tree ----------------------------------

node apply_to_tree(node doc, const plan& p) {
  size_t n_moved = 0;
  for (const auto& a : p.actions) {
    node* blk = find_block(doc, a.block);
    if (!blk) continue;
    auto it = std::find_if(blk->members.begin(), blk->members.end(),
                           [&](const node_member& m) { return m.key == a.key; });
    switch (a.k) {
      case action::kind::insert_first:
        blk->members.insert(blk->members.begin(), node_member{a.key, 0, 0, a.value});
        break;
      case action::kind::set_value:
        if (it != blk->members.end()) {
          it->key = a.new_key;
          it->value = a.value;
        }
        break;
      case action::kind::remove:
        if (it != blk->members.end()) blk->members.erase(it);
        break;
      case action::kind::rename:
        if (it != blk->members.end()) it->key = a.new_key;
        break;
      case action::kind::move_to_runtime: {
        if (it == blk->members.end()) break;
        node_member m = std::move(*it);
        blk->members.erase(it);
        m.key = a.new_key;
        node* trt = find_block(doc, kTrt);
        auto rt_it = std::find_if(trt->members.begin(), trt->members.end(),
                                  [](const node_member& x) { return x.key == "runtime"; });
        if (rt_it == trt->members.end()) {
          trt->members.push_back(node_member{"runtime", 0, 0, node{}});
          rt_it = trt->members.end() - 1;
        }
        node* rt = &rt_it->value;
        if (rt->kind == node_kind::null) rt->kind = node_kind::map;
        rt->members.insert(rt->members.begin() + static_cast<long>(n_moved++), std::move(m));
        break;
      }
    }
  }
  return doc;
}

// ---- the layout: the plan applied to the lines of the original text -------------------

class line_editor {
 public:
  // Lines end where yaml-cpp's do, at "\n" (its marks count those); a "\r" before it is
  // kept as part of the ending. Inserted lines take the first line's ending.
  explicit line_editor(std::string_view text) {
    size_t pos = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string_view::npos) end = text.size();
      size_t content_end = end;
      if (end < text.size() && content_end > pos && text[content_end - 1] == '\r') --content_end;
      lines_.emplace_back(text.substr(pos, content_end - pos));
      endings_.emplace_back(text.substr(content_end, end == text.size() ? end - content_end
                                                                          : end + 1 - content_end));
      pos = end + 1;
    }
    if (!endings_.empty() && !endings_.front().empty()) nl_ = endings_.front();
    deleted_.assign(lines_.size(), false);
    replaced_.assign(lines_.size(), std::nullopt);
    before_.assign(lines_.size() + 1, {});
  }

  const std::string& failure() const { return failure_; }
  bool ok() const { return failure_.empty(); }
  void fail(std::string why) {
    if (failure_.empty()) failure_ = std::move(why);
  }

  static size_t indent(const std::string& l) { return l.find_first_not_of(' ') == std::string::npos ? l.size() : l.find_first_not_of(' '); }
  bool blank(size_t i) const { return lines_[i].find_first_not_of(" \t") == std::string::npos; }
  bool comment(size_t i) const { return !blank(i) && lines_[i][indent(lines_[i])] == '#'; }

  // The key must open its line at its column: a block-style entry.
  bool block_entry(const node_member& m) {
    if (m.line < 1 || static_cast<size_t>(m.line) > lines_.size()) {
      fail("an entry has no position");
      return false;
    }
    const std::string& l = lines_[m.line - 1];
    if (indent(l) != static_cast<size_t>(m.column - 1) ||
        (l.compare(m.column - 1, m.key.size(), m.key) != 0 && l[m.column - 1] != '"' &&
         l[m.column - 1] != '\'')) {
      fail(fmt::format("{} (line {}) is not a block-style entry", m.key, m.line));
      return false;
    }
    return true;
  }

  // [first, last] lines of an entry: comment lines right above it at its indentation, its
  // key line, and every following line indented deeper (or blank/comment lines between them).
  std::pair<size_t, size_t> span(const node_member& m) {
    const size_t key = static_cast<size_t>(m.line - 1);
    const size_t col = static_cast<size_t>(m.column - 1);
    size_t first = key;
    while (first > 0 && comment(first - 1) && indent(lines_[first - 1]) == col) --first;
    size_t last = key;
    for (size_t i = key + 1; i < lines_.size(); ++i) {
      if (blank(i)) continue;
      if (indent(lines_[i]) <= col) break;
      last = i;
    }
    return {first, last};
  }

  void erase(std::pair<size_t, size_t> s) {
    for (size_t i = s.first; i <= s.second; ++i) deleted_[i] = true;
  }
  std::string& line(size_t i) {
    if (!replaced_[i]) replaced_[i] = lines_[i];
    return *replaced_[i];
  }
  const std::string& original(size_t i) const { return lines_[i]; }
  void insert_before(size_t i, std::vector<std::string> ls) {
    auto& b = before_[i];
    b.insert(b.end(), ls.begin(), ls.end());
  }
  size_t size() const { return lines_.size(); }

  // Replaces the key of an entry, as written (quoted or not), on its line.
  void rename_key(size_t i, size_t col, const std::string& old_key, const std::string& new_key) {
    std::string& l = line(i);
    if (l.compare(col, old_key.size(), old_key) == 0) {
      l.replace(col, old_key.size(), new_key);
    } else if (col < l.size() && (l[col] == '"' || l[col] == '\'') &&
               l.compare(col + 1, old_key.size(), old_key) == 0) {
      l.replace(col + 1, old_key.size(), new_key);
    } else {
      fail(fmt::format("the key {} on line {} is written in a way this editor does not handle",
                       old_key, i + 1));
    }
  }

  std::string render() const {
    std::string out;
    for (size_t i = 0; i <= lines_.size(); ++i) {
      for (const auto& b : before_[i]) out += b + nl_;
      if (i == lines_.size()) break;
      if (deleted_[i]) continue;
      out += replaced_[i] ? *replaced_[i] : lines_[i];
      out += endings_[i].empty() ? nl_ : endings_[i];  // the last line gains an ending
    }
    return out;
  }

 private:
  std::vector<std::string> lines_;
  std::vector<bool> deleted_;
  std::vector<std::optional<std::string>> replaced_;
  std::vector<std::vector<std::string>> before_;
  std::vector<std::string> endings_;
  std::string nl_ = "\n";
  std::string failure_;
};

// The comment that ends a line, from the value's column on (" # ..."), or "".
std::string trailing_comment(const std::string& l, size_t from) {
  size_t i = from;
  if (i < l.size() && (l[i] == '"' || l[i] == '\'')) {
    char q = l[i++];
    while (i < l.size() && l[i] != q) i += (q == '"' && l[i] == '\\') ? 2 : 1;
    ++i;
  }
  for (; i < l.size(); ++i)
    if (l[i] == '#' && i > 0 && (l[i - 1] == ' ' || l[i - 1] == '\t')) {
      size_t start = i;
      while (start > 0 && (l[start - 1] == ' ' || l[start - 1] == '\t')) --start;
      return l.substr(start);
    }
  return "";
}

std::optional<std::string> apply_to_text(std::string_view text, const node& doc, const plan& p,
                                         std::string& why) {
  line_editor ed(text);
  const node* trt = find_block(doc, kTrt);
  const node_member* runtime_m = member_of(*trt, "runtime");
  std::vector<std::string> moved;  // lines moved to runtime, indented as under build
  size_t build_child = 0;

  for (const auto& a : p.actions) {
    const node* blk = find_block(doc, a.block);
    if (!blk) continue;
    const node_member* m = member_of(*blk, a.key);
    switch (a.k) {
      case action::kind::insert_first: {
        if (trt->members.empty()) {
          ed.fail("trt_llm has no entries to put inference_stack before");
          break;
        }
        const node_member& f = trt->members.front();
        if (!ed.block_entry(f)) break;
        ed.insert_before(ed.span(f).first,
                         {std::string(static_cast<size_t>(f.column - 1), ' ') + a.key + ": " +
                          a.value_text});
        break;
      }
      case action::kind::remove:
        if (m && ed.block_entry(*m)) ed.erase(ed.span(*m));
        break;
      case action::kind::rename:
        if (m && ed.block_entry(*m))
          ed.rename_key(static_cast<size_t>(m->line - 1), static_cast<size_t>(m->column - 1),
                        a.key, a.new_key);
        break;
      case action::kind::set_value: {
        if (!m || !ed.block_entry(*m)) break;
        if (!m->value.is_scalar() || m->value.line != m->line) {
          ed.fail(fmt::format("{} (line {}) does not have its value on its line", a.key, m->line));
          break;
        }
        const size_t i = static_cast<size_t>(m->line - 1);
        std::string c = trailing_comment(ed.original(i), static_cast<size_t>(m->value.column - 1));
        if (!a.comment.empty()) {
          // The old comment described the old value: keep its words, after the new one.
          size_t hash = c.find('#');
          std::string old = hash == std::string::npos ? "" : c.substr(hash + 1);
          while (!old.empty() && old.front() == ' ') old.erase(0, 1);
          c = "  " + a.comment + (old.empty() ? "" : " (was: " + old + ")");
        }
        ed.line(i) = std::string(static_cast<size_t>(m->column - 1), ' ') + a.new_key + ": " +
                     a.value_text + c;
        break;
      }
      case action::kind::move_to_runtime: {
        if (!m || !ed.block_entry(*m)) break;
        auto s = ed.span(*m);
        build_child = static_cast<size_t>(m->column - 1);
        const size_t key_line = static_cast<size_t>(m->line - 1);
        for (size_t i = s.first; i <= s.second; ++i) {
          std::string l = ed.original(i);
          if (i == key_line && a.new_key != a.key) {
            // Rename on the copy: the original line is deleted below.
            if (l.compare(build_child, a.key.size(), a.key) == 0)
              l.replace(build_child, a.key.size(), a.new_key);
            else
              ed.fail(fmt::format("the key {} on line {} is quoted", a.key, i + 1));
          }
          moved.push_back(std::move(l));
        }
        ed.erase(s);
        break;
      }
    }
  }

  if (!moved.empty() && ed.ok()) {
    // Where runtime's entries start, and how deep they are indented.
    size_t at = 0, child = 0;
    std::vector<std::string> header;
    const node_member& build_m = *member_of(*trt, "build");
    const size_t build_key = static_cast<size_t>(build_m.column - 1);
    if (runtime_m && runtime_m->value.kind == node_kind::map && !runtime_m->value.members.empty()) {
      const node_member& f = runtime_m->value.members.front();
      if (ed.block_entry(f)) {
        at = ed.span(f).first;
        child = static_cast<size_t>(f.column - 1);
      }
    } else if (runtime_m && runtime_m->value.kind == node_kind::null) {
      if (ed.block_entry(*runtime_m)) {
        at = static_cast<size_t>(runtime_m->line);  // right after "runtime:"
        child = static_cast<size_t>(runtime_m->column - 1) + (build_child - build_key);
      }
    } else if (!runtime_m) {
      const node_member& last = trt->members.back();
      if (ed.block_entry(last)) {
        at = ed.span(last).second + 1;
        header.push_back(std::string(build_key, ' ') + "runtime:");
        child = build_child;
      }
    } else {
      ed.fail("trt_llm.runtime is written in flow style");
    }
    if (ed.ok()) {
      for (auto& l : moved) {
        if (l.find_first_not_of(" \t") == std::string::npos) continue;
        size_t ind = line_editor::indent(l);
        if (child >= build_child) l.insert(0, child - build_child, ' ');
        else l.erase(0, std::min(ind, build_child - child));
      }
      header.insert(header.end(), moved.begin(), moved.end());
      ed.insert_before(at, std::move(header));
    }
  }
  if (!ed.ok()) {
    why = ed.failure();
    return std::nullopt;
  }
  return ed.render();
}

}  // namespace

checked<migration> migrate_to_v2(std::string_view v1_yaml, const migrate_options& options) {
  checked<migration> out;
  if (options.avg_input_tokens < 0 || options.avg_output_tokens < 0 ||
      options.avg_input_tokens + options.avg_output_tokens <= 0) {
    out.errors.push_back({"", "the average input and output tokens must be >= 0, and not both 0"});
    return out;
  }
  auto doc = parse_yaml(v1_yaml);
  if (!doc.ok()) {
    out.errors = std::move(doc.errors);
    return out;
  }
  auto pl = make_plan(doc.value, options);
  if (!pl.ok()) {
    out.errors = std::move(pl.errors);
    return out;
  }
  const node migrated = apply_to_tree(doc.value, pl.value);
  out.value.notes = pl.value.notes;

  std::string why;
  if (auto text = apply_to_text(v1_yaml, doc.value, pl.value, why)) {
    // The edited text must mean exactly the migrated document.
    auto check = parse_yaml(*text);
    if (check.ok() && same_tree(check.value, migrated)) {
      out.value.text = std::move(*text);
      out.value.notes.push_back("comments and layout: kept (the file was edited line by line)");
      return out;
    }
    why = "the line-by-line edit did not give the migrated document";
  }
  out.value.text = emit_yaml(migrated);
  out.value.comments_kept = false;
  out.value.notes.push_back(fmt::format("comments and layout: NOT kept: {}; the migrated "
                                        "document was written out from its parsed form", why));
  return out;
}

}  // namespace troupe::config
