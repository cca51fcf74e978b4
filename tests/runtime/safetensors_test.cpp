// Proves the safetensors reader maps tensors in place and names what is wrong in bad files.
#include "runtime/safetensors.hpp"

#include <cstring>

#include <gtest/gtest.h>

namespace troupe {
namespace {

std::vector<uint8_t> make_file(const std::string& header, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b(8 + header.size() + data.size());
  uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(b.data() + 8 + header.size(), data.data(), data.size());
  return b;
}

TEST(safetensors, reads_tensors_in_place) {
  std::vector<uint8_t> data(4 * 6 + 2 * 2);
  float f[6] = {0, 1, 2, 3, 4, 5};
  std::memcpy(data.data(), f, sizeof f);
  auto bytes = make_file(
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]}})",
      data);
  auto s = safetensors_file::parse(bytes, "m.safetensors");
  ASSERT_TRUE(s.ok()) << s.message();
  const tensor_view* w = s->find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(static_cast<const float*>(w->data)[4], 4.0f);
  EXPECT_EQ(w->data, bytes.data() + 8 + (bytes.size() - 8 - data.size()));  // no copy
  EXPECT_EQ(s->find("b")->type, dtype::bf16);
  EXPECT_EQ(s->metadata().at("format"), "pt");
}

TEST(safetensors, names_the_tensor_with_a_wrong_byte_range) {
  auto bytes = make_file(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})",
                         std::vector<uint8_t>(24));
  auto s = safetensors_file::parse(bytes, "m.safetensors");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("m.safetensors: corrupt safetensors header: tensor w"), std::string::npos)
      << s.message();
}

TEST(safetensors, names_an_unsupported_dtype) {
  auto bytes = make_file(R"({"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})",
                         std::vector<uint8_t>(4));
  auto s = safetensors_file::parse(bytes, "m.safetensors");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("tensor w has dtype F8_E4M3"), std::string::npos) << s.message();
}

TEST(safetensors, truncated_data_is_an_error) {
  auto bytes = make_file(R"({"w":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}})",
                         std::vector<uint8_t>(16));
  auto s = safetensors_file::parse(bytes, "m.safetensors");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("tensor w lies outside the file"), std::string::npos) << s.message();
  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    auto t = safetensors_file::parse(std::span<const uint8_t>(bytes).first(cut), "c.safetensors");
    EXPECT_FALSE(t.ok()) << cut;
  }
}

TEST(safetensors, header_that_is_not_json_is_an_error) {
  auto bytes = make_file("{not json", {});
  auto s = safetensors_file::parse(bytes, "m.safetensors");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not a JSON object"), std::string::npos);
  std::vector<uint8_t> huge(8, 0xff);
  EXPECT_FALSE(safetensors_file::parse(huge, "h.safetensors").ok());
}

}  // namespace
}  // namespace troupe
