// unicode_tables: the generated Unicode data behind NFC (see scripts/gen_unicode_tables.py).
#pragma once

#include <cstddef>
#include <cstdint>

namespace troupe::unicode_tables {

struct ccc_range {
  uint32_t first, last;
  uint8_t ccc;  // canonical combining class, never 0 here
};
struct decomposition {
  uint32_t cp, first, second;  // second is 0 for a singleton decomposition
};
struct composition {
  uint32_t first, second, composite;  // sorted by (first, second)
};
struct cp_range {
  uint32_t first, last;
};

extern const char* const unicode_version;
extern const ccc_range ccc_ranges[];
extern const size_t n_ccc_ranges;
extern const decomposition decompositions[];  // sorted by cp
extern const size_t n_decompositions;
extern const composition compositions[];
extern const size_t n_compositions;
// Code points that may change under NFC, or make their neighbours change; a string with
// none of them is already in NFC.
extern const cp_range nfc_unstable[];
extern const size_t n_nfc_unstable;

}  // namespace troupe::unicode_tables
