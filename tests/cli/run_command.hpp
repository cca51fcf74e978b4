// run_command: runs a shell command line for tests that drive the built troupe binary, with its
// exit status, stdout, stderr (apart) and how long it took.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/test_data.hpp"

namespace troupe::testing {

struct run_result {
  int rc = -1;  // the exit status; -1 when killed by a signal
  std::string out, err;
  double seconds = 0;
};

inline std::string troupe_binary() { return build_dir() + "/cli/troupe"; }

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `shell` through /bin/sh with stdin from /dev/null.
inline run_result run_command(const std::string& shell) {
  namespace fs = std::filesystem;
  static std::atomic<int> n{0};
  const fs::path dir = fs::temp_directory_path() / ("troupe_run_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
  fs::create_directories(dir);
  const std::string cmd = shell + " >'" + (dir / "out").string() + "' 2>'" + (dir / "err").string() + "' </dev/null";
  const auto t0 = std::chrono::steady_clock::now();
  const int st = std::system(cmd.c_str());
  run_result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = read_file(dir / "out");
  r.err = read_file(dir / "err");
  fs::remove_all(dir);
  return r;
}

}  // namespace troupe::testing
