#include "backend/cpu/packed_weights.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "backend/cpu/quants.h"
#include "util/check.h"
#include "util/host_memory.h"

namespace carpool {

void PackedWeight::Free::operator()(uint8_t* p) const {
  std::free(p);
}

bool packable(DType t) {
  return t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ5_0 || t == DType::kQ5_1 ||
         t == DType::kQ8_0 || t == DType::kQ2_K || t == DType::kQ3_K || t == DType::kQ4_K ||
         t == DType::kQ5_K || t == DType::kQ6_K || t == DType::kIQ4_NL || t == DType::kIQ4_XS ||
         packable_float(t);
}

bool packable_float(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16;
}

size_t packed_block_bytes(DType t) {
  switch (t) {
    case DType::kQ4_0:
    case DType::kIQ4_NL:
      return 4 * 64 + 2 * kPackRows;
    case DType::kIQ4_XS:
      return 32 * 64 + 2 * kPackRows + 8 * kPackRows;
    case DType::kQ4_1:
      return 4 * 64 + 4 * kPackRows;
    case DType::kQ8_0:
      return 8 * 64 + 2 * kPackRows;
    case DType::kQ5_0:
      return 4 * 64 + 64 + 2 * kPackRows;
    case DType::kQ5_1:
      return 4 * 64 + 64 + 4 * kPackRows;
    case DType::kQ2_K:
      return 16 * 64 + 4 * kPackRows + 16 * kPackRows;
    case DType::kQ3_K:
      return 16 * 64 + 8 * 64 + 2 * kPackRows + 16 * kPackRows;
    case DType::kQ4_K:
      return 32 * 64 + 4 * kPackRows + 16 * kPackRows;
    case DType::kQ5_K:
      return 32 * 64 + 4 * kPackRows + 16 * kPackRows + 8 * 64;
    case DType::kQ6_K:
      return 48 * 64 + 2 * kPackRows + 16 * kPackRows;
    case DType::kF32:
      return 4 * kPackRows;
    case DType::kF16:
      return 2 * kPackRows;
    case DType::kBF16:
      return 4 * kPackRows;  // a pair of elements per row
    default:
      CARPOOL_CHECK(false && "packed_block_bytes: type has no packed layout");
      return 0;
  }
}

PackedWeight make_packed(DType t, int64_t rows, int64_t cols) {
  const int64_t block_elems = dtype_info(t).block_elems;
  CARPOOL_CHECK(packable(t) && rows >= 0 && cols >= 0 && cols % block_elems == 0);
  PackedWeight p;
  p.type = t;
  p.groups = rows / kPackRows;
  p.cols = cols;
  p.blocks = t == DType::kBF16 ? (cols + 1) / 2 : cols / block_elems;
  p.block_bytes = packed_block_bytes(t);
  const size_t bytes = std::max<size_t>(64, (p.bytes() + 63) / 64 * 64);
  p.data.reset(static_cast<uint8_t*>(host_alloc(bytes)));
  CARPOOL_CHECK(p.data != nullptr);
  return p;
}

namespace {

// The block's quant bytes, its d and (Q4_1) m, whatever the type.
struct BlockView {
  const uint8_t* qs;
  uint16_t d;
  uint16_t m;
};

BlockView view_block(DType t, const uint8_t* row, int64_t i) {
  BlockView v{};
  switch (t) {
    case DType::kQ4_0: {
      const auto* b = reinterpret_cast<const BlockQ4_0*>(row) + i;
      v = {b->qs, b->d, 0};
      break;
    }
    case DType::kIQ4_NL: {
      const auto* b = reinterpret_cast<const BlockIQ4_NL*>(row) + i;
      v = {b->qs, b->d, 0};
      break;
    }
    case DType::kQ4_1: {
      const auto* b = reinterpret_cast<const BlockQ4_1*>(row) + i;
      v = {b->qs, b->d, b->m};
      break;
    }
    default: {
      const auto* b = reinterpret_cast<const BlockQ8_0*>(row) + i;
      v = {reinterpret_cast<const uint8_t*>(b->qs), b->d, 0};
      break;
    }
  }
  return v;
}

// Copies the 4-byte groups of src[n_parts * 4] to lane l of n_parts parts at out.
void interleave(const uint8_t* src, int n_parts, int l, uint8_t* out) {
  for (int part = 0; part < n_parts; ++part)
    std::memcpy(out + 64 * part + 4 * l, src + 4 * part, 4);
}

// Q5_K's fifth bits of row l as bit masks: bit 4l + b of the 64-bit word for sub-block j and
// part t is bit j of qh[4t + b] (the element whose low bits part t holds at byte 4l + b). Rows
// share the words' bytes (two rows per byte), so each row rewrites only its own four bits.
void pack_q5_k_masks(const uint8_t* qh, int l, uint8_t* out) {
  const int shift = 4 * (l % 2);
  for (int j = 0; j < 8; ++j) {
    for (int t = 0; t < 8; ++t) {
      unsigned nibble = 0;
      for (int b = 0; b < 4; ++b) nibble |= ((qh[4 * t + b] >> j) & 1u) << b;
      uint8_t& byte = out[(8 * j + t) * 8 + l / 2];
      byte = static_cast<uint8_t>((byte & ~(0xfu << shift)) | (nibble << shift));
    }
  }
}

// Q4_K and Q5_K: qs parts, d and dmin, scales and mins, then (Q5_K) the fifth-bit masks.
template <class Block>
void pack_k45(const Block& b, int l, uint8_t* out) {
  interleave(b.qs, 32, l, out);
  uint16_t* d = reinterpret_cast<uint16_t*>(out + 32 * 64);
  d[l] = b.d;
  d[kPackRows + l] = b.dmin;
  uint8_t sc[8], mn[8];
  k_scales_mins(b.scales, sc, mn);
  uint8_t* scales = out + 32 * 64 + 4 * kPackRows;
  for (int j = 0; j < 8; ++j) {
    scales[j * kPackRows + l] = sc[j];
    scales[(8 + j) * kPackRows + l] = mn[j];
  }
  if constexpr (std::is_same_v<Block, BlockQ5_K>) {
    pack_q5_k_masks(b.qh, l, out + 32 * 64 + 20 * kPackRows);
  }
}

// Q6_K: ql parts, qh parts, d, then the 16 int8 scales as [16][16].
void pack_q6_k(const BlockQ6_K& b, int l, uint8_t* out) {
  interleave(b.ql, 32, l, out);
  interleave(b.qh, 16, l, out + 32 * 64);
  reinterpret_cast<uint16_t*>(out + 48 * 64)[l] = b.d;
  int8_t* scales = reinterpret_cast<int8_t*>(out + 48 * 64 + 2 * kPackRows);
  for (int j = 0; j < 16; ++j) scales[j * kPackRows + l] = b.scales[j];
}

// Q2_K: the 16 two-bit parts, d and dmin, then the scale-and-min bytes as [16][16].
void pack_q2_k(const BlockQ2_K& b, int l, uint8_t* out) {
  interleave(b.qs, 16, l, out);
  uint16_t* d = reinterpret_cast<uint16_t*>(out + 16 * 64);
  d[l] = b.d;
  d[kPackRows + l] = b.dmin;
  uint8_t* sm = out + 16 * 64 + 4 * kPackRows;
  for (int s = 0; s < 16; ++s) sm[s * kPackRows + l] = b.scales[s];
}

// Q3_K: the 16 two-bit parts, the third bits as Q5_K's masks (bit 4l + b of the word for
// sub-block j and part t is bit j of hmask[4t + b]), d, then the scales minus 32 as int8 [16][16].
void pack_q3_k(const BlockQ3_K& b, int l, uint8_t* out) {
  interleave(b.qs, 16, l, out);
  pack_q5_k_masks(b.hmask, l, out + 16 * 64);
  reinterpret_cast<uint16_t*>(out + 24 * 64)[l] = b.d;
  uint8_t sc[16];
  q3_k_scales(b.scales, sc);
  int8_t* scales = reinterpret_cast<int8_t*>(out + 24 * 64 + 2 * kPackRows);
  for (int s = 0; s < 16; ++s) scales[s * kPackRows + l] = static_cast<int8_t>(sc[s] - 32);
}

// IQ4_XS: 32 parts (sub-block j: parts 4j .. 4j + 3), d, then the scales minus 32 as int8 [8][16].
void pack_iq4_xs(const BlockIQ4_XS& b, int l, uint8_t* out) {
  interleave(b.qs, 32, l, out);
  reinterpret_cast<uint16_t*>(out + 32 * 64)[l] = b.d;
  int8_t* scales = reinterpret_cast<int8_t*>(out + 32 * 64 + 2 * kPackRows);
  for (int j = 0; j < 8; ++j)
    scales[j * kPackRows + l] = static_cast<int8_t>(iq4_xs_scale(b, j) - 32);
}

template <class Block, class Pack>
void pack_super_blocks(PackedWeight& p, const uint8_t* base, size_t row_bytes, int64_t g0,
                       int64_t g1, Pack pack) {
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* out = p.data.get() + static_cast<size_t>(g * p.blocks) * p.block_bytes;
    for (int64_t i = 0; i < p.blocks; ++i, out += p.block_bytes) {
      for (int l = 0; l < kPackRows; ++l) {
        const uint8_t* row = base + static_cast<size_t>(g * kPackRows + l) * row_bytes;
        pack(reinterpret_cast<const Block*>(row)[i], l, out);
      }
    }
  }
}

}  // namespace

namespace {

// F32, F16: element i of the group's rows side by side; BF16: elements 2i and 2i + 1 of each row
// side by side (a zero after the last element of an odd-length row). Elem: the element's bytes
// as an unsigned integer type, so every copy is one load and one store.
template <typename Elem, int kPerBlock>
void pack_float(PackedWeight& p, const uint8_t* base, size_t row_bytes, int64_t g0, int64_t g1) {
  const int64_t full = p.cols / kPerBlock;  // blocks with every element present
  for (int64_t g = g0; g < g1; ++g) {
    Elem* out =
        reinterpret_cast<Elem*>(p.data.get() + static_cast<size_t>(g * p.blocks) * p.block_bytes);
    const Elem* rows[kPackRows];
    for (int l = 0; l < kPackRows; ++l) {
      rows[l] =
          reinterpret_cast<const Elem*>(base + static_cast<size_t>(g * kPackRows + l) * row_bytes);
    }
    for (int64_t i = 0; i < full; ++i, out += kPackRows * kPerBlock) {
      for (int l = 0; l < kPackRows; ++l) {
        for (int e = 0; e < kPerBlock; ++e) out[l * kPerBlock + e] = rows[l][i * kPerBlock + e];
      }
    }
    if (full < p.blocks) {  // BF16, odd length: the last element and a zero
      for (int l = 0; l < kPackRows; ++l) {
        out[l * kPerBlock] = rows[l][full * kPerBlock];
        for (int e = 1; e < kPerBlock; ++e) out[l * kPerBlock + e] = 0;
      }
    }
  }
}

// Q5_0 and Q5_1: the low four bits as Q4_0's parts (4 x 64 bytes), the fifth bits as 8 masks of
// 64 bits (mask u, u < 8, is for the nibbles unpacked as part u: elements 4u + b; bit 4l + b is
// the fifth bit of that element of row l), then 16 f16 d (Q5_1: and 16 f16 m).
template <class Block>
void pack_q5(PackedWeight& p, const uint8_t* base, size_t row_bytes, int64_t g0, int64_t g1) {
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* out = p.data.get() + static_cast<size_t>(g * p.blocks) * p.block_bytes;
    for (int64_t i = 0; i < p.blocks; ++i, out += p.block_bytes) {
      uint64_t masks[8] = {};
      uint16_t* scales = reinterpret_cast<uint16_t*>(out + 4 * 64 + 64);
      for (int l = 0; l < kPackRows; ++l) {
        const uint8_t* row = base + static_cast<size_t>(g * kPackRows + l) * row_bytes;
        const Block& b = reinterpret_cast<const Block*>(row)[i];
        interleave(b.qs, 4, l, out);
        uint32_t qh;
        std::memcpy(&qh, b.qh, 4);
        for (int u = 0; u < 8; ++u) {
          for (int k = 0; k < 4; ++k) {
            masks[u] |= static_cast<uint64_t>((qh >> (4 * u + k)) & 1u) << (4 * l + k);
          }
        }
        scales[l] = b.d;
        if constexpr (std::is_same_v<Block, BlockQ5_1>) scales[kPackRows + l] = b.m;
      }
      std::memcpy(out + 4 * 64, masks, sizeof(masks));
    }
  }
}

}  // namespace

void pack_groups(PackedWeight& p, const void* w, size_t row_bytes, int64_t g0, int64_t g1) {
  CARPOOL_CHECK(g0 >= 0 && g0 <= g1 && g1 <= p.groups);
  const uint8_t* rows = static_cast<const uint8_t*>(w);
  if (p.type == DType::kF32) return pack_float<uint32_t, 1>(p, rows, row_bytes, g0, g1);
  if (p.type == DType::kF16) return pack_float<uint16_t, 1>(p, rows, row_bytes, g0, g1);
  if (p.type == DType::kBF16) return pack_float<uint16_t, 2>(p, rows, row_bytes, g0, g1);
  switch (p.type) {
    case DType::kQ2_K:
      return pack_super_blocks<BlockQ2_K>(p, rows, row_bytes, g0, g1, pack_q2_k);
    case DType::kIQ4_XS:
      return pack_super_blocks<BlockIQ4_XS>(p, rows, row_bytes, g0, g1, pack_iq4_xs);
    case DType::kQ3_K:
      return pack_super_blocks<BlockQ3_K>(p, rows, row_bytes, g0, g1, pack_q3_k);
    case DType::kQ4_K:
      return pack_super_blocks<BlockQ4_K>(p, rows, row_bytes, g0, g1, pack_k45<BlockQ4_K>);
    case DType::kQ5_K:
      return pack_super_blocks<BlockQ5_K>(p, rows, row_bytes, g0, g1, pack_k45<BlockQ5_K>);
    case DType::kQ6_K:
      return pack_super_blocks<BlockQ6_K>(p, rows, row_bytes, g0, g1, pack_q6_k);
    default:
      break;
  }
  if (p.type == DType::kQ5_0) return pack_q5<BlockQ5_0>(p, rows, row_bytes, g0, g1);
  if (p.type == DType::kQ5_1) return pack_q5<BlockQ5_1>(p, rows, row_bytes, g0, g1);
  const bool q8 = p.type == DType::kQ8_0;
  const int parts = q8 ? 8 : 4;
  const uint8_t* base = static_cast<const uint8_t*>(w);
  for (int64_t g = g0; g < g1; ++g) {
    uint8_t* out = p.data.get() + static_cast<size_t>(g * p.blocks) * p.block_bytes;
    for (int64_t i = 0; i < p.blocks; ++i, out += p.block_bytes) {
      uint16_t* scales = reinterpret_cast<uint16_t*>(out + parts * 64);
      for (int l = 0; l < kPackRows; ++l) {
        const uint8_t* row = base + static_cast<size_t>(g * kPackRows + l) * row_bytes;
        const BlockView b = view_block(p.type, row, i);
        for (int t = 0; t < parts; ++t) {
          for (int k = 0; k < 4; ++k) {
            const uint8_t q = b.qs[4 * t + k];
            out[64 * t + 4 * l + k] = q8 ? static_cast<uint8_t>(q ^ 0x80u) : q;
          }
        }
        scales[l] = b.d;
        if (p.type == DType::kQ4_1) scales[kPackRows + l] = b.m;
      }
    }
  }
}

}  // namespace carpool
