// Element types of tensors: the GGUF/GGML weight types carpool supports plus plain integers.
// Quantized types store elements in fixed-size blocks along the contiguous (row) dimension.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace carpool {

// Values equal the GGML type ids used in GGUF files, so a file's type id maps directly.
enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIQ4_NL = 20,
  kIQ4_XS = 23,
  kI8 = 24,  // KV cache values (CPU int8 cache); never a weight
  kI32 = 26,
  kBF16 = 30,
};

struct DTypeInfo {
  std::string_view name;  // "f32", "q4_k", ...
  int64_t block_elems;    // elements per block (1 for plain types)
  int64_t block_bytes;    // bytes per block
};

// Info for a supported type; nullopt for any other GGML type id (untrusted input).
std::optional<DTypeInfo> dtype_info(uint32_t ggml_type_id);
const DTypeInfo& dtype_info(DType t);
std::string_view dtype_name(DType t);
bool dtype_is_quantized(DType t);
// Whether weights may have this type: every supported type but the plain integers (I8, I32).
bool dtype_is_weight(DType t);

// Bytes for a row of `n` elements; n must be a multiple of the block size (checked by callers
// that handle untrusted shapes; CARPOOL_CHECK here).
size_t dtype_row_bytes(DType t, int64_t n);

// Bytes of one KV cache row (one token's K or V in one layer) of n_kv_heads heads of head_dim
// values. An I8 cache (the CPU's int8 cache) keeps one f32 scale per head beside the values.
size_t kv_cache_row_bytes(DType kv_dtype, int64_t n_kv_heads, int64_t head_dim);

// Conversions between f32 and the 16-bit float types (round-to-nearest-even).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);

// Quantized block layouts (little-endian, as in GGUF files).
constexpr int kQK = 32;    // block size of the *_0 / *_1 types
constexpr int kQKK = 256;  // super-block size of the K types
constexpr int kKScaleBytes = 12;

#pragma pack(push, 1)
struct BlockQ4_0 {
  uint16_t d;           // f16 scale
  uint8_t qs[kQK / 2];  // nibbles: low nibble = element j, high nibble = element j + 16
};
struct BlockQ4_1 {
  uint16_t d;  // f16 scale
  uint16_t m;  // f16 minimum
  uint8_t qs[kQK / 2];
};
struct BlockQ5_0 {
  uint16_t d;           // f16 scale
  uint8_t qh[4];        // bit j: the fifth bit of element j
  uint8_t qs[kQK / 2];  // low 4 bits, as Q4_0; w = d (q - 16)
};
struct BlockQ5_1 {
  uint16_t d;  // f16 scale
  uint16_t m;  // f16 minimum; w = d q + m
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
struct BlockQ8_0 {
  uint16_t d;  // f16 scale
  int8_t qs[kQK];
};
// Q2_K and Q3_K: 16 sub-blocks of 16; element e of the super-block (half h = e / 128, quarter
// j = (e % 128) / 32, l = e % 32) has its low two bits at (qs[32 h + l] >> 2 j) & 3 and the
// scale (and Q2_K's min) of sub-block e / 16.
struct BlockQ2_K {
  uint8_t scales[kQKK / 16];  // low nibble: 4-bit scale, high nibble: 4-bit min
  uint8_t qs[kQKK / 4];       // 2-bit quants
  uint16_t d;                 // f16 super-block scale for the scales
  uint16_t dmin;              // f16 super-block scale for the mins; w = d sc q - dmin m
};
struct BlockQ3_K {
  uint8_t hmask[kQKK / 8];       // third bit of element e: bit 4 h + j of hmask[l]
  uint8_t qs[kQKK / 4];          // low 2 bits
  uint8_t scales[kKScaleBytes];  // 16 scales of 6 bits (q3_k_scales); w = d (sc - 32) (q - 4)
  uint16_t d;                    // f16 super-block scale
};
struct BlockQ4_K {
  uint16_t d;                    // f16 super-block scale for the 6-bit scales
  uint16_t dmin;                 // f16 super-block scale for the 6-bit mins
  uint8_t scales[kKScaleBytes];  // 8 scales + 8 mins, 6 bits each
  uint8_t qs[kQKK / 2];
};
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQKK / 8];  // high bit of each 5-bit quant
  uint8_t qs[kQKK / 2];  // low 4 bits
};
struct BlockQ6_K {
  uint8_t ql[kQKK / 2];      // low 4 bits
  uint8_t qh[kQKK / 4];      // high 2 bits
  int8_t scales[kQKK / 16];  // 8-bit scales
  uint16_t d;                // f16 super-block scale
};
// IQ4_NL and IQ4_XS: 4-bit indices (Q4_0's nibble layout per 32 elements) into a fixed table of
// non-uniform values (kIQ4Values). IQ4_NL: w = d v; IQ4_XS: w = d (ls - 32) v per sub-block of 32
// with a 6-bit ls (iq4_xs_scale).
struct BlockIQ4_NL {
  uint16_t d;  // f16 scale
  uint8_t qs[kQK / 2];
};
struct BlockIQ4_XS {
  uint16_t d;                   // f16 super-block scale
  uint16_t scales_h;            // top two bits of sub-block j's scale at bits 2j, 2j + 1
  uint8_t scales_l[kQKK / 64];  // low four bits: nibble j % 2 of byte j / 2
  uint8_t qs[kQKK / 2];         // sub-block j: bytes 16j .. 16j + 15, as Q4_0's qs
};
#pragma pack(pop)

inline constexpr int8_t kIQ4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                          1,    13,   25,  38,  53,  69,  89,  113};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);

}  // namespace carpool
