// Proves the one model-resolution path (--model, checkpoint_repository, the Management API)
// against a real Hugging Face cache layout built in a temporary directory the way
// huggingface_hub writes it: the project's own model files stored once under blobs/<sha256>,
// snapshots/<commit>/ holding relative symlinks to them, and refs/<name> holding the commit.
// The snapshot a hub id resolves to must load as the same model as the original directory.
#include "config/model_source.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "config/deployment_store.hpp"
#include "config/hf_cache.hpp"
#include "tests/test_data.hpp"

namespace troupe::config {
namespace {

namespace fs = std::filesystem;

const std::string kV1 = "1111111111111111111111111111111111111111";
const std::string kV2 = "2222222222222222222222222222222222222222";

class model_source_test : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("troupe_models_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    hub_ = root_ / "hub";
    model_dir_ = fs::path(testing::source_dir()) / "models" / "troupe-py-7m";
    ASSERT_TRUE(fs::is_directory(model_dir_)) << model_dir_;
    // Two snapshots of one repo sharing every blob but config.json's, as two commits do.
    add_snapshot("troupe/py-7m", kV1, {"main"});
    add_snapshot("troupe/py-7m", kV2, {"v2"});
    gguf_ = fs::path(testing::source_dir()) / "models" / "troupe-py-7m.gguf";
  }
  void TearDown() override { fs::remove_all(root_); }

  // Blobs are named by content: the same file in two snapshots is one blob.
  void add_snapshot(const std::string& repo, const std::string& commit, const std::vector<std::string>& refs) {
    const fs::path dir = hub_ / hf_cache_folder(repo);
    fs::create_directories(dir / "blobs");
    fs::create_directories(dir / "refs");
    fs::create_directories(dir / "snapshots" / commit);
    for (const auto& e : fs::directory_iterator(model_dir_)) {
      const std::string name = e.path().filename().string();
      const std::string blob = "blob-" + std::to_string(fs::file_size(e.path())) + "-" + name;
      if (!fs::exists(dir / "blobs" / blob)) fs::copy_file(e.path(), dir / "blobs" / blob);
      fs::create_directory_symlink("../../blobs/" + blob, dir / "snapshots" / commit / name);
    }
    for (const auto& r : refs) std::ofstream(dir / "refs" / r) << commit;
  }
  hf_cache_location cache() const { return {hub_.string(), "HF_HUB_CACHE"}; }
  std::string snapshot(const std::string& commit) const {
    return (hub_ / "models--troupe--py-7m" / "snapshots" / commit).string();
  }

  fs::path root_, hub_, model_dir_, gguf_;
};

TEST_F(model_source_test, a_hub_id_resolves_to_its_snapshot_and_serves_under_its_name) {
  auto r = resolve_model("troupe/py-7m", cache(), root_.string());
  ASSERT_TRUE(r.ok()) << format_errors(r.errors);
  EXPECT_EQ(r.value.path, snapshot(kV1));
  EXPECT_EQ(r.value.repo, "troupe/py-7m");
  EXPECT_EQ(r.value.revision, "main");
  EXPECT_EQ(r.value.commit, kV1);
  EXPECT_EQ(r.value.served_name, "troupe/py-7m");
  // The snapshot's files are the model's, reached through the blob symlinks.
  EXPECT_EQ(fs::file_size(fs::path(r.value.path) / "model.safetensors"),
            fs::file_size(model_dir_ / "model.safetensors"));
}

TEST_F(model_source_test, a_revision_comes_from_the_spec_or_the_field_and_may_be_a_commit) {
  auto tag = resolve_model("troupe/py-7m@v2", cache());
  ASSERT_TRUE(tag.ok()) << format_errors(tag.errors);
  EXPECT_EQ(tag.value.commit, kV2);
  EXPECT_EQ(tag.value.revision, "v2");
  auto field = resolve_model("troupe/py-7m", cache(), ".", "v2");
  ASSERT_TRUE(field.ok());
  EXPECT_EQ(field.value.path, snapshot(kV2));
  auto commit = resolve_model("troupe/py-7m@" + kV2, cache());
  ASSERT_TRUE(commit.ok());
  EXPECT_EQ(commit.value.path, snapshot(kV2));

  auto both = resolve_model("troupe/py-7m@v2", cache(), ".", "main");
  ASSERT_EQ(both.errors.size(), 1u);
  EXPECT_EQ(both.errors[0].message, "--model: troupe/py-7m@v2 names revision v2, and revision says main; give one");
}

TEST_F(model_source_test, local_directories_and_gguf_files_are_paths) {
  auto dir = resolve_model(model_dir_.string(), cache());
  ASSERT_TRUE(dir.ok()) << format_errors(dir.errors);
  EXPECT_EQ(dir.value.path, model_dir_.string());
  EXPECT_EQ(dir.value.served_name, "troupe-py-7m");
  EXPECT_EQ(dir.value.repo, "");

  auto gguf = resolve_model(gguf_.string(), cache());
  ASSERT_TRUE(gguf.ok()) << format_errors(gguf.errors);
  EXPECT_EQ(gguf.value.path, gguf_.string());
  EXPECT_EQ(gguf.value.served_name, "troupe-py-7m");

  // A relative path that exists wins over the hub id spelled the same way.
  fs::create_directories(root_ / "troupe");
  fs::create_directory_symlink(model_dir_, root_ / "troupe" / "py-7m");
  auto rel = resolve_model("troupe/py-7m", cache(), root_.string());
  ASSERT_TRUE(rel.ok());
  EXPECT_EQ(rel.value.repo, "");
  EXPECT_EQ(rel.value.served_name, "py-7m");

  auto missing = resolve_model("./nowhere", cache(), root_.string(), "", "model");
  ASSERT_EQ(missing.errors.size(), 1u);
  EXPECT_EQ(missing.errors[0].path, "model");
  EXPECT_EQ(missing.errors[0].message,
            "model: ./nowhere: no such file or directory (looked at " + (root_ / "nowhere").string() + ")");
  auto missing_gguf = resolve_model("m.gguf", cache(), root_.string());
  ASSERT_EQ(missing_gguf.errors.size(), 1u);  // never taken for a hub id

  auto rev = resolve_model(model_dir_.string(), cache(), ".", "v2", "model", "revision");
  ASSERT_EQ(rev.errors.size(), 1u);
  EXPECT_EQ(rev.errors[0].path, "revision");
}

TEST_F(model_source_test, a_miss_says_where_it_looked_and_lists_the_cached_models) {
  add_snapshot("other/model", kV1, {"main"});
  auto r = resolve_model("Qwen/Qwen3-0.6B", cache());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "--model");
  EXPECT_EQ(r.errors[0].message,
            "--model: Qwen/Qwen3-0.6B is not in the local Hugging Face cache: looked for " +
                (hub_ / "models--Qwen--Qwen3-0.6B").string() + " (hub cache " + hub_.string() +
                ", from HF_HUB_CACHE); the cache holds: other/model, troupe/py-7m");
  EXPECT_NE(r.errors[0].hint.find("huggingface-cli download Qwen/Qwen3-0.6B"), std::string::npos);

  auto no_rev = resolve_model("troupe/py-7m@v9", cache());
  ASSERT_EQ(no_rev.errors.size(), 1u);
  EXPECT_NE(no_rev.errors[0].message.find((hub_ / "models--troupe--py-7m" / "refs" / "v9").string()),
            std::string::npos);

  auto neither = resolve_model("a/b/c", cache(), root_.string());
  ASSERT_EQ(neither.errors.size(), 1u);
  EXPECT_EQ(neither.errors[0].message, "--model: a/b/c is neither a file or directory (looked at " +
                                           (root_ / "a/b/c").string() +
                                           ") nor a Hugging Face repo id (org/name[@revision])");
}

TEST_F(model_source_test, the_cache_listing_counts_each_blob_once) {
  const auto repos = scan_hf_cache(cache());
  ASSERT_EQ(repos.size(), 1u);
  EXPECT_EQ(repos[0].repo, "troupe/py-7m");
  ASSERT_EQ(repos[0].snapshots.size(), 2u);
  uintmax_t total = 0;
  for (const auto& e : fs::directory_iterator(model_dir_)) total += fs::file_size(e.path());
  for (const auto& s : repos[0].snapshots) {
    EXPECT_EQ(s.size_bytes, total);
    EXPECT_EQ(s.format, "safetensors");
    EXPECT_EQ(s.architecture, "LlamaForCausalLM");
  }
  EXPECT_EQ(repos[0].snapshots[0].refs, std::vector<std::string>{"main"});
  EXPECT_EQ(repos[0].snapshots[1].refs, std::vector<std::string>{"v2"});
  EXPECT_EQ(cached_model_names(cache()), "troupe/py-7m");
  EXPECT_EQ(cached_model_names({(root_ / "absent").string(), "HF_HOME"}), "none");
}

TEST_F(model_source_test, the_management_api_resolves_models_the_same_way) {
  store_options so;
  so.state_dir = (root_ / "state").string();
  so.hf_cache = cache();
  so.base_dir = root_.string();
  auto store = deployment_store::open(so);
  ASSERT_TRUE(store.ok()) << store.message();
  deployment d;
  auto req = parse_deployment_request(R"({"model": "troupe/py-7m@v2"})");
  ASSERT_TRUE(req.ok());
  ASSERT_TRUE(store->create(req.value, &d).ok());
  EXPECT_EQ(d.model_path, snapshot(kV2));
  EXPECT_EQ(d.commit, kV2);
  EXPECT_EQ(d.name, "py-7m-v2");

  auto gguf_req = parse_deployment_request(R"({"name": "g", "model": ")" + gguf_.string() + R"("})");
  ASSERT_TRUE(gguf_req.ok());
  ASSERT_TRUE(store->create(gguf_req.value, &d).ok());
  EXPECT_EQ(d.model_path, gguf_.string());
}

}  // namespace
}  // namespace troupe::config
