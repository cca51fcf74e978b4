// libFuzzer target: arbitrary bytes as a GGUF file. The parser must answer every input with
// a file or an error naming it, never crash, read out of bounds or allocate without bound; an
// accepted file's metadata then goes through the model-config reader, which must hold up too.
// Built and run by scripts/fuzz.sh (seeds: llama.cpp's vocab GGUF files, truncated).
#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/gguf.hpp"
#include "runtime/model_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = troupe::gguf_file::parse(std::span<const uint8_t>(data, size), "fuzz.gguf");
  if (!f.ok()) {
    if (f.message().empty()) __builtin_trap();  // every refusal says why
    return 0;
  }
  for (const auto& t : f->tensors()) {
    // Every accepted tensor lies inside the input.
    const auto* p = static_cast<const uint8_t*>(t.view.data);
    if (p < data || p + t.view.n_bytes > data + size) __builtin_trap();
  }
  auto c = troupe::model_config_from_gguf(*f);
  (void)c;
  return 0;
}
