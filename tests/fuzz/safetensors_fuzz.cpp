// libFuzzer target: arbitrary bytes as a .safetensors file (an 8-byte length, a JSON header,
// the data). Every input gets a file or an error naming it; every accepted tensor lies inside
// the input with exactly the bytes its shape and dtype need.
// Built and run by scripts/fuzz.sh.
#include <cstddef>
#include <cstdint>
#include <span>

#include "runtime/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = troupe::safetensors_file::parse(std::span<const uint8_t>(data, size), "fuzz.safetensors");
  if (!f.ok()) {
    if (f.message().empty()) __builtin_trap();
    return 0;
  }
  for (const auto& [name, v] : f->tensors()) {
    const auto* p = static_cast<const uint8_t*>(v.data);
    if (p < data || p + v.n_bytes > data + size) __builtin_trap();
    if (v.n_bytes != troupe::dtype_row_bytes(v.type, v.n_elements())) __builtin_trap();
  }
  return 0;
}
