// Proves checkpoint_repository resolution against a Hugging Face cache layout that the test
// builds in a temporary directory (refs/<revision> -> snapshots/<commit>/), local
// directories, and errors that say where they looked.
#include "config/checkpoint.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <unistd.h>

namespace troupe::config {
namespace {

namespace fs = std::filesystem;

const std::string kMain = "0123456789abcdef0123456789abcdef01234567";
const std::string kDev = "fedcba9876543210fedcba9876543210fedcba98";

class checkpoint_test : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("troupe_ckpt_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    hub_ = root_ / "hf" / "hub";
    add_snapshot("Qwen/Qwen3-4B", kMain, "main");
    add_snapshot("Qwen/Qwen3-4B", kDev, "dev");
    add_snapshot("gpt2", kMain, "main");
  }
  void TearDown() override { fs::remove_all(root_); }

  void add_snapshot(const std::string& repo, const std::string& commit, const std::string& ref) {
    fs::path dir = hub_ / folder_name(repo);
    fs::create_directories(dir / "refs");
    fs::create_directories(dir / "snapshots" / commit);
    std::ofstream(dir / "snapshots" / commit / "config.json") << "{}";
    std::ofstream(dir / "refs" / ref) << commit;  // huggingface_hub writes no newline
  }
  static std::string folder_name(const std::string& repo) {
    std::string f = "models--";
    for (char c : repo) f += c == '/' ? std::string("--") : std::string(1, c);
    return f;
  }
  hf_cache_location cache() const { return {hub_.string(), "HF_HUB_CACHE"}; }
  static checkpoint_repository hf(const std::string& repo, const std::string& rev = "main") {
    checkpoint_repository c;
    c.repo = repo;
    c.revision = rev;
    return c;
  }

  fs::path root_, hub_;
};

TEST_F(checkpoint_test, hf_repo_resolves_through_refs_to_its_snapshot) {
  auto r = resolve_checkpoint(hf("Qwen/Qwen3-4B"), cache());
  ASSERT_TRUE(r.ok()) << format_errors(r.errors);
  EXPECT_EQ(r.value.path, (hub_ / "models--Qwen--Qwen3-4B" / "snapshots" / kMain).string());
  EXPECT_EQ(r.value.commit, kMain);

  auto dev = resolve_checkpoint(hf("Qwen/Qwen3-4B", "dev"), cache());
  ASSERT_TRUE(dev.ok()) << format_errors(dev.errors);
  EXPECT_EQ(dev.value.commit, kDev);

  auto by_commit = resolve_checkpoint(hf("Qwen/Qwen3-4B", kDev), cache());
  ASSERT_TRUE(by_commit.ok());
  EXPECT_EQ(by_commit.value.path, (hub_ / "models--Qwen--Qwen3-4B" / "snapshots" / kDev).string());

  auto no_org = resolve_checkpoint(hf("gpt2"), cache());
  ASSERT_TRUE(no_org.ok()) << format_errors(no_org.errors);
}

TEST_F(checkpoint_test, a_ref_file_with_a_trailing_newline_works) {
  std::ofstream(hub_ / "models--Qwen--Qwen3-4B" / "refs" / "main") << kMain << "\n";
  EXPECT_TRUE(resolve_checkpoint(hf("Qwen/Qwen3-4B"), cache()).ok());
}

TEST_F(checkpoint_test, errors_say_where_they_looked) {
  const std::string repo_dir = (hub_ / "models--meta-llama--Llama-3.1-8B").string();
  auto missing = resolve_checkpoint(hf("meta-llama/Llama-3.1-8B"), cache());
  ASSERT_EQ(missing.errors.size(), 1u);
  EXPECT_EQ(missing.errors[0].path, "trt_llm.build.checkpoint_repository.repo");
  EXPECT_EQ(missing.errors[0].message,
            "trt_llm.build.checkpoint_repository.repo: meta-llama/Llama-3.1-8B is not in the "
            "local Hugging Face cache: looked for " + repo_dir + " (hub cache " + hub_.string() +
            ", from HF_HUB_CACHE); the cache holds: Qwen/Qwen3-4B, gpt2");
  EXPECT_NE(missing.errors[0].hint.find("huggingface-cli download meta-llama/Llama-3.1-8B"),
            std::string::npos);

  auto no_ref = resolve_checkpoint(hf("Qwen/Qwen3-4B", "v9"), cache());
  ASSERT_EQ(no_ref.errors.size(), 1u);
  EXPECT_EQ(no_ref.errors[0].path, "trt_llm.build.checkpoint_repository.revision");
  EXPECT_NE(no_ref.errors[0].message.find(
                "looked for " + (hub_ / "models--Qwen--Qwen3-4B" / "refs" / "v9").string()),
            std::string::npos)
      << no_ref.errors[0].message;
  EXPECT_NE(no_ref.errors[0].message.find(kMain), std::string::npos);  // lists the snapshots

  fs::remove_all(hub_ / "models--Qwen--Qwen3-4B" / "snapshots" / kMain);
  auto gone = resolve_checkpoint(hf("Qwen/Qwen3-4B"), cache());
  ASSERT_EQ(gone.errors.size(), 1u);
  EXPECT_NE(gone.errors[0].message.find(
                "looked for " + (hub_ / "models--Qwen--Qwen3-4B" / "snapshots" / kMain).string()),
            std::string::npos)
      << gone.errors[0].message;
}

TEST_F(checkpoint_test, names_that_would_leave_the_cache_are_refused) {
  for (const char* repo : {"../etc", "a/../../b", "/abs", "a/b/c", "a b"}) {
    auto r = resolve_checkpoint(hf(repo), cache());
    ASSERT_EQ(r.errors.size(), 1u) << repo;
    EXPECT_EQ(r.errors[0].message, std::string("trt_llm.build.checkpoint_repository.repo: \"") +
                                       repo + "\" is not a Hugging Face repo id (org/name)");
  }
  for (const char* rev : {"../../../etc/passwd", "/etc", "a//b", "x y"}) {
    auto r = resolve_checkpoint(hf("Qwen/Qwen3-4B", rev), cache());
    ASSERT_EQ(r.errors.size(), 1u) << rev;
    EXPECT_EQ(r.errors[0].path, "trt_llm.build.checkpoint_repository.revision");
  }
}

TEST_F(checkpoint_test, local_directories) {
  fs::create_directories(root_ / "models" / "tiny");
  checkpoint_repository local;
  local.source = checkpoint_source::local;
  local.repo = "models/tiny";
  auto rel = resolve_checkpoint(local, cache(), root_.string());
  ASSERT_TRUE(rel.ok()) << format_errors(rel.errors);
  EXPECT_EQ(rel.value.path, (root_ / "models" / "tiny").string());
  EXPECT_EQ(rel.value.commit, "");

  local.repo = (root_ / "models" / "tiny").string();
  EXPECT_TRUE(resolve_checkpoint(local, cache(), "/").ok());

  local.repo = "models/huge";
  auto missing = resolve_checkpoint(local, cache(), root_.string());
  ASSERT_EQ(missing.errors.size(), 1u);
  EXPECT_EQ(missing.errors[0].message,
            "trt_llm.build.checkpoint_repository.repo: the local checkpoint directory "
            "models/huge does not exist (looked at " + (root_ / "models" / "huge").string() + ")");
}

TEST_F(checkpoint_test, remote_sources_are_not_fetched) {
  checkpoint_repository s3 = hf("bucket/model");
  s3.source = checkpoint_source::s3;
  auto r = resolve_checkpoint(s3, cache());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "trt_llm.build.checkpoint_repository.source");
  EXPECT_EQ(r.errors[0].message,
            "trt_llm.build.checkpoint_repository.source: troupe reads checkpoints that are on "
            "disk: the local Hugging Face cache (source: HF) or a directory (source: LOCAL); it "
            "cannot fetch from S3");
}

// Sets environment variables for one scope and restores them after.
class env_guard {
 public:
  explicit env_guard(std::vector<std::pair<const char*, const char*>> vars) {
    for (auto& [k, v] : vars) {
      const char* old = std::getenv(k);
      saved_.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
      if (v) ::setenv(k, v, 1);
      else ::unsetenv(k);
    }
  }
  ~env_guard() {
    for (auto& [k, v] : saved_) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

TEST(checkpoint_env, hub_cache_location_follows_huggingface_hub) {
  {
    env_guard g({{"HF_HUB_CACHE", "/c/hub"}, {"HUGGINGFACE_HUB_CACHE", "/old"},
                 {"HF_HOME", "/h"}, {"XDG_CACHE_HOME", "/x"}, {"HOME", "/home/u"}});
    EXPECT_EQ(hf_cache_from_environment().hub_dir, "/c/hub");
    EXPECT_EQ(hf_cache_from_environment().decided_by, "HF_HUB_CACHE");
  }
  {
    env_guard g({{"HF_HUB_CACHE", nullptr}, {"HUGGINGFACE_HUB_CACHE", "/old"},
                 {"HF_HOME", "/h"}, {"XDG_CACHE_HOME", "/x"}, {"HOME", "/home/u"}});
    EXPECT_EQ(hf_cache_from_environment().hub_dir, "/old");
  }
  {
    env_guard g({{"HF_HUB_CACHE", nullptr}, {"HUGGINGFACE_HUB_CACHE", nullptr},
                 {"HF_HOME", "/h"}, {"XDG_CACHE_HOME", "/x"}, {"HOME", "/home/u"}});
    EXPECT_EQ(hf_cache_from_environment().hub_dir, "/h/hub");
  }
  {
    env_guard g({{"HF_HUB_CACHE", nullptr}, {"HUGGINGFACE_HUB_CACHE", nullptr},
                 {"HF_HOME", nullptr}, {"XDG_CACHE_HOME", "/x"}, {"HOME", "/home/u"}});
    EXPECT_EQ(hf_cache_from_environment().hub_dir, "/x/huggingface/hub");
  }
  {
    env_guard g({{"HF_HUB_CACHE", nullptr}, {"HUGGINGFACE_HUB_CACHE", nullptr},
                 {"HF_HOME", nullptr}, {"XDG_CACHE_HOME", nullptr}, {"HOME", "/home/u"}});
    EXPECT_EQ(hf_cache_from_environment().hub_dir, "/home/u/.cache/huggingface/hub");
  }
}

}  // namespace
}  // namespace troupe::config
