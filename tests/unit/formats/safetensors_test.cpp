// safetensors reader: valid files, and hostile ones that must fail with a one-line error naming
// what is wrong (never a crash).
#include "formats/safetensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace carpool {
namespace {

// A file from a header text and a data section; header_len is the header's size unless given.
std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes,
                               int64_t header_len = -1) {
  uint64_t n = header_len == -1 ? header.size() : static_cast<uint64_t>(header_len);
  std::vector<uint8_t> out(8);
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(n >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<uint8_t>(i * 7 + 1));
  return out;
}

Result<SafetensorsFile> parse(const std::vector<uint8_t>& bytes) {
  return SafetensorsFile::parse(bytes.data(), bytes.size());
}

// Expects an error whose single line contains every fragment.
void expect_error(const std::string& header, size_t data_bytes,
                  std::initializer_list<const char*> fragments) {
  auto r = parse(make_file(header, data_bytes));
  ASSERT_FALSE(r.is_ok()) << header;
  EXPECT_EQ(r.error().find('\n'), std::string::npos) << r.error();
  for (const char* f : fragments) EXPECT_NE(r.error().find(f), std::string::npos) << r.error();
}

const std::string kValid = R"({"__metadata__":{"format":"pt"},)"
                           R"("b.weight":{"dtype":"F16","shape":[2,3],"data_offsets":[24,36]},)"
                           R"("a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
                           R"("c.bias":{"dtype":"BF16","shape":[2],"data_offsets":[36,40]},)"
                           R"("empty":{"dtype":"F32","shape":[0,5],"data_offsets":[40,40]},)"
                           R"("scalar":{"dtype":"F32","shape":[],"data_offsets":[40,44]}}  )";

TEST(Safetensors, ParsesValidFile) {
  auto bytes = make_file(kValid, 44);
  auto r = parse(bytes);
  ASSERT_TRUE(r.is_ok()) << r.error();
  const SafetensorsFile& f = r.value();
  EXPECT_EQ(f.data_bytes(), 44u);
  ASSERT_EQ(f.tensors().size(), 5u);
  ASSERT_EQ(f.metadata().size(), 1u);
  EXPECT_EQ(f.metadata()[0].first, "format");
  EXPECT_EQ(f.metadata()[0].second, "pt");

  const SafetensorsTensor* a = f.find("a.weight");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, DType::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->n_elements(), 6);
  EXPECT_EQ(a->n_bytes(), 24u);
  const uint8_t* data_start = bytes.data() + 8 + kValid.size();
  EXPECT_EQ(a->data, data_start);

  const SafetensorsTensor* b = f.find("b.weight");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, DType::kF16);
  EXPECT_EQ(b->data, data_start + 24);
  EXPECT_EQ(b->data[0], static_cast<uint8_t>(24 * 7 + 1));

  const SafetensorsTensor* c = f.find("c.bias");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->dtype, DType::kBF16);
  EXPECT_EQ(f.find("empty")->n_elements(), 0);
  EXPECT_EQ(f.find("scalar")->n_elements(), 1);
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_EQ(f.find("a"), nullptr);
}

TEST(Safetensors, OpensGoldenModelFile) {
  const std::string path =
      std::string(CARPOOL_SOURCE_DIR) + "/tests/golden/models/tiny-qwen2/model.safetensors";
  auto r = SafetensorsFile::open(path);
  ASSERT_TRUE(r.is_ok()) << r.error();
  const SafetensorsTensor* emb = r->find("model.embed_tokens.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dtype, DType::kF32);
  EXPECT_EQ(emb->shape, (std::vector<int64_t>{293, 64}));
  // First element as written by the reference implementation (tests/golden/.../golden.json).
  float first = 0;
  std::memcpy(&first, emb->data, 4);
  EXPECT_FLOAT_EQ(first, -0.1561201810836792f);
}

TEST(Safetensors, OpenReportsPath) {
  auto r = SafetensorsFile::open("/nonexistent/model.safetensors");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.error().find("/nonexistent/model.safetensors"), std::string::npos);
}

TEST(Safetensors, RejectsTruncatedFiles) {
  auto bytes = make_file(kValid, 44);
  // Every strict prefix fails cleanly (short length, header past the end, or missing data).
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = SafetensorsFile::parse(bytes.data(), n);
    EXPECT_FALSE(r.is_ok()) << "prefix of " << n << " bytes parsed";
  }
  auto r = SafetensorsFile::parse(bytes.data(), 5);
  EXPECT_NE(r.error().find("too short"), std::string::npos) << r.error();
  r = SafetensorsFile::parse(bytes.data(), 40);
  EXPECT_NE(r.error().find("truncated"), std::string::npos) << r.error();
}

TEST(Safetensors, RejectsHugeHeaderLength) {
  auto r = parse(make_file("{}", 0, int64_t{1} << 40));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.error().find("limit"), std::string::npos) << r.error();
  r = parse(make_file("{}", 0, -2));  // 0xfff...fe
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.error().find("limit"), std::string::npos) << r.error();
}

TEST(Safetensors, AcceptsEmptyHeader) {
  auto r = parse(make_file("{}", 0));
  ASSERT_TRUE(r.is_ok()) << r.error();
  EXPECT_TRUE(r->tensors().empty());
}

TEST(Safetensors, RejectsOverlapHoleAndTrailingBytes) {
  expect_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
               12, {"'b'", "overlaps", "'a'"});
  expect_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
               8, {"overlaps"});
  expect_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
               20, {"hole", "'b'"});
  expect_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12, {"hole", "'a'"});
  expect_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 10,
               {"2 trailing bytes"});
  // A zero-sized tensor inside another's range overlaps too.
  expect_error(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
               8, {"overlaps"});
}

TEST(Safetensors, RejectsDuplicateNames) {
  expect_error(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
               R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
               8, {"duplicate", "'a'"});
  expect_error(R"({"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})", 4,
               {"duplicate", "'dtype'"});
}

TEST(Safetensors, RejectsUnsupportedDtype) {
  expect_error(R"({"tok":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8,
               {"'tok'", "'I64'", "unsupported dtype"});
  expect_error(R"({"tok":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", 1,
               {"'tok'", "'F8_E4M3'"});
  expect_error(R"({"tok":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4, {"'tok'", "dtype"});
}

TEST(Safetensors, RejectsShapeOffsetMismatch) {
  expect_error(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 20,
               {"'w'", "24 bytes", "span 20"});
  expect_error(R"({"w":{"dtype":"F16","shape":[3],"data_offsets":[0,12]}})", 12,
               {"'w'", "6 bytes"});
}

TEST(Safetensors, RejectsBadShapes) {
  expect_error(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})",
               4, {"'w'", "overflow"});
  expect_error(R"({"w":{"dtype":"F32","shape":[9223372036854775807,2],"data_offsets":[0,4]}})", 4,
               {"'w'", "overflow"});
  expect_error(R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})", 4,
               {"'w'", "too large"});
  expect_error(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4,
               {"'w'", "shape[0]", "negative"});
  expect_error(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4,
               {"'w'", "shape[0]"});
  expect_error(R"({"w":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,4]}})", 4,
               {"'w'", "rank 9"});
  expect_error(R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8, {"'w'", "'shape'"});
}

TEST(Safetensors, AcceptsHugeDimsWithAZero) {
  auto r = parse(make_file(
      R"({"w":{"dtype":"F32","shape":[0,9223372036854775807,4],"data_offsets":[0,0]}})", 0));
  ASSERT_TRUE(r.is_ok()) << r.error();
  EXPECT_EQ(r->find("w")->n_bytes(), 0u);
}

TEST(Safetensors, RejectsBadOffsets) {
  expect_error(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8,
               {"'w'", "end 4 < begin 8"});
  expect_error(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 2,
               {"'w'", "past the data section"});
  expect_error(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4,
               {"'w'", "data_offsets"});
  expect_error(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", 4,
               {"'w'", "data_offsets[1]", "negative"});
  expect_error(
      R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551616]}})",
      4, {"'w'"});
}

TEST(Safetensors, RejectsBadJson) {
  expect_error(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", 4, {"invalid JSON"});
  expect_error(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} extra)", 4,
               {"invalid JSON"});
  expect_error("[1,2]", 0, {"start with '{'"});
  expect_error(R"({"w":[[[[[1]]]]]})", 0, {"nested"});
  expect_error("{\"w\xff\":1}", 0, {"invalid JSON"});
}

TEST(Safetensors, TrailingWhitespaceIsFine) {
  EXPECT_TRUE(parse(make_file("{}     ", 0)).is_ok());
}

TEST(Safetensors, RejectsMissingAndUnknownFields) {
  expect_error(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4, {"'w'", "missing 'dtype'"});
  expect_error(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4, {"'w'", "missing 'shape'"});
  expect_error(R"({"w":{"dtype":"F32","shape":[1]}})", 4, {"'w'", "missing 'data_offsets'"});
  expect_error(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", 4,
               {"'w'", "unknown field 'x'"});
  expect_error(R"({"w":3})", 0, {"'w'", "not an object"});
  expect_error(R"({"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4, {"empty"});
  expect_error(R"({"__metadata__":{"k":1}})", 0, {"__metadata__", "'k'"});
  expect_error(R"({"__metadata__":[]})", 0, {"__metadata__"});
}

// Every single-byte corruption of a valid file parses or fails; none may crash (the sanitizer
// and fuzz builds make this sharper).
TEST(Safetensors, SurvivesByteFlips) {
  const auto good = make_file(kValid, 44);
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t v : {uint8_t{0}, uint8_t{0xff}, uint8_t{'"'}, uint8_t{'9'}}) {
      auto bytes = good;
      bytes[i] = v;
      auto r = parse(bytes);
      if (!r.is_ok()) {
        EXPECT_EQ(r.error().find('\n'), std::string::npos) << r.error();
      }
    }
  }
}

}  // namespace
}  // namespace carpool
