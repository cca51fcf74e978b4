// Fuzzes the JSON entry points: llm_config and the Management API's create body.
//
// Not built by CMake. Build and run (from the repository root):
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. \
//     tests/fuzz/llm_config_json_fuzz.cpp config/*.cpp -lyaml-cpp -lfmt -o llm_config_json_fuzz
//   ./llm_config_json_fuzz -dict=tests/fuzz/config.dict -max_len=4096 -max_total_time=300 \
//     fuzz-corpus/llm_config_json tests/fuzz/seeds/llm_config_json
// Besides crashes and sanitizer reports it checks round trips: an accepted llm_config, written
// out with its defaults, is accepted again with the same meaning, and an accepted create
// body survives the store's record format.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "config/deployment_store.hpp"
#include "config/management_api.hpp"
#include "config/settings_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace troupe::config;
  const std::string text(reinterpret_cast<const char*>(data), size);

  auto r = parse_llm_config_json(text);
  if (r.ok()) {
    const std::string effective = to_json(r.value.llm, r.value.runtime).dump();
    auto again = parse_llm_config_json(effective);
    if (!again.ok()) __builtin_trap();
    if (to_json(again.value.llm, again.value.runtime).dump() != effective) __builtin_trap();
  } else {
    (void)error_body(r.errors, "invalid_request_error", "invalid_llm_config").dump();
  }

  auto req = parse_deployment_request(text);
  if (req.ok()) {
    deployment d;
    d.id = "dpl-0000000000000001";
    d.name = req.value.name.empty() ? "x" : req.value.name;
    d.model = req.value.model;
    d.revision = req.value.revision;
    d.llm = req.value.llm;
    d.runtime = req.value.runtime;
    d.llm_config_json = req.value.llm_config_json;
    auto back = deployment_from_record(deployment_to_record(d));
    if (!back.ok()) __builtin_trap();
    if (deployment_json(back.value).dump() != deployment_json(d).dump()) {
      // served_model_name defaults to the name on load; compare with that default applied.
      if (d.runtime.served_model_name.empty()) d.runtime.served_model_name = d.name;
      if (deployment_json(back.value).dump() != deployment_json(d).dump()) __builtin_trap();
    }
  }
  return 0;
}
