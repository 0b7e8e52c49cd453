// Dequantization and 16-bit float conversions against fixtures written by the gguf package
// (scripts/golden/make_quant_fixtures.py). Comparisons are bit-exact.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "backend/cpu/quants.h"
#include "backend/dtype.h"

namespace carpool {
namespace {

std::vector<char> read_fixture(const std::string& name) {
  const std::string path = std::string(CARPOOL_SOURCE_DIR) + "/tests/golden/quants/" + name;
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing fixture " << path;
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

template <typename T>
std::vector<T> as(const std::vector<char>& bytes) {
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Equal bit patterns, or both NaN.
bool same_float(float a, float b) {
  return bits(a) == bits(b) || (std::isnan(a) && std::isnan(b));
}

struct TypeCase {
  const char* name;
  DType type;
};

class DequantGolden : public ::testing::TestWithParam<TypeCase> {};

TEST_P(DequantGolden, MatchesGgufBitExactly) {
  const TypeCase& c = GetParam();
  const std::vector<char> blocks = read_fixture(std::string(c.name) + ".bin");
  const std::vector<float> want = as<float>(read_fixture(std::string(c.name) + ".f32"));
  const DTypeInfo& info = dtype_info(c.type);
  ASSERT_GT(blocks.size(), 0u);
  ASSERT_EQ(blocks.size() % info.block_bytes, 0u);
  const int64_t n = static_cast<int64_t>(blocks.size() / info.block_bytes) * info.block_elems;
  ASSERT_EQ(static_cast<int64_t>(want.size()), n);
  std::vector<float> got(static_cast<size_t>(n), std::nanf(""));
  dequantize_row(c.type, blocks.data(), got.data(), n);
  int mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!same_float(got[i], want[i]) && ++mismatches <= 5) {
      ADD_FAILURE() << c.name << " element " << i << ": got " << got[i] << " want " << want[i];
    }
  }
  EXPECT_EQ(mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(
    AllTypes, DequantGolden,
    ::testing::Values(TypeCase{"q4_0", DType::kQ4_0}, TypeCase{"q4_1", DType::kQ4_1},
                      TypeCase{"q5_0", DType::kQ5_0}, TypeCase{"q5_1", DType::kQ5_1},
                      TypeCase{"q8_0", DType::kQ8_0}, TypeCase{"q4_k", DType::kQ4_K},
                      TypeCase{"q5_k", DType::kQ5_K}, TypeCase{"q6_k", DType::kQ6_K},
                      TypeCase{"q2_k", DType::kQ2_K}, TypeCase{"q3_k", DType::kQ3_K},
                      TypeCase{"iq4_nl", DType::kIQ4_NL}, TypeCase{"iq4_xs", DType::kIQ4_XS}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(FloatGolden, F16ToF32MatchesNumpy) {
  const std::vector<uint16_t> in = as<uint16_t>(read_fixture("f16_bits.u16"));
  const std::vector<float> want = as<float>(read_fixture("f16_bits.f32"));
  ASSERT_EQ(in.size(), want.size());
  ASSERT_GT(in.size(), 100u);
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_TRUE(same_float(f16_to_f32(in[i]), want[i])) << "f16 bits 0x" << std::hex << in[i];
    // The F16 dequantization path agrees with the scalar conversion.
    float row;
    dequantize_row(DType::kF16, &in[i], &row, 1);
    EXPECT_TRUE(same_float(row, want[i]));
  }
  // The whole array at once (the vectorized path).
  std::vector<float> all(in.size());
  dequantize_row(DType::kF16, in.data(), all.data(), static_cast<int64_t>(in.size()));
  for (size_t i = 0; i < in.size(); ++i) EXPECT_TRUE(same_float(all[i], want[i])) << i;
}

TEST(FloatGolden, Bf16RowMatchesScalarConversion) {
  const std::vector<uint16_t> in = as<uint16_t>(read_fixture("f32_to_bf16.u16"));
  ASSERT_GT(in.size(), 100u);
  std::vector<float> all(in.size());
  dequantize_row(DType::kBF16, in.data(), all.data(), static_cast<int64_t>(in.size()));
  for (size_t i = 0; i < in.size(); ++i) EXPECT_TRUE(same_float(all[i], bf16_to_f32(in[i]))) << i;
}

TEST(FloatGolden, F32ToF16AndBf16RoundToNearestEven) {
  const std::vector<float> in = as<float>(read_fixture("f32_inputs.f32"));
  const std::vector<uint16_t> want_f16 = as<uint16_t>(read_fixture("f32_to_f16.u16"));
  const std::vector<uint16_t> want_bf16 = as<uint16_t>(read_fixture("f32_to_bf16.u16"));
  ASSERT_EQ(in.size(), want_f16.size());
  ASSERT_EQ(in.size(), want_bf16.size());
  ASSERT_GT(in.size(), 100u);
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(f32_to_f16(in[i]), want_f16[i]) << "value " << in[i];
    EXPECT_EQ(f32_to_bf16(in[i]), want_bf16[i]) << "value " << in[i];
    EXPECT_TRUE(same_float(bf16_to_f32(want_bf16[i]), [&] {
      float f;
      uint32_t u = uint32_t{want_bf16[i]} << 16;
      std::memcpy(&f, &u, 4);
      return f;
    }()));
  }
}

}  // namespace
}  // namespace carpool
