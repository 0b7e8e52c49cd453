// GGUF reader: valid files of both versions, every value type, and hostile files that must give
// a one-line error (never a crash or an allocation sized by the file's claims).
#include "formats/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace carpool {
namespace {

// Builds GGUF bytes field by field.
class Writer {
 public:
  template <typename T>
  Writer& put(T v) {
    size_t n = bytes_.size();
    bytes_.resize(n + sizeof(T));
    std::memcpy(bytes_.data() + n, &v, sizeof(T));
    return *this;
  }
  Writer& str(const std::string& s) {
    put<uint64_t>(s.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    return *this;
  }
  Writer& pad(size_t align) {
    while (bytes_.size() % align) bytes_.push_back(0);
    return *this;
  }
  std::vector<uint8_t>& bytes() { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

constexpr uint32_t kU32 = 4, kF32 = 6, kString = 8, kArray = 9, kBool = 7, kI64 = 11, kF64 = 12;

// A valid file: 6 metadata values (scalars, string, arrays) and two tensors.
std::vector<uint8_t> valid_file(uint32_t version = 3) {
  Writer w;
  w.put<uint32_t>(0x46554747).put<uint32_t>(version).put<uint64_t>(2).put<uint64_t>(6);
  w.str("general.architecture").put(kString).str("llama");
  w.str("llama.block_count").put(kU32).put<uint32_t>(2);
  w.str("x.f").put(kF32).put<float>(1.5f);
  w.str("x.flag").put(kBool).put<uint8_t>(1);
  w.str("x.big").put(kI64).put<int64_t>(-7);
  w.str("tokenizer.ggml.tokens")
      .put(kArray)
      .put(kString)
      .put<uint64_t>(3)
      .str("a")
      .str("b")
      .str("<s>");
  // tensor 0: f32 [4, 2]; tensor 1: q8_0 [32]
  w.str("t0").put<uint32_t>(2).put<uint64_t>(4).put<uint64_t>(2).put<uint32_t>(0).put<uint64_t>(0);
  w.str("t1").put<uint32_t>(1).put<uint64_t>(32).put<uint32_t>(8).put<uint64_t>(32);
  w.pad(32);
  for (int i = 0; i < 8; ++i) w.put<float>(static_cast<float>(i));
  w.pad(32);
  for (int i = 0; i < 34; ++i) w.put<uint8_t>(static_cast<uint8_t>(i));
  return w.bytes();
}

TEST(Gguf, ParsesValidFile) {
  for (uint32_t version : {2u, 3u}) {
    auto bytes = valid_file(version);
    auto f = GgufFile::parse(bytes.data(), bytes.size());
    ASSERT_TRUE(f.is_ok()) << f.error();
    EXPECT_EQ(f->version(), version);
    EXPECT_EQ(f->get_string("general.architecture").value(), "llama");
    EXPECT_EQ(f->get_int("llama.block_count").value(), 2);
    EXPECT_FLOAT_EQ(static_cast<float>(f->get_float("x.f").value()), 1.5f);
    EXPECT_TRUE(f->get_bool("x.flag").value());
    EXPECT_EQ(f->get_int("x.big").value(), -7);
    auto toks = f->get_string_array("tokenizer.ggml.tokens");
    ASSERT_TRUE(toks.is_ok());
    EXPECT_EQ(toks->size(), 3u);
    EXPECT_EQ((*toks)[2], "<s>");
    ASSERT_EQ(f->tensors().size(), 2u);
    const GgufTensorInfo* t0 = f->find_tensor("t0");
    ASSERT_NE(t0, nullptr);
    EXPECT_EQ(t0->rows(), 2);
    EXPECT_EQ(t0->cols(), 4);
    float v[8];
    std::memcpy(v, t0->data, sizeof v);
    EXPECT_EQ(v[7], 7.f);
    EXPECT_EQ(f->find_tensor("t1")->n_bytes, 34u);
    EXPECT_EQ(f->find_tensor("t1")->dtype, DType::kQ8_0);
  }
}

TEST(Gguf, TypedGettersNameTheKey) {
  auto bytes = valid_file();
  auto f = GgufFile::parse(bytes.data(), bytes.size());
  ASSERT_TRUE(f.is_ok());
  auto missing = f->get_int("nope");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.error().find("nope"), std::string::npos);
  auto wrong = f->get_int("general.architecture");
  ASSERT_FALSE(wrong.is_ok());
  EXPECT_NE(wrong.error().find("general.architecture"), std::string::npos);
}

TEST(Gguf, EveryTruncationIsAnError) {
  auto bytes = valid_file();
  // Cutting the file anywhere before the end of the last tensor's data must fail cleanly.
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto f = GgufFile::parse(bytes.data(), n);
    EXPECT_FALSE(f.is_ok()) << "truncated at " << n;
    if (!f.is_ok()) {
      EXPECT_EQ(f.error().find('\n'), std::string::npos);
    }
  }
}

// Patches a field of the valid file and expects an error mentioning `needle`.
void expect_rejected(std::vector<uint8_t> bytes, const std::string& needle) {
  auto f = GgufFile::parse(bytes.data(), bytes.size());
  ASSERT_FALSE(f.is_ok()) << "accepted a hostile file (expected: " << needle << ")";
  EXPECT_NE(f.error().find(needle), std::string::npos) << f.error();
}

size_t find(const std::vector<uint8_t>& b, const std::string& s) {
  auto it = std::search(b.begin(), b.end(), s.begin(), s.end());
  return static_cast<size_t>(it - b.begin());
}

TEST(Gguf, RejectsHostileFiles) {
  auto base = valid_file();
  {  // bad magic
    auto b = base;
    b[0] = 'X';
    expect_rejected(b, "magic");
  }
  {  // unknown version
    auto b = base;
    b[4] = 9;
    expect_rejected(b, "version");
  }
  {  // absurd tensor count
    auto b = base;
    uint64_t n = ~0ull;
    std::memcpy(b.data() + 8, &n, 8);
    expect_rejected(b, "tensor count");
  }
  {  // absurd metadata count
    auto b = base;
    uint64_t n = 1ull << 60;
    std::memcpy(b.data() + 16, &n, 8);
    expect_rejected(b, "metadata count");
  }
  {  // huge string length
    auto b = base;
    uint64_t n = 1ull << 62;
    std::memcpy(b.data() + 24, &n, 8);  // length of the first key
    expect_rejected(b, "length");
  }
  {  // array claiming more strings than the file holds
    auto b = base;
    size_t p = find(b, "tokenizer.ggml.tokens") + 21 + 4 + 4;
    uint64_t n = 1ull << 40;
    std::memcpy(b.data() + p, &n, 8);
    expect_rejected(b, "strings");
  }
  {  // invalid value type
    auto b = base;
    size_t p = find(b, "llama.block_count") + 17;
    uint32_t t = 99;
    std::memcpy(b.data() + p, &t, 4);
    expect_rejected(b, "invalid type");
  }
  {  // too many dimensions
    auto b = base;
    size_t p = find(b, "t0") + 2;
    uint32_t nd = 7;
    std::memcpy(b.data() + p, &nd, 4);
    expect_rejected(b, "dimensions");
  }
  {  // dimension product overflow
    auto b = base;
    size_t p = find(b, "t0") + 2 + 4;
    uint64_t d = 1ull << 39;
    std::memcpy(b.data() + p, &d, 8);
    std::memcpy(b.data() + p + 8, &d, 8);
    expect_rejected(b, "dimension");
  }
  {  // unsupported tensor type
    auto b = base;
    size_t p = find(b, "t0") + 2 + 4 + 16;
    uint32_t t = 77;
    std::memcpy(b.data() + p, &t, 4);
    expect_rejected(b, "unsupported type");
  }
  {  // tensor data outside the file
    auto b = base;
    size_t p = find(b, "t1") + 2 + 4 + 8 + 4;
    uint64_t off = 1 << 20;
    std::memcpy(b.data() + p, &off, 8);
    expect_rejected(b, "outside");
  }
  {  // misaligned offset
    auto b = base;
    size_t p = find(b, "t1") + 2 + 4 + 8 + 4;
    uint64_t off = 33;
    std::memcpy(b.data() + p, &off, 8);
    expect_rejected(b, "aligned");
  }
  {  // duplicate tensor name
    auto b = base;
    size_t p = find(b, "t1");
    b[p + 1] = '0';
    expect_rejected(b, "duplicate");
  }
}

TEST(Gguf, MissingFileErrorNamesThePath) {
  auto f = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(f.is_ok());
  EXPECT_NE(f.error().find("/nonexistent/model.gguf"), std::string::npos);
}

}  // namespace
}  // namespace carpool
