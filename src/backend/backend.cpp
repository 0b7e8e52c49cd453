#include "backend/backend.h"

#include <cstring>
#include <random>
#include <string>
#include <vector>

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
      case DType::kQ5_0:
        reinterpret_cast<BlockQ5_0*>(blk)->d = f32_to_f16(scale / 16.f);
        break;
      case DType::kQ5_1: {
        auto* q = reinterpret_cast<BlockQ5_1*>(blk);
        q->d = f32_to_f16(scale * 2.f / 31.f);
        q->m = m_neg;
        break;
      }
      case DType::kQ8_0:
        reinterpret_cast<BlockQ8_0*>(blk)->d = d_q8;
        break;
      case DType::kQ2_K: {
        auto* q = reinterpret_cast<BlockQ2_K*>(blk);
        q->d = f32_to_f16(scale * 2.f / 3.f / 15.f);
        q->dmin = f32_to_f16(scale / 15.f);
        break;
      }
      case DType::kQ3_K:
        reinterpret_cast<BlockQ3_K*>(blk)->d = f32_to_f16(scale / 4.f / 32.f);
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
      case DType::kIQ4_NL:
        reinterpret_cast<BlockIQ4_NL*>(blk)->d = d_q8;
        break;
      case DType::kIQ4_XS:
        reinterpret_cast<BlockIQ4_XS*>(blk)->d = f32_to_f16(scale / 32.f / 127.f);
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

Result<Tensor> Backend::load_weight_concat(std::span<const HostWeight> parts) {
  if (parts.empty()) return Status::error("weight concat: no parts");
  const DType dtype = parts[0].dtype;
  const int64_t cols = parts[0].cols;
  int64_t rows = 0;
  for (const HostWeight& p : parts) {
    if (p.dtype != dtype) return Status::error("weight concat: parts differ in type");
    if (p.cols != cols || p.rows < 0) return Status::error("weight concat: parts differ in width");
    if (p.data == nullptr && p.rows > 0) return Status::error("weight concat: part has no data");
    rows += p.rows;
  }
  const DTypeInfo& info = dtype_info(dtype);
  if (cols <= 0 || cols % info.block_elems != 0 || rows <= 0) {
    return Status::error("weight concat: invalid shape for " + std::string(info.name));
  }
  const size_t row_bytes = dtype_row_bytes(dtype, cols);
  std::unique_ptr<uint8_t[]> buf(new (std::nothrow) uint8_t[row_bytes * static_cast<size_t>(rows)]);
  if (!buf) return Status::error("weight concat: out of host memory");
  size_t off = 0;
  for (const HostWeight& p : parts) {
    const size_t n = row_bytes * static_cast<size_t>(p.rows);
    if (n > 0) std::memcpy(buf.get() + off, p.data, n);
    off += n;
  }
  auto t = load_weight(HostWeight{dtype, buf.get(), rows, cols});
  if (!t) return t;
  random_weights_.push_back(std::move(buf));  // load_weight may keep pointing at the bytes
  return t;
}

std::vector<float> Backend::kv_cache_row(const Tensor& cache, int64_t slot) {
  CARPOOL_CHECK(slot >= 0 && slot < cache.rows);
  CARPOOL_CHECK(cache.dtype == DType::kF32 || cache.dtype == DType::kF16 ||
                cache.dtype == DType::kBF16);
  const Tensor row = cache.rows_view(slot, 1);
  std::vector<uint8_t> raw(row.bytes());
  download(raw.data(), row, raw.size());
  synchronize();
  std::vector<float> out(static_cast<size_t>(cache.cols));
  for (size_t c = 0; c < out.size(); ++c) {
    if (cache.dtype == DType::kF32) {
      std::memcpy(&out[c], raw.data() + 4 * c, 4);
      continue;
    }
    uint16_t h;
    std::memcpy(&h, raw.data() + 2 * c, 2);
    out[c] = cache.dtype == DType::kF16 ? f16_to_f32(h) : bf16_to_f32(h);
  }
  return out;
}

void Backend::copy_columns(Tensor out, const Tensor& src, int64_t col0) {
  CARPOOL_CHECK(out.dtype == src.dtype && !dtype_is_quantized(src.dtype));
  CARPOOL_CHECK(out.rows == src.rows && col0 >= 0 && col0 + out.cols <= src.cols);
  const size_t es = dtype_row_bytes(src.dtype, 1);
  std::vector<uint8_t> whole(src.bytes()), part(out.bytes());
  download(whole.data(), src, whole.size());
  for (int64_t r = 0; r < src.rows; ++r) {
    std::memcpy(
        part.data() + static_cast<size_t>(r) * out.row_bytes(),
        whole.data() + static_cast<size_t>(r) * src.row_bytes() + static_cast<size_t>(col0) * es,
        out.row_bytes());
  }
  upload(out, part.data(), part.size());
  synchronize();  // `part` goes out of scope
}

void Backend::rope_kv_write_qkv(Tensor q_out, const Tensor& qkv, Tensor k_cache, Tensor v_cache,
                                const Tensor& positions, const Tensor& inv_freq,
                                const Tensor& slots, int n_heads, int n_kv_heads, int head_dim,
                                RopeStyle style) {
  const int64_t q_dim = int64_t(n_heads) * head_dim, kv_dim = int64_t(n_kv_heads) * head_dim;
  CARPOOL_CHECK(qkv.cols == q_dim + 2 * kv_dim && q_out.cols == q_dim && q_out.rows == qkv.rows);
  CARPOOL_CHECK(q_out.dtype == qkv.dtype);
  if (qkv.rows == 0) return;
  auto k = alloc(qkv.dtype, qkv.rows, kv_dim);
  auto v = alloc(qkv.dtype, qkv.rows, kv_dim);
  CARPOOL_CHECK(k.is_ok() && v.is_ok());
  copy_columns(q_out, qkv, 0);
  copy_columns(k.value(), qkv, q_dim);
  copy_columns(v.value(), qkv, q_dim + kv_dim);
  rope_kv_write(q_out, k.value(), v.value(), k_cache, v_cache, positions, inv_freq, slots, n_heads,
                n_kv_heads, head_dim, style);
  synchronize();  // the temporaries are read by the ops just enqueued
  free(k.value());
  free(v.value());
}

void Backend::swiglu_fused(Tensor out, const Tensor& gate_up) {
  CARPOOL_CHECK(gate_up.cols == 2 * out.cols && gate_up.rows == out.rows);
  if (out.rows == 0) return;
  auto gate = alloc(gate_up.dtype, gate_up.rows, out.cols);
  auto up = alloc(gate_up.dtype, gate_up.rows, out.cols);
  CARPOOL_CHECK(gate.is_ok() && up.is_ok());
  copy_columns(gate.value(), gate_up, 0);
  copy_columns(up.value(), gate_up, out.cols);
  swiglu(out, gate.value(), up.value());
  synchronize();
  free(gate.value());
  free(up.value());
}

}  // namespace carpool
