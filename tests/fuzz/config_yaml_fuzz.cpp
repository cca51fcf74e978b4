// Fuzzes the YAML entry points: config.yaml validation and the v1 -> v2 migration.
//
// Not built by CMake. Build and run (from the repository root):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. \
//     tests/fuzz/config_yaml_fuzz.cpp config/*.cpp -lyaml-cpp -lfmt -o config_yaml_fuzz
//   ./config_yaml_fuzz -dict=tests/fuzz/config.dict -max_len=4096 -max_total_time=300 \
//     fuzz-corpus/config_yaml tests/fuzz/seeds/config_yaml tests/config/data
// Besides crashes and sanitizer reports it checks: the migration's output always parses,
// and migrating it again changes nothing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "config/migrate.hpp"
#include "config/node.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto c = troupe::config::parse_config_yaml(text);
  (void)troupe::config::format_errors(c.errors, "fuzz.yaml");

  auto m = troupe::config::migrate_to_v2(text);
  if (m.ok()) {
    auto again = troupe::config::parse_yaml(m.value.text);
    if (!again.ok()) __builtin_trap();  // the migration wrote something unreadable
    auto twice = troupe::config::migrate_to_v2(m.value.text);
    if (!twice.ok()) __builtin_trap();
    auto a = troupe::config::parse_yaml(twice.value.text);
    if (!a.ok() || !troupe::config::same_tree(a.value, again.value)) __builtin_trap();
  }
  return 0;
}
