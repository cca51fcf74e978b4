// atomic_file: crash-safe file replacement and removal for the deployment store's state.
#pragma once

#include <string>

#include "runtime/result.hpp"

namespace troupe::config {

// Writes `content` to `dir`/`name` so that after a crash the file is either the old one or
// the new one, never a mix, and once it returns the new one survives power loss: write a
// temporary file in the same directory, fsync it, rename it over the target, fsync the
// directory. Temporary files are named ".<name>.tmp-<pid>-<n>"; is_temp_file() spots the
// ones a crash leaves behind.
status write_file_atomic(const std::string& dir, const std::string& name,
                         const std::string& content);

// Removes `dir`/`name` and fsyncs the directory, so the removal is durable on return.
status remove_file_durable(const std::string& dir, const std::string& name);

// Creates `dir` (and its parents) if needed and fsyncs its parent.
status make_dir_durable(const std::string& dir);

bool is_temp_file(const std::string& name);

result<std::string> read_file(const std::string& path);

}  // namespace troupe::config
