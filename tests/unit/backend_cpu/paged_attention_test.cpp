// Paged attention (paged_attention.h) at every instruction-set level this machine runs:
//  - the SIMD exp against double-precision exp (ulp error, special values), and the AVX2 and
//    AVX-512 versions against each other (the same arithmetic, so the same bits);
//  - outputs against a two-pass softmax in double;
//  - batch invariance, bitwise: every token's output, computed inside ragged batches (prefill,
//    chunked prefill and decode rows of several sequences, any thread count), equals the same
//    token computed alone as a one-token decode step of its sequence. Also through
//    CpuBackend::attention.
#include "backend/cpu/paged_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "backend/cpu/cpu_backend.h"

namespace carpool {
namespace {

// Distance in representable floats between two finite non-negative floats.
int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(static_cast<int64_t>(ia) - ib);
}

using ExpFn = bool (*)(const float*, float*, int64_t);

class SimdExp : public ::testing::TestWithParam<CpuIsa> {};

TEST_P(SimdExp, WithinTwoUlpAndSpecialValues) {
  const CpuIsa isa = GetParam();
  if (!cpu_supports(isa)) GTEST_SKIP() << cpu_isa_name(isa) << " not supported here";
  const ExpFn exp_fn = isa == CpuIsa::kAvx512 ? exp_f32_avx512 : exp_f32_avx2;
  // Every 997th float in [-104, 88.7] (by bit pattern, so every binade is sampled) and a dense
  // sweep of [-20, 0], where attention's exp(score - max) lives.
  std::vector<float> x;
  auto add_bits = [&](uint32_t from, uint32_t to) {
    for (uint64_t b = from; b <= to; b += 997) {
      const uint32_t bits = static_cast<uint32_t>(b);
      float v;
      std::memcpy(&v, &bits, 4);
      x.push_back(v);
    }
  };
  uint32_t neg_lo, pos_hi;
  const float lo = -104.f, hi = 88.7f;
  std::memcpy(&neg_lo, &lo, 4);
  std::memcpy(&pos_hi, &hi, 4);
  add_bits(0x80000000u, neg_lo);  // -0 down to -104
  add_bits(0u, pos_hi);           // +0 up to 88.7
  for (float v = -20.f; v < 0.f; v += 1.7e-5f) x.push_back(v);
  std::vector<float> y(x.size());
  ASSERT_TRUE(exp_fn(x.data(), y.data(), static_cast<int64_t>(x.size())));
  int64_t worst = 0;
  float worst_x = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const float ref = static_cast<float>(std::exp(static_cast<double>(x[i])));
    const int64_t d = ulp_distance(y[i], ref);
    if (d > worst) worst = d, worst_x = x[i];
  }
  std::printf("%s exp: %zu inputs, max error %lld ulp (at x = %.9g)\n", cpu_isa_name(isa), x.size(),
              static_cast<long long>(worst), worst_x);
  EXPECT_LE(worst, 2);

  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> special = {
      -inf, -1e30f, -200.f, -104.f, 0.f,
      -0.f, 89.f,   1e30f,  inf,    std::numeric_limits<float>::quiet_NaN()};
  std::vector<float> ys(special.size());
  ASSERT_TRUE(exp_fn(special.data(), ys.data(), static_cast<int64_t>(special.size())));
  EXPECT_EQ(ys[0], 0.f);
  EXPECT_EQ(ys[1], 0.f);
  EXPECT_EQ(ys[2], 0.f);
  EXPECT_EQ(ys[3], 0.f);  // e^-104 = 6.8e-46, below half the smallest subnormal
  EXPECT_EQ(ys[4], 1.f);
  EXPECT_EQ(ys[5], 1.f);
  EXPECT_EQ(ys[6], inf);
  EXPECT_EQ(ys[7], inf);
  EXPECT_EQ(ys[8], inf);
  EXPECT_TRUE(std::isnan(ys[9]));
}

TEST(SimdExp, Avx2AndAvx512GiveTheSameBits) {
  if (!cpu_supports(CpuIsa::kAvx512)) GTEST_SKIP() << "avx512 not supported here";
  std::vector<float> x;
  for (uint64_t b = 0; b <= 0xffffffffu; b += 4099) {
    const uint32_t bits = static_cast<uint32_t>(b);
    float v;
    std::memcpy(&v, &bits, 4);
    x.push_back(v);
  }
  std::vector<float> y2(x.size()), y512(x.size());
  ASSERT_TRUE(exp_f32_avx2(x.data(), y2.data(), static_cast<int64_t>(x.size())));
  ASSERT_TRUE(exp_f32_avx512(x.data(), y512.data(), static_cast<int64_t>(x.size())));
  EXPECT_EQ(std::memcmp(y2.data(), y512.data(), x.size() * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(Levels, SimdExp, ::testing::Values(CpuIsa::kAvx2, CpuIsa::kAvx512),
                         [](const auto& info) { return std::string(cpu_isa_name(info.param)); });

struct Shape {
  int n_heads, n_kv_heads, head_dim, block_size;
  float q_scale;  // multiplies q: large scores test the softmax's stability
};

// Sequences with fixed K/V (in shuffled cache blocks of type kv: f32, or f16 holding the same
// values, which are then rounded to f16 first, or int8 with a scale per row and KV head, the
// values then replaced by what the cache holds) and a q row for every position; a step runs some
// of them, each with a context length and a number of new tokens.
class Sequences {
 public:
  Sequences(const Shape& s, int n_seqs, int max_len, uint32_t seed, DType kv = DType::kF32)
      : s_(s), max_len_(max_len), kv_(kv) {
    std::mt19937 g(seed);
    std::normal_distribution<float> nd(0.f, 1.f);
    blocks_per_seq_ = (max_len + s.block_size - 1) / s.block_size;
    const int n_blocks = n_seqs * blocks_per_seq_ + 2;
    std::vector<int32_t> pool(static_cast<size_t>(n_blocks));
    std::iota(pool.begin(), pool.end(), 0);
    std::shuffle(pool.begin(), pool.end(), g);
    tables_.assign(pool.begin(), pool.begin() + n_seqs * blocks_per_seq_);
    const size_t cache_floats = static_cast<size_t>(n_blocks) * s.block_size * kv_cols();
    k_.resize(cache_floats);
    v_.resize(cache_floats);
    for (float& x : k_) x = nd(g);
    for (float& x : v_) x = nd(g);
    if (kv_ == DType::kF16) {
      for (auto [f, h] : {std::pair{&k_, &k16_}, std::pair{&v_, &v16_}}) {
        for (float& x : *f) {
          h->push_back(f32_to_f16(x));
          x = f16_to_f32(h->back());
        }
      }
    }
    if (kv_ == DType::kI8) quantize_int8(n_blocks);
    // The cache's K: each block column-major (dimension c of key o at c * block_size + o).
    const int64_t bs = s.block_size, cols = kv_cols();
    kt_.resize(k_.size());
    kt16_.resize(k16_.size());
    kt8_.resize(k8_.size());
    for (int64_t b = 0; b < n_blocks; ++b) {
      for (int64_t o = 0; o < bs; ++o) {
        for (int64_t c = 0; c < cols; ++c) {
          const int64_t from = (b * bs + o) * cols + c, to = b * bs * cols + c * bs + o;
          kt_[static_cast<size_t>(to)] = k_[static_cast<size_t>(from)];
          if (!k16_.empty()) kt16_[static_cast<size_t>(to)] = k16_[static_cast<size_t>(from)];
          if (!k8_.empty()) kt8_[static_cast<size_t>(to)] = k8_[static_cast<size_t>(from)];
        }
      }
    }
    q_.resize(static_cast<size_t>(n_seqs) * max_len * q_cols());
    for (float& x : q_) x = nd(g) * s.q_scale;
    build_records(n_blocks);
  }

  // Runs read the cache from per-block records (build_records, addressed through
  // PagedAttentionArgs' strides) instead of back-to-back K and V arrays.
  bool records = false;

  struct Step {
    int seq, kv_len, q_len;
  };

  // Positions per partition of the kernels' context split (PagedAttentionArgs::partition_keys).
  int partition_keys = 512;

  // Runs a batch; returns each token's output row keyed by (sequence, position).
  std::map<std::pair<int, int>, std::vector<float>> run(const std::vector<Step>& steps, CpuIsa isa,
                                                        int n_threads) const {
    std::vector<float> q, out;
    std::vector<int32_t> qstart{0}, kv_len, tables;
    build(steps, q, qstart, kv_len, tables);
    out.assign(q.size(), std::nanf(""));
    PagedAttentionArgs a = args(steps, q, qstart, kv_len, tables);
    a.out = out.data();
    ThreadPool pool(n_threads);
    std::vector<std::vector<float>> scratch(static_cast<size_t>(n_threads),
                                            std::vector<float>(paged_attention_scratch_floats(a)));
    paged_attention(isa, a, pool, scratch.data());
    return split(steps, out);
  }

  // The same through CpuBackend::attention (the backend's own level and pool).
  std::map<std::pair<int, int>, std::vector<float>> run_backend(const std::vector<Step>& steps,
                                                                Backend& b) const {
    std::vector<float> q, out;
    std::vector<int32_t> qstart{0}, kv_len, tables;
    build(steps, q, qstart, kv_len, tables);
    out.assign(q.size(), std::nanf(""));
    const int n_tokens = qstart.back(), n = static_cast<int>(steps.size());
    auto host = [](const void* p, DType t, int64_t rows, int64_t cols) {
      return Tensor{const_cast<void*>(p), t, rows, cols};
    };
    const int64_t cache_rows = static_cast<int64_t>(k_.size()) / kv_cols();
    AttentionMeta meta;
    meta.n_tokens = n_tokens;
    meta.n_seqs = n;
    meta.max_blocks_per_seq = blocks_per_seq_;
    meta.block_size = s_.block_size;
    meta.query_start = host(qstart.data(), DType::kI32, 1, n + 1);
    meta.kv_len = host(kv_len.data(), DType::kI32, 1, n);
    meta.block_tables = host(tables.data(), DType::kI32, n, blocks_per_seq_);
    meta.n_heads = s_.n_heads;
    meta.n_kv_heads = s_.n_kv_heads;
    meta.head_dim = s_.head_dim;
    meta.scale = scale();
    b.attention(host(out.data(), DType::kF32, n_tokens, q_cols()),
                host(q.data(), DType::kF32, n_tokens, q_cols()),
                host(k_cache(), kv_, cache_rows, kv_cols()),
                host(v_cache(), kv_, cache_rows, kv_cols()), meta);
    return split(steps, out);
  }

  // Output row of (seq, pos) by a two-pass softmax in double.
  std::vector<double> reference(int seq, int pos) const {
    const int group = s_.n_heads / s_.n_kv_heads, hd = s_.head_dim;
    std::vector<double> y(static_cast<size_t>(q_cols()));
    for (int h = 0; h < s_.n_heads; ++h) {
      const float* qh = q_row(seq, pos) + h * hd;
      std::vector<double> sc(static_cast<size_t>(pos + 1));
      double mx = -1e300;
      for (int p = 0; p <= pos; ++p) {
        const float* k = cache_row(k_, seq, p) + (h / group) * hd;
        double d = 0;
        for (int e = 0; e < hd; ++e) d += static_cast<double>(qh[e]) * k[e];
        sc[static_cast<size_t>(p)] = d * scale();
        mx = std::max(mx, sc[static_cast<size_t>(p)]);
      }
      double denom = 0;
      for (double& x : sc) denom += (x = std::exp(x - mx));
      for (int e = 0; e < hd; ++e) {
        double acc = 0;
        for (int p = 0; p <= pos; ++p) {
          acc += sc[static_cast<size_t>(p)] * cache_row(v_, seq, p)[(h / group) * hd + e];
        }
        y[static_cast<size_t>(h * hd + e)] = acc / denom;
      }
    }
    return y;
  }

 private:
  const void* k_cache() const {
    if (kv_ == DType::kI8) return kt8_.data();
    return kv_ == DType::kF16 ? static_cast<const void*>(kt16_.data()) : kt_.data();
  }
  const void* v_cache() const {
    if (kv_ == DType::kI8) return v8_.data();
    return kv_ == DType::kF16 ? static_cast<const void*>(v16_.data()) : v_.data();
  }

  // Each cache row's KV heads as int8 with their scales (kv_int8.h, written here independently
  // of the backend's quantizer): scale = max |x| / 127, value = nearest integer to x / scale;
  // k_ and v_ become the values the cache holds (integer x scale) for the reference.
  void quantize_int8(int n_blocks) {
    const int hd = s_.head_dim, n_kv = s_.n_kv_heads, bs = s_.block_size;
    const int64_t rows = int64_t{n_blocks} * bs;
    for (auto [f, q, sc] : {std::tuple{&k_, &k8_, &k_scales_}, std::tuple{&v_, &v8_, &v_scales_}}) {
      q->resize(f->size());
      sc->resize(static_cast<size_t>(rows * n_kv));
      for (int64_t r = 0; r < rows; ++r) {
        for (int h = 0; h < n_kv; ++h) {
          float* x = f->data() + (r * n_kv + h) * hd;
          float amax = 0.f;
          for (int e = 0; e < hd; ++e) amax = std::max(amax, std::fabs(x[e]));
          const float scale = amax / 127.f;
          (*sc)[static_cast<size_t>((r / bs * n_kv + h) * bs + r % bs)] = scale;
          for (int e = 0; e < hd; ++e) {
            const float qi = std::nearbyint(x[e] * (127.f / amax));
            (*q)[static_cast<size_t>((r * n_kv + h) * hd + e)] = static_cast<int8_t>(qi);
            x[e] = qi * scale;
          }
        }
      }
    }
  }
  // The same blocks as records of one unit per KV head, [K | K scales | V | V scales] (as the CPU
  // backend keeps its caches), with a 16-byte gap after each part and 32 bytes after each record,
  // so that the strides differ from the backend's.
  int elem_bytes() const { return kv_ == DType::kF32 ? 4 : kv_ == DType::kF16 ? 2 : 1; }
  void build_records(int n_blocks) {
    const int64_t elem = elem_bytes();
    const int64_t bs = s_.block_size, hd = s_.head_dim;
    const int64_t vals = (bs * hd * elem + 15) / 16 * 16 + 16;
    const int64_t scales = kv_ == DType::kI8 ? bs * 4 + 16 : 0;
    unit_bytes_ = 2 * (vals + scales);
    record_bytes_ = s_.n_kv_heads * unit_bytes_ + 32;
    k_scales_begin_ = vals;
    v_begin_ = vals + scales;
    v_scales_begin_ = 2 * vals + scales;
    records_.assign(static_cast<size_t>(n_blocks * record_bytes_ / 4), 0.f);
    char* base = reinterpret_cast<char*>(records_.data());
    for (int64_t b = 0; b < n_blocks; ++b) {
      for (int h = 0; h < s_.n_kv_heads; ++h) {
        char* u = base + b * record_bytes_ + h * unit_bytes_;
        // K: head h's columns of the block, column-major (contiguous in the back-to-back K too).
        std::memcpy(u,
                    static_cast<const char*>(k_cache()) + (b * bs * kv_cols() + h * hd * bs) * elem,
                    bs * hd * elem);
        for (int64_t o = 0; o < bs; ++o) {  // V: head h's part of each of the block's rows
          std::memcpy(
              u + v_begin_ + o * hd * elem,
              static_cast<const char*>(v_cache()) + ((b * bs + o) * kv_cols() + h * hd) * elem,
              hd * elem);
        }
        if (kv_ == DType::kI8) {
          const float* ks = k_scales_.data() + (b * s_.n_kv_heads + h) * bs;
          const float* vs = v_scales_.data() + (b * s_.n_kv_heads + h) * bs;
          std::memcpy(u + vals, ks, bs * 4);
          std::memcpy(u + v_scales_begin_, vs, bs * 4);
        }
      }
    }
  }
  int64_t q_cols() const { return static_cast<int64_t>(s_.n_heads) * s_.head_dim; }
  int64_t kv_cols() const { return static_cast<int64_t>(s_.n_kv_heads) * s_.head_dim; }
  float scale() const { return 1.f / std::sqrt(static_cast<float>(s_.head_dim)); }
  const float* q_row(int seq, int pos) const {
    return q_.data() + (static_cast<int64_t>(seq) * max_len_ + pos) * q_cols();
  }
  const float* cache_row(const std::vector<float>& c, int seq, int pos) const {
    const int64_t blk = tables_[static_cast<size_t>(seq * blocks_per_seq_ + pos / s_.block_size)];
    return c.data() + (blk * s_.block_size + pos % s_.block_size) * kv_cols();
  }

  void build(const std::vector<Step>& steps, std::vector<float>& q, std::vector<int32_t>& qstart,
             std::vector<int32_t>& kv_len, std::vector<int32_t>& tables) const {
    for (const Step& st : steps) {
      EXPECT_LE(st.kv_len, max_len_);
      for (int j = 0; j < st.q_len; ++j) {
        const float* row = q_row(st.seq, st.kv_len - st.q_len + j);
        q.insert(q.end(), row, row + q_cols());
      }
      qstart.push_back(qstart.back() + st.q_len);
      kv_len.push_back(st.kv_len);
      const auto first = tables_.begin() + st.seq * blocks_per_seq_;
      tables.insert(tables.end(), first, first + blocks_per_seq_);
    }
  }

  PagedAttentionArgs args(const std::vector<Step>& steps, const std::vector<float>& q,
                          const std::vector<int32_t>& qstart, const std::vector<int32_t>& kv_len,
                          const std::vector<int32_t>& tables) const {
    PagedAttentionArgs a;
    a.q = q.data();
    a.k_cache = k_cache();
    a.v_cache = v_cache();
    a.kv_dtype = kv_;
    if (kv_ == DType::kI8) {
      a.k_scales = k_scales_.data();
      a.v_scales = v_scales_.data();
    }
    a.query_start = qstart.data();
    a.kv_len = kv_len.data();
    a.block_tables = tables.data();
    a.n_seqs = static_cast<int>(steps.size());
    a.max_blocks_per_seq = blocks_per_seq_;
    a.block_size = s_.block_size;
    a.n_heads = s_.n_heads;
    a.n_kv_heads = s_.n_kv_heads;
    a.head_dim = s_.head_dim;
    a.scale = scale();
    a.partition_keys = partition_keys;
    a.strides = KvStrides::back_to_back(s_.block_size, s_.n_kv_heads, s_.head_dim, elem_bytes());
    if (records) {
      const char* base = reinterpret_cast<const char*>(records_.data());
      a.k_cache = base;
      a.v_cache = base + v_begin_;
      a.strides = {record_bytes_, unit_bytes_, unit_bytes_, s_.head_dim * elem_bytes(),
                   record_bytes_, unit_bytes_};
      if (kv_ == DType::kI8) {
        a.k_scales = reinterpret_cast<const float*>(base + k_scales_begin_);
        a.v_scales = reinterpret_cast<const float*>(base + v_scales_begin_);
      }
    }
    return a;
  }

  std::map<std::pair<int, int>, std::vector<float>> split(const std::vector<Step>& steps,
                                                          const std::vector<float>& out) const {
    std::map<std::pair<int, int>, std::vector<float>> rows;
    int64_t tok = 0;
    for (const Step& st : steps) {
      for (int j = 0; j < st.q_len; ++j, ++tok) {
        const float* r = out.data() + tok * q_cols();
        rows[{st.seq, st.kv_len - st.q_len + j}] = std::vector<float>(r, r + q_cols());
      }
    }
    return rows;
  }

  Shape s_;
  int max_len_;
  int blocks_per_seq_ = 0;
  std::vector<int32_t> tables_;  // [n_seqs][blocks_per_seq]
  DType kv_;
  std::vector<float> k_, v_;                // [cache rows, n_kv_heads * head_dim]
  std::vector<uint16_t> k16_, v16_;         // the same values as f16 (kv_ = kF16)
  std::vector<float> kt_;                   // k_ as the cache holds it (blocks column-major)
  std::vector<uint16_t> kt16_;              // k16_ as the cache holds it
  std::vector<int8_t> k8_, v8_;             // int8 values (kv_ = kI8), row-major as k_
  std::vector<int8_t> kt8_;                 // k8_ as the cache holds it
  std::vector<float> k_scales_, v_scales_;  // their scales, as the cache holds them
  std::vector<float> q_;                    // [n_seqs][max_len][n_heads * head_dim]
  std::vector<float> records_;              // the cache as records (float: aligned for scales)
  int64_t unit_bytes_ = 0, record_bytes_ = 0, k_scales_begin_ = 0, v_begin_ = 0,
          v_scales_begin_ = 0;
};

using Batch = std::vector<Sequences::Step>;

// Sequence 0 is the probe: prefill whole, in chunks, and decode, alone and among the others.
const std::vector<Batch>& batches() {
  static const std::vector<Batch> b = {
      {{0, 70, 70}},
      {{0, 70, 13}},
      {{1, 23, 23}, {0, 70, 13}, {2, 40, 1}, {3, 50, 7}},
      {{2, 41, 1}, {0, 70, 1}, {1, 30, 30}},
      {{0, 57, 57}, {1, 12, 3}},
      {{3, 16, 16}, {2, 1, 1}, {0, 33, 1}, {1, 64, 17}},
  };
  return b;
}

// Longer contexts: many blocks per row, decode steps of several long sequences, prefill chunks
// deep into a sequence.
const std::vector<Batch>& long_batches() {
  static const std::vector<Batch> b = {
      {{0, 300, 1}},
      {{0, 300, 37}},
      {{1, 200, 1}, {0, 260, 1}, {2, 129, 1}, {3, 128, 1}},
      {{0, 257, 16}, {3, 140, 1}},
      {{2, 290, 1}, {1, 130, 2}},
  };
  return b;
}

std::vector<Batch> all_batches() {
  std::vector<Batch> all = batches();
  all.insert(all.end(), long_batches().begin(), long_batches().end());
  return all;
}

const Shape kShapes[] = {
    {9, 3, 64, 16, 1.f},   // SmolLM2-135M
    {8, 1, 20, 5, 1.f},    // MQA, head_dim and block size not multiples of the lanes
    {4, 4, 136, 32, 1.f},  // MHA, head_dim past one accumulator panel
    {6, 2, 64, 16, 8.f},   // large scores
    {6, 2, 64, 16, 40.f},  // scores spread over hundreds of nats: most weights below the exp floor
};

std::string shape_name(const Shape& s) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "h%d/kv%d d%d bs%d q x%g", s.n_heads, s.n_kv_heads, s.head_dim,
                s.block_size, static_cast<double>(s.q_scale));
  return buf;
}

class PagedAttention : public ::testing::TestWithParam<std::tuple<CpuIsa, DType>> {};

// Partition sizes: the default (every context here in one partition) and one that cuts the
// contexts (up to 300 positions) into up to 7 partitions, merged at the end.
constexpr int kPartitionKeys[] = {512, 40};

TEST_P(PagedAttention, MatchesDoubleReference) {
  const auto [isa, kv] = GetParam();
  if (!cpu_supports(isa)) GTEST_SKIP() << cpu_isa_name(isa) << " not supported here";
  for (const Shape& shape : kShapes) {
    for (int pk : kPartitionKeys) {
      Sequences seqs(shape, 4, 300, 5, kv);
      seqs.partition_keys = pk;
      double worst = 0;
      for (const Batch& batch : all_batches()) {
        for (const auto& [key, row] : seqs.run(batch, isa, 2)) {
          const std::vector<double> ref = seqs.reference(key.first, key.second);
          double max_ref = 0, max_diff = 0;
          for (size_t i = 0; i < row.size(); ++i) {
            max_ref = std::max(max_ref, std::fabs(ref[i]));
            max_diff = std::max(max_diff, std::fabs(row[i] - ref[i]));
          }
          worst = std::max(worst, max_diff / max_ref);
        }
      }
      std::printf("%s %s, partitions of %d: max normalized error %.3g\n", cpu_isa_name(isa),
                  shape_name(shape).c_str(), pk, worst);
      // An int8 cache rounds each score once more in f32 (times its key's scale): with scores of
      // hundreds of nats (q x40) that is 1.15e-5 where the float caches reach 7.9e-6.
      EXPECT_LT(worst, kv == DType::kI8 ? 2e-5 : 1e-5)
          << shape_name(shape) << ", partitions of " << pk;
    }
  }
}

// The cache read from per-block records through the strides gives the same bits as from
// back-to-back arrays: the layout moves addresses, not arithmetic.
TEST_P(PagedAttention, RecordLayoutGivesTheSameResults) {
  const auto [isa, kv] = GetParam();
  if (!cpu_supports(isa)) GTEST_SKIP() << cpu_isa_name(isa) << " not supported here";
  for (const Shape& shape : kShapes) {
    for (int pk : kPartitionKeys) {
      Sequences seqs(shape, 4, 300, 21, kv);
      seqs.partition_keys = pk;
      for (const Batch& batch : all_batches()) {
        seqs.records = false;
        const auto apart = seqs.run(batch, isa, 2);
        seqs.records = true;
        const auto together = seqs.run(batch, isa, 2);
        for (const auto& [key, row] : apart) {
          ASSERT_EQ(std::memcmp(row.data(), together.at(key).data(), row.size() * sizeof(float)), 0)
              << cpu_isa_name(isa) << " " << shape_name(shape) << ", partitions of " << pk
              << ": sequence " << key.first << " position " << key.second;
        }
      }
    }
  }
}

TEST_P(PagedAttention, TokenResultDoesNotDependOnItsBatch) {
  const auto [isa, kv] = GetParam();
  if (!cpu_supports(isa)) GTEST_SKIP() << cpu_isa_name(isa) << " not supported here";
  for (const Shape& shape : kShapes) {
    for (int pk : kPartitionKeys) {
      Sequences seqs(shape, 4, 300, 9, kv);
      seqs.partition_keys = pk;
      const std::vector<Batch> all = all_batches();
      for (size_t bi = 0; bi < all.size(); ++bi) {
        for (int n_threads : {1, 2, 3}) {
          for (const auto& [key, row] : seqs.run(all[bi], isa, n_threads)) {
            const auto [seq, pos] = key;
            // The same token alone: a one-token step of its sequence at its position.
            const auto alone = seqs.run({{seq, pos + 1, 1}}, isa, 1).at(key);
            ASSERT_EQ(std::memcmp(row.data(), alone.data(), row.size() * sizeof(float)), 0)
                << cpu_isa_name(isa) << " " << shape_name(shape) << ": batch " << bi << ", "
                << n_threads << " threads: sequence " << seq << " position " << pos
                << ", partitions of " << pk << " differs from the same token alone";
          }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Levels, PagedAttention,
    ::testing::Combine(::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512),
                       ::testing::Values(DType::kF32, DType::kF16, DType::kI8)),
    [](const auto& info) {
      return std::string(cpu_isa_name(std::get<0>(info.param))) + "_" +
             std::string(dtype_name(std::get<1>(info.param)));
    });

// Float caches only: the backend finds an int8 cache's scales through alloc_kv (the conformance
// suite runs it with one).
class PagedAttentionBackend : public ::testing::TestWithParam<DType> {};

TEST_P(PagedAttentionBackend, TokenResultDoesNotDependOnItsBatch) {
  auto backend = make_cpu_backend({.n_threads = 2});
  const Shape shape{9, 3, 64, 16, 1.f};
  Sequences seqs(shape, 4, 300, 13, GetParam());
  const std::vector<Batch> all = all_batches();
  for (size_t bi = 0; bi < all.size(); ++bi) {
    for (const auto& [key, row] : seqs.run_backend(all[bi], *backend)) {
      const auto [seq, pos] = key;
      const auto alone = seqs.run_backend({{seq, pos + 1, 1}}, *backend).at(key);
      ASSERT_EQ(std::memcmp(row.data(), alone.data(), row.size() * sizeof(float)), 0)
          << "batch " << bi << ": sequence " << seq << " position " << pos
          << " differs from the same token alone";
    }
  }
}

// Contexts past the backend's partition of 512 positions: decode steps and a prefill chunk
// across a partition boundary, against the double reference and against the same token alone.
TEST_P(PagedAttentionBackend, LongContextsAcrossPartitions) {
  auto backend = make_cpu_backend({.n_threads = 2});
  const Shape shape{9, 3, 64, 16, 1.f};
  Sequences seqs(shape, 3, 1100, 17, GetParam());
  const std::vector<Batch> batches = {
      {{0, 1100, 1}},
      {{1, 700, 1}, {0, 1100, 1}, {2, 513, 1}},
      {{1, 700, 37}},
      {{2, 530, 30}, {0, 1000, 1}},
  };
  double worst = 0;
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    for (const auto& [key, row] : seqs.run_backend(batches[bi], *backend)) {
      const auto [seq, pos] = key;
      const std::vector<double> ref = seqs.reference(seq, pos);
      double max_ref = 0, max_diff = 0;
      for (size_t i = 0; i < row.size(); ++i) {
        max_ref = std::max(max_ref, std::fabs(ref[i]));
        max_diff = std::max(max_diff, std::fabs(row[i] - ref[i]));
      }
      worst = std::max(worst, max_diff / max_ref);
      const auto alone = seqs.run_backend({{seq, pos + 1, 1}}, *backend).at(key);
      ASSERT_EQ(std::memcmp(row.data(), alone.data(), row.size() * sizeof(float)), 0)
          << "batch " << bi << ": sequence " << seq << " position " << pos
          << " differs from the same token alone";
    }
  }
  std::printf("%s, contexts to 1100: max normalized error %.3g\n",
              std::string(dtype_name(GetParam())).c_str(), worst);
  EXPECT_LT(worst, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(KvTypes, PagedAttentionBackend,
                         ::testing::Values(DType::kF32, DType::kF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

}  // namespace
}  // namespace carpool
