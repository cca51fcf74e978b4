// Proves the GGUF reader reads real files and refuses broken ones with a named error.
#include "runtime/gguf.hpp"

#include <cstring>

#include <gtest/gtest.h>

#include "tests/test_data.hpp"

namespace troupe {
namespace {

// Writes GGUF bytes by hand, independently of the reader.
struct gguf_builder {
  std::vector<uint8_t> b;
  template <class T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  void header(uint64_t n_tensors, uint64_t n_kv) {
    b.insert(b.end(), {'G', 'G', 'U', 'F'});
    put<uint32_t>(3);
    put<uint64_t>(n_tensors);
    put<uint64_t>(n_kv);
  }
  void align(size_t a = 32) {
    while (b.size() % a) b.push_back(0);
  }
};

TEST(gguf, reads_real_vocab_file) {
  auto f = gguf_file::open(testing::test_data_dir() + "/vocab/ggml-vocab-qwen2.gguf");
  ASSERT_TRUE(f.ok()) << f.message();
  EXPECT_EQ(f->version(), 3u);
  auto model = f->get_string("tokenizer.ggml.model");
  ASSERT_TRUE(model.ok()) << model.message();
  EXPECT_EQ(*model, "gpt2");
  const gguf_value* tokens = f->find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  ASSERT_NE(tokens->as_strings(), nullptr);
  EXPECT_GT(tokens->as_strings()->size(), 150000u);
  EXPECT_EQ((*tokens->as_strings())[0], "!");
  EXPECT_TRUE(f->tensors().empty());
}

TEST(gguf, reads_tensors_with_shapes_outermost_first) {
  gguf_builder g;
  g.header(2, 1);
  g.str("general.architecture");
  g.put<uint32_t>(8);
  g.str("llama");
  // f32 tensor, ne = [3, 2] (3 per row, 2 rows) -> shape [2, 3]
  g.str("a");
  g.put<uint32_t>(2);
  g.put<uint64_t>(3);
  g.put<uint64_t>(2);
  g.put<uint32_t>(0);
  g.put<uint64_t>(0);
  // q8_0 tensor, one row of 32
  g.str("b");
  g.put<uint32_t>(1);
  g.put<uint64_t>(32);
  g.put<uint32_t>(8);
  g.put<uint64_t>(32);
  g.align();
  for (int i = 0; i < 6; ++i) g.put<float>(static_cast<float>(i));
  g.align();
  for (int i = 0; i < 34; ++i) g.b.push_back(static_cast<uint8_t>(i));
  auto f = gguf_file::parse(g.b, "mem.gguf");
  ASSERT_TRUE(f.ok()) << f.message();
  EXPECT_EQ(*f->get_string("general.architecture"), "llama");
  const gguf_tensor_info* a = f->find_tensor("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->view.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->view.type, dtype::f32);
  EXPECT_EQ(static_cast<const float*>(a->view.data)[5], 5.0f);
  const gguf_tensor_info* b = f->find_tensor("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->view.type, dtype::q8_0);
  EXPECT_EQ(b->view.n_bytes, 34u);
  EXPECT_EQ(static_cast<const uint8_t*>(b->view.data)[33], 33);
}

TEST(gguf, refuses_bad_magic_and_version) {
  std::vector<uint8_t> junk = {'G', 'G', 'M', 'L', 3, 0, 0, 0};
  auto f = gguf_file::parse(junk, "x.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("x.gguf: not a GGUF file"), std::string::npos);
  gguf_builder g;
  g.b = {'G', 'G', 'U', 'F'};
  g.put<uint32_t>(7);
  g.put<uint64_t>(0);
  g.put<uint64_t>(0);
  auto v = gguf_file::parse(g.b, "x.gguf");
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.message().find("version 7"), std::string::npos);
}

TEST(gguf, names_a_tensor_outside_the_file) {
  gguf_builder g;
  g.header(1, 0);
  g.str("blk.0.attn_q.weight");
  g.put<uint32_t>(1);
  g.put<uint64_t>(1024);
  g.put<uint32_t>(0);
  g.put<uint64_t>(0);
  g.align();
  g.put<float>(1.0f);  // 4 of 4096 bytes
  auto f = gguf_file::parse(g.b, "t.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("blk.0.attn_q.weight lies outside the file"), std::string::npos)
      << f.message();
}

TEST(gguf, names_an_unsupported_tensor_type) {
  gguf_builder g;
  g.header(1, 0);
  g.str("output.weight");
  g.put<uint32_t>(1);
  g.put<uint64_t>(256);
  g.put<uint32_t>(10);  // Q2_K
  g.put<uint64_t>(0);
  auto f = gguf_file::parse(g.b, "t.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("output.weight has type Q2_K"), std::string::npos) << f.message();
}

TEST(gguf, names_a_block_type_whose_rows_are_not_whole_blocks) {
  gguf_builder g;
  g.header(1, 0);
  g.str("output.weight");
  g.put<uint32_t>(1);
  g.put<uint64_t>(128);  // Q4_K blocks hold 256 values
  g.put<uint32_t>(12);
  g.put<uint64_t>(0);
  auto f = gguf_file::parse(g.b, "t.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("output.weight is Q4_K but its rows (128) are not a multiple of its block (256)"),
            std::string::npos)
      << f.message();
}

TEST(gguf, every_truncation_of_a_real_file_is_an_error_not_a_crash) {
  auto whole = mapped_file::open(testing::test_data_dir() + "/vocab/ggml-vocab-gpt-2.gguf");
  ASSERT_TRUE(whole.ok()) << whole.message();
  std::span<const uint8_t> all = whole->bytes();
  for (size_t cut : {size_t{0}, size_t{3}, size_t{11}, size_t{24}, size_t{100}, all.size() / 3,
                     all.size() / 2, all.size() - 1}) {
    auto f = gguf_file::parse(all.first(cut), "cut.gguf");
    ASSERT_FALSE(f.ok()) << "cut at " << cut;
    EXPECT_NE(f.message().find("cut.gguf"), std::string::npos);
  }
}

TEST(gguf, huge_counts_are_refused_without_allocating) {
  gguf_builder g;
  g.header(0, 1);
  g.str("tokenizer.ggml.tokens");
  g.put<uint32_t>(9);                         // array
  g.put<uint32_t>(8);                         // of strings
  g.put<uint64_t>(uint64_t{1} << 60);         // impossibly many
  auto f = gguf_file::parse(g.b, "big.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.message().find("tokenizer.ggml.tokens"), std::string::npos) << f.message();
}

}  // namespace
}  // namespace troupe
