#include "backend/backend.h"

#include <cstring>
#include <random>

#include "util/check.h"

namespace carpool {
namespace {

// splitmix64: a fast, well-mixed generator so synthetic weights are reproducible per seed.
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform(float scale) {  // in [-scale, scale]
    return scale * (static_cast<float>(next() >> 40) * (2.f / 16777216.f) - 1.f);
  }
};

// Fills `bytes` with random but valid blocks of a quantized type whose values are roughly
// uniform in [-scale, scale]: scales are set from `scale`, quants are random bits.
void fill_quantized(DType t, uint8_t* dst, size_t bytes, SplitMix& rng, float scale) {
  for (size_t i = 0; i < bytes; i += 8) {
    uint64_t r = rng.next();
    std::memcpy(dst + i, &r, std::min<size_t>(8, bytes - i));
  }
  const DTypeInfo& info = dtype_info(t);
  size_t n_blocks = bytes / info.block_bytes;
  uint16_t d_half = f32_to_f16(scale / 8.f);
  uint16_t d_q8 = f32_to_f16(scale / 127.f);
  uint16_t d_k = f32_to_f16(scale / 8.f / 63.f);
  uint16_t m_neg = f32_to_f16(-scale);
  for (size_t b = 0; b < n_blocks; ++b) {
    uint8_t* blk = dst + b * info.block_bytes;
    switch (t) {
      case DType::kQ4_0:
        reinterpret_cast<BlockQ4_0*>(blk)->d = d_half;
        break;
      case DType::kQ4_1: {
        auto* q = reinterpret_cast<BlockQ4_1*>(blk);
        q->d = f32_to_f16(scale * 2.f / 15.f);
        q->m = m_neg;
        break;
      }
      case DType::kQ8_0:
        reinterpret_cast<BlockQ8_0*>(blk)->d = d_q8;
        break;
      case DType::kQ4_K: {
        auto* q = reinterpret_cast<BlockQ4_K*>(blk);
        q->d = d_k;
        q->dmin = f32_to_f16(0.f);
        break;
      }
      case DType::kQ5_K: {
        auto* q = reinterpret_cast<BlockQ5_K*>(blk);
        q->d = f32_to_f16(scale / 16.f / 63.f);
        q->dmin = f32_to_f16(0.f);
        break;
      }
      case DType::kQ6_K:
        reinterpret_cast<BlockQ6_K*>(blk)->d = f32_to_f16(scale / 32.f / 127.f);
        break;
      default:
        break;
    }
  }
}

}  // namespace

Result<Tensor> Backend::alloc_random_weight(DType dtype, int64_t rows, int64_t cols, uint64_t seed,
                                            float scale) {
  const DTypeInfo& info = dtype_info(dtype);
  if (rows <= 0 || cols <= 0 || cols % info.block_elems != 0) {
    return Status::error("random weight: invalid shape for " + std::string(info.name));
  }
  size_t bytes = dtype_row_bytes(dtype, cols) * static_cast<size_t>(rows);
  std::unique_ptr<uint8_t[]> buf(new (std::nothrow) uint8_t[bytes]);
  if (!buf) return Status::error("random weight: out of host memory");
  SplitMix rng{seed * 0x2545F4914F6CDD1Dull + 1};
  size_t n = static_cast<size_t>(rows * cols);
  switch (dtype) {
    case DType::kF32: {
      auto* p = reinterpret_cast<float*>(buf.get());
      for (size_t i = 0; i < n; ++i) p[i] = rng.uniform(scale);
      break;
    }
    case DType::kF16:
    case DType::kBF16: {
      auto* p = reinterpret_cast<uint16_t*>(buf.get());
      for (size_t i = 0; i < n; ++i) {
        float v = rng.uniform(scale);
        p[i] = dtype == DType::kF16 ? f32_to_f16(v) : f32_to_bf16(v);
      }
      break;
    }
    default:
      if (!dtype_is_quantized(dtype)) return Status::error("random weight: unsupported type");
      fill_quantized(dtype, buf.get(), bytes, rng, scale);
  }
  HostWeight w{dtype, buf.get(), rows, cols};
  auto t = load_weight(w);
  if (!t) return t;
  random_weights_.push_back(std::move(buf));
  return t;
}

}  // namespace carpool
