#include "backend/dtype.h"

#include <cstring>

#include "util/check.h"

namespace carpool {
namespace {

constexpr DTypeInfo kF32Info{"f32", 1, 4};
constexpr DTypeInfo kF16Info{"f16", 1, 2};
constexpr DTypeInfo kBF16Info{"bf16", 1, 2};
constexpr DTypeInfo kI32Info{"i32", 1, 4};
constexpr DTypeInfo kI8Info{"i8", 1, 1};
constexpr DTypeInfo kQ4_0Info{"q4_0", kQK, sizeof(BlockQ4_0)};
constexpr DTypeInfo kQ4_1Info{"q4_1", kQK, sizeof(BlockQ4_1)};
constexpr DTypeInfo kQ5_0Info{"q5_0", kQK, sizeof(BlockQ5_0)};
constexpr DTypeInfo kQ5_1Info{"q5_1", kQK, sizeof(BlockQ5_1)};
constexpr DTypeInfo kQ8_0Info{"q8_0", kQK, sizeof(BlockQ8_0)};
constexpr DTypeInfo kQ2_KInfo{"q2_k", kQKK, sizeof(BlockQ2_K)};
constexpr DTypeInfo kQ3_KInfo{"q3_k", kQKK, sizeof(BlockQ3_K)};
constexpr DTypeInfo kQ4_KInfo{"q4_k", kQKK, sizeof(BlockQ4_K)};
constexpr DTypeInfo kQ5_KInfo{"q5_k", kQKK, sizeof(BlockQ5_K)};
constexpr DTypeInfo kQ6_KInfo{"q6_k", kQKK, sizeof(BlockQ6_K)};
constexpr DTypeInfo kIQ4_NLInfo{"iq4_nl", kQK, sizeof(BlockIQ4_NL)};
constexpr DTypeInfo kIQ4_XSInfo{"iq4_xs", kQKK, sizeof(BlockIQ4_XS)};

const DTypeInfo* find_info(uint32_t id) {
  switch (static_cast<DType>(id)) {
    case DType::kF32:
      return &kF32Info;
    case DType::kF16:
      return &kF16Info;
    case DType::kQ4_0:
      return &kQ4_0Info;
    case DType::kQ4_1:
      return &kQ4_1Info;
    case DType::kQ5_0:
      return &kQ5_0Info;
    case DType::kQ5_1:
      return &kQ5_1Info;
    case DType::kQ8_0:
      return &kQ8_0Info;
    case DType::kQ2_K:
      return &kQ2_KInfo;
    case DType::kQ3_K:
      return &kQ3_KInfo;
    case DType::kQ4_K:
      return &kQ4_KInfo;
    case DType::kQ5_K:
      return &kQ5_KInfo;
    case DType::kQ6_K:
      return &kQ6_KInfo;
    case DType::kIQ4_NL:
      return &kIQ4_NLInfo;
    case DType::kIQ4_XS:
      return &kIQ4_XSInfo;
    case DType::kI32:
      return &kI32Info;
    case DType::kI8:
      return &kI8Info;
    case DType::kBF16:
      return &kBF16Info;
  }
  return nullptr;
}

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

}  // namespace

std::optional<DTypeInfo> dtype_info(uint32_t ggml_type_id) {
  const DTypeInfo* info = find_info(ggml_type_id);
  if (info == nullptr) return std::nullopt;
  return *info;
}

const DTypeInfo& dtype_info(DType t) {
  const DTypeInfo* info = find_info(static_cast<uint32_t>(t));
  CARPOOL_CHECK(info != nullptr);
  return *info;
}

std::string_view dtype_name(DType t) {
  return dtype_info(t).name;
}

bool dtype_is_quantized(DType t) {
  return dtype_info(t).block_elems > 1;
}

bool dtype_is_weight(DType t) {
  return find_info(static_cast<uint32_t>(t)) != nullptr && t != DType::kI32 && t != DType::kI8;
}

size_t kv_cache_row_bytes(DType kv_dtype, int64_t n_kv_heads, int64_t head_dim) {
  const size_t values = dtype_row_bytes(kv_dtype, n_kv_heads * head_dim);
  return kv_dtype == DType::kI8 ? values + static_cast<size_t>(n_kv_heads) * sizeof(float) : values;
}

size_t dtype_row_bytes(DType t, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  CARPOOL_CHECK(n >= 0 && n % info.block_elems == 0);
  return static_cast<size_t>(n / info.block_elems) * static_cast<size_t>(info.block_bytes);
}

// IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));  // inf / nan
  if (exp != 0) return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return bits_float(sign);  // signed zero
  // Subnormal: value = mant * 2^-24, exact in f32.
  const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
  return (sign != 0) ? -v : v;
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520
  if (abs >= 0x38800000u) {  // normal f16 range (>= 2^-14)
    // Rebias the exponent and round the 13 dropped mantissa bits to nearest even.
    uint32_t v = abs - ((127u - 15u) << 23);
    v += 0xfffu + ((v >> 13) & 1u);
    return static_cast<uint16_t>(sign | (v >> 13));
  }
  if (abs < 0x33000000u) return sign;  // below half the smallest subnormal (2^-25): zero
  // Subnormal f16: value / 2^-24 rounded to nearest even integer.
  const uint32_t exp = abs >> 23;
  const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - exp;  // 14..24 bits to drop (exp in [102, 112])
  uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return static_cast<uint16_t>(sign | q);
}

float bf16_to_f32(uint16_t b) {
  return bits_float(static_cast<uint32_t>(b) << 16);
}

uint16_t f32_to_bf16(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet nan
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace carpool
