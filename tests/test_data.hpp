// Paths to fetched test data and the source tree, for tests (set by ctest's environment).
#pragma once

#include <cstdlib>
#include <string>

namespace troupe::testing {

inline std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}
// scripts/fetch_test_data.sh fills this folder; tests fail (not skip) when it is missing.
inline std::string test_data_dir() { return env_or("TROUPE_TEST_DATA", "/nonexistent-test-data"); }
inline std::string source_dir() { return env_or("TROUPE_SOURCE_DIR", "."); }
inline std::string build_dir() { return env_or("TROUPE_BUILD_DIR", "."); }
inline std::string python() { return env_or("TROUPE_PYTHON", "/usr/bin/python3"); }

}  // namespace troupe::testing
