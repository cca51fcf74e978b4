// build_info: what this binary was built from, recorded at build time (cmake/build_info.cmake
// writes the git half on every build; CMake passes the rest as definitions to cli/version.cpp).
#pragma once

namespace troupe::build_info {

// The full commit hash the source tree had checked out at build time; "" when it was not a
// git checkout of its own (a tarball, or git missing).
extern const char* const git_commit;
// Whether tracked files differed from that commit.
extern const bool git_dirty;

}  // namespace troupe::build_info
