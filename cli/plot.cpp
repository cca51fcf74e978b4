#include "cli/plot.hpp"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

extern char** environ;

namespace troupe::assets {
extern const std::string_view plot_bench_py;
}

namespace troupe {

status plot_bench_result(const nlohmann::json& result, const std::string& png) {
  char path[] = "/tmp/troupe-bench-XXXXXX.json";
  const int fd = mkstemps(path, 5);
  if (fd < 0) return make_error("--plot: cannot create a temporary file in /tmp");
  const std::string text = result.dump();
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!written) {
    unlink(path);
    return make_error("--plot: cannot write the results to /tmp");
  }
  std::string python = "/usr/bin/python3";
  if (const char* p = std::getenv("TROUPE_PYTHON"); p && *p) python = p;
  else if (access(python.c_str(), X_OK) != 0) python = "python3";
  std::string script(assets::plot_bench_py);
  std::vector<std::string> args = {python, "-c", script, path, png};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, python.c_str(), nullptr, nullptr, argv.data(), environ);
  int st = 0;
  if (rc == 0) waitpid(pid, &st, 0);
  unlink(path);
  if (rc != 0) return make_error("--plot: cannot run " + python + " (plotting needs python3 with matplotlib)");
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return make_error("--plot: drawing " + png + " failed (see above)");
  return {};
}

}  // namespace troupe
