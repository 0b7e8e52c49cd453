#include "backend/cpu/packed_weights.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/quants.h"
#include "util/check.h"

namespace carpool {

void PackedWeight::Free::operator()(uint8_t* p) const {
  std::free(p);
}

bool packable(DType t) {
  return t == DType::kQ4_0 || t == DType::kQ4_1 || t == DType::kQ8_0 || t == DType::kQ4_K;
}

size_t packed_block_bytes(DType t) {
  switch (t) {
    case DType::kQ4_0:
      return 4 * 64 + 2 * kPackRows;
    case DType::kQ4_1:
      return 4 * 64 + 4 * kPackRows;
    case DType::kQ8_0:
      return 8 * 64 + 2 * kPackRows;
    case DType::kQ4_K:
      return 32 * 64 + 4 * kPackRows + 16 * kPackRows;
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
  p.blocks = cols / block_elems;
  p.block_bytes = packed_block_bytes(t);
  const size_t bytes = std::max<size_t>(64, (p.bytes() + 63) / 64 * 64);
  p.data.reset(static_cast<uint8_t*>(std::aligned_alloc(64, bytes)));
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

void pack_q4_k(const BlockQ4_K& b, int l, uint8_t* out) {
  for (int part = 0; part < 32; ++part) std::memcpy(out + 64 * part + 4 * l, b.qs + 4 * part, 4);
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
}

}  // namespace

void pack_groups(PackedWeight& p, const void* w, size_t row_bytes, int64_t g0, int64_t g1) {
  CARPOOL_CHECK(g0 >= 0 && g0 <= g1 && g1 <= p.groups);
  if (p.type == DType::kQ4_K) {
    const uint8_t* base = static_cast<const uint8_t*>(w);
    for (int64_t g = g0; g < g1; ++g) {
      uint8_t* out = p.data.get() + static_cast<size_t>(g * p.blocks) * p.block_bytes;
      for (int64_t i = 0; i < p.blocks; ++i, out += p.block_bytes) {
        for (int l = 0; l < kPackRows; ++l) {
          const uint8_t* row = base + static_cast<size_t>(g * kPackRows + l) * row_bytes;
          pack_q4_k(reinterpret_cast<const BlockQ4_K*>(row)[i], l, out);
        }
      }
    }
    return;
  }
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
