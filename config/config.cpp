// config: the entry points that read whole documents.
#include "config/config.hpp"

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>

#include "config/node.hpp"
#include "config/readers.hpp"

namespace troupe::config {

checked<config_file> parse_config_yaml(std::string_view yaml) {
  checked<config_file> out;
  auto doc = parse_yaml(yaml);
  if (!doc.ok()) {
    out.errors = std::move(doc.errors);
    return out;
  }
  read_config_file(doc.value, out.value, out.errors);
  // In the order of the file (errors without a position last), as a reader fixes them.
  std::stable_sort(out.errors.begin(), out.errors.end(),
                   [](const config_error& a, const config_error& b) {
                     auto key = [](const config_error& e) {
                       return std::pair(e.line > 0 ? e.line : INT_MAX, e.line > 0 ? e.column : 0);
                     };
                     return key(a) < key(b);
                   });
  return out;
}

checked<config_file> load_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    checked<config_file> out;
    out.errors.push_back({"", "cannot read " + path});
    return out;
  }
  std::ostringstream s;
  s << in.rdbuf();
  return parse_config_yaml(s.str());
}

checked<llm_config_request> parse_llm_config_json(std::string_view json) {
  checked<llm_config_request> out;
  auto doc = parse_json(json);
  if (!doc.ok()) {
    out.errors = std::move(doc.errors);
    return out;
  }
  if (doc.value.kind != node_kind::map) {
    out.errors.push_back({"llm_config", "llm_config: expected a JSON object, got " +
                                            doc.value.describe()});
    return out;
  }
  read_llm_config(&doc.value, "llm_config", out.value.llm, &out.value.runtime, out.errors);
  return out;
}

checked<llm_config_file> load_llm_config_file(const std::string& path) {
  checked<llm_config_file> out;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    out.errors.push_back({"", "cannot read " + path});
    return out;
  }
  std::ostringstream text;
  text << in.rdbuf();
  const std::string s = text.str();
  const size_t first = s.find_first_not_of(" \t\r\n");
  auto doc = first != std::string::npos && s[first] == '{' ? parse_json(s) : parse_yaml(s);
  if (!doc.ok()) {
    out.errors = std::move(doc.errors);
    return out;
  }
  const node* block = &doc.value;
  if (block->is_map() && block->members.size() == 1 && block->members[0].key == "llm_config") block = &block->members[0].value;
  if (!block->is_map()) {
    out.errors.push_back({"llm_config", "llm_config: expected a map of llm_config fields, got " + block->describe()});
    return out;
  }
  for (const node_member& m : block->members) out.value.present.push_back(m.key);
  read_llm_config(block, "llm_config", out.value.config.llm, &out.value.config.runtime, out.errors);
  return out;
}

}  // namespace troupe::config
