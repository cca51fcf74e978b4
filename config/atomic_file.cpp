// atomic_file: temp file + fsync + rename + directory fsync.
#include "config/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>

namespace troupe::config {

namespace {

std::string err(const std::string& what, const std::string& path) {
  return fmt::format("{} {}: {}", what, path, std::strerror(errno));
}

status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return make_error(err("cannot open directory", dir));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return make_error(err("cannot fsync directory", dir));
  return {};
}

}  // namespace

bool is_temp_file(const std::string& name) {
  return !name.empty() && name[0] == '.' && name.find(".tmp-") != std::string::npos;
}

status write_file_atomic(const std::string& dir, const std::string& name,
                         const std::string& content) {
  static std::atomic<uint64_t> counter{0};
  const std::string tmp =
      fmt::format("{}/.{}.tmp-{}-{}", dir, name, static_cast<long>(::getpid()), counter++);
  const std::string target = dir + "/" + name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(err("cannot create", tmp));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      std::string e = err("cannot write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return make_error(e);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    std::string e = err("cannot fsync", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return make_error(e);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    std::string e = err("cannot rename into", target);
    ::unlink(tmp.c_str());
    return make_error(e);
  }
  return fsync_dir(dir);
}

status remove_file_durable(const std::string& dir, const std::string& name) {
  const std::string target = dir + "/" + name;
  if (::unlink(target.c_str()) != 0) return make_error(err("cannot remove", target));
  return fsync_dir(dir);
}

status make_dir_durable(const std::string& dir) {
  std::error_code ec;
  std::filesystem::path p(dir);
  if (std::filesystem::is_directory(p, ec)) return {};
  std::filesystem::create_directories(p, ec);
  if (ec) return make_error(fmt::format("cannot create directory {}: {}", dir, ec.message()));
  std::filesystem::path parent = std::filesystem::absolute(p, ec).parent_path();
  return fsync_dir(parent.empty() ? "." : parent.string());
}

result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(fmt::format("cannot read {}", path));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace troupe::config
