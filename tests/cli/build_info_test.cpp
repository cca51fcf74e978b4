// Proves cmake/build_info.cmake, which every build runs to record the git commit that
// `troupe --version` prints: it names the commit checked out at that build (a new commit gives
// a new name, so the version is never stale), notes uncommitted changes, says "no commit" for
// a tree that is not a git checkout of its own, and leaves its output untouched when nothing
// changed (so an unchanged tree rebuilds nothing).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/test_data.hpp"

namespace {

namespace fs = std::filesystem;

class build_info_test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::system("git --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "git is not installed";
    dir_ = fs::temp_directory_path() / ("troupe_build_info_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "tree");
    write("main.cpp", "int main() {}\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& file, const std::string& text) { std::ofstream(dir_ / "tree" / file) << text; }

  // Runs a shell command in the tree; its stdout.
  std::string sh(const std::string& cmd) {
    const std::string out = (dir_ / "sh.out").string();
    const std::string full = "cd '" + (dir_ / "tree").string() + "' && " + cmd + " >'" + out + "' 2>&1";
    EXPECT_EQ(std::system(full.c_str()), 0) << cmd << "\n" << read(out);
    std::string s = read(out);
    while (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
  }
  static std::string read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  void commit(const std::string& message) {
    sh("git add -A && git -c user.name=test -c user.email=test@example.com commit -q -m '" + message + "'");
  }

  // Runs the script for `source` (the tree by default); the generated source's text.
  std::string record(const fs::path& source = {}) {
    const std::string cmd = std::string("'") + TROUPE_CMAKE_COMMAND + "' -DSOURCE_DIR='" +
                            (source.empty() ? dir_ / "tree" : source).string() + "' -DOUT='" + out().string() +
                            "' -P '" + troupe::testing::source_dir() + "/cmake/build_info.cmake'";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    return read(out());
  }
  fs::path out() const { return dir_ / "build_info.cpp"; }

  fs::path dir_;
};

TEST_F(build_info_test, a_tree_that_is_not_a_git_checkout_has_no_commit) {
  const std::string text = record();
  EXPECT_NE(text.find("git_commit = \"\";"), std::string::npos) << text;
  EXPECT_NE(text.find("git_dirty = false;"), std::string::npos) << text;
}

TEST_F(build_info_test, each_build_names_the_commit_checked_out_then) {
  sh("git init -q");
  commit("first");
  const std::string first = sh("git rev-parse HEAD");
  std::string text = record();
  EXPECT_NE(text.find("git_commit = \"" + first + "\";"), std::string::npos) << text;
  EXPECT_NE(text.find("git_dirty = false;"), std::string::npos) << text;

  // Nothing changed: the file is not rewritten, so nothing is recompiled.
  const auto written = fs::last_write_time(out());
  fs::last_write_time(out(), written - std::chrono::hours(1));
  record();
  EXPECT_EQ(fs::last_write_time(out()), written - std::chrono::hours(1));

  write("main.cpp", "int main() { return 0; }\n");
  text = record();
  EXPECT_NE(text.find("git_commit = \"" + first + "\";"), std::string::npos) << text;
  EXPECT_NE(text.find("git_dirty = true;"), std::string::npos) << text;

  commit("second");
  const std::string second = sh("git rev-parse HEAD");
  ASSERT_NE(second, first);
  text = record();
  EXPECT_NE(text.find("git_commit = \"" + second + "\";"), std::string::npos) << text;
  EXPECT_NE(text.find("git_dirty = false;"), std::string::npos) << text;
}

TEST_F(build_info_test, a_folder_inside_another_repository_is_not_its_checkout) {
  sh("git init -q");
  fs::create_directories(dir_ / "tree" / "vendored");
  write("vendored/lib.cpp", "\n");
  commit("with a vendored folder");
  const std::string text = record(dir_ / "tree" / "vendored");
  EXPECT_NE(text.find("git_commit = \"\";"), std::string::npos) << text;
}

}  // namespace
