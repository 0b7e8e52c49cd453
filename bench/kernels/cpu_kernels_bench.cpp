// CPU kernel benchmarks (single thread unless the name says otherwise).
//
//   BM_GemmQ8a/<type>/<isa>/<m>: out[m, 256] = x[m, 2048] @ w[256, 2048]^T with 8-bit
//     activations, one thread; counters: weight GB/s and integer GMAC/s.
//   BM_QuantizeQ8a: activation quantization of a 2048-wide row.
//   BM_MatmulFloat/<type>/<m>: CpuBackend::matmul with F32/F16/BF16 weights, 1 thread.
//   BM_Matmul/<type>/<m>: CpuBackend::matmul with quantized weights, 1 thread: the serving path
//     (activation quantization, weights repacked at first use, the machine's best level).
//   BM_MatmulStream/<type>/<threads>: one decode step's matmuls at batch 1 (m = 1) over 12 layers
//   of
//     TinyLlama-1.1B's shapes (q|k|v 2560 x 2048, o 2048 x 2048, gate|up 11264 x 2048, down
//     2048 x 5632), 1 or 2 threads, weights far larger than the caches: the weight stream of decode
//     without the model's other ops; counter: weight GB/s (compare bench/cpu/stream.c).
//   BM_AttentionDecode/<kv type>/<isa>/<batch>/<context>: paged attention of one decode step (one
//   query
//     token per sequence) over 30 layers' caches in SmolLM2-135M's shape (9 heads, 3 KV heads,
//     head_dim 64, blocks of 16 in shuffled order, laid out as the CPU backend keeps them:
//     kv_layout.h), 2 threads; counter: KV GB/s (K and V bytes read per step over its time). The
//     layers cycle through 512 MB of caches in one huge-page arena, so KV comes from memory as in
//     a real step.
//   BM_AttentionDecodeLayout/<kv type>/<layout>/<order>/<batch>/<context>: the same at the
//     AVX-512 level in each layout (apart: each layer's K and V in two arrays, the layout before
//     2026-11-28; block-records: a block's K and V together; head-units: the backend's) and block
//     order (shuffled, each sequence's in order, interleaved as sequences decoding together take
//     them).
//   BM_PoolJob/<threads>/<items>/<ns per item>: one ThreadPool::parallel_for of items that each
//     spin for about the given time (kCoarse claims, as decode-sized ops use): the cost of a job
//     boundary (hand-off, claims, the wait for the last chunk) next to the work it splits.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/gemm_q8a.h"
#include "backend/cpu/kv_layout.h"
#include "backend/cpu/paged_attention.h"
#include "util/host_memory.h"
#include "util/thread_pool.h"

namespace carpool {
namespace {

constexpr int64_t kK = 2048;
constexpr int64_t kN = 256;

std::vector<uint8_t> random_weights(DType t, int64_t rows, int64_t k) {
  std::mt19937 g(1);
  const DTypeInfo& info = dtype_info(t);
  std::vector<uint8_t> bytes(dtype_row_bytes(t, k) * static_cast<size_t>(rows));
  for (uint8_t& b : bytes) b = static_cast<uint8_t>(g());
  if (t == DType::kF16 || t == DType::kBF16 || t == DType::kF32) {
    // Finite values: small random floats.
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (int64_t i = 0; i < rows * k; ++i) {
      const float v = u(g);
      if (t == DType::kF32) std::memcpy(bytes.data() + 4 * i, &v, 4);
      const uint16_t h = t == DType::kF16 ? f32_to_f16(v) : f32_to_bf16(v);
      if (t != DType::kF32) std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
    return bytes;
  }
  for (size_t blk = 0; blk < bytes.size() / info.block_bytes; ++blk) {
    const uint16_t d = f32_to_f16(0.01f);
    uint8_t* p = bytes.data() + blk * info.block_bytes;
    size_t at = 0;  // where the block's f16 d is (then m or dmin, for the types with one)
    if (t == DType::kQ6_K) at = offsetof(BlockQ6_K, d);
    if (t == DType::kQ2_K) at = offsetof(BlockQ2_K, d);
    if (t == DType::kQ3_K) at = offsetof(BlockQ3_K, d);
    std::memcpy(p + at, &d, 2);
    if (t == DType::kQ4_1 || t == DType::kQ4_K || t == DType::kQ5_K || t == DType::kQ2_K) {
      std::memcpy(p + at + 2, &d, 2);
    }
  }
  return bytes;
}

std::vector<float> random_rows(int64_t m, int64_t k) {
  std::mt19937 g(2);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(m * k));
  for (float& v : x) v = nd(g);
  return x;
}

void BM_GemmQ8a(benchmark::State& state, DType t, CpuIsa isa) {
  if (!cpu_supports(isa)) {
    state.SkipWithError("instruction set not supported here");
    return;
  }
  const int64_t m = state.range(0);
  const std::vector<uint8_t> w = random_weights(t, kN, kK);
  const std::vector<float> x = random_rows(m, kK);
  std::vector<BlockQ8A> xq(static_cast<size_t>(m * kK / kQK));
  for (int64_t r = 0; r < m; ++r) quantize_row_q8a(x.data() + r * kK, xq.data() + r * kK / kQK, kK);
  std::vector<BlockQ8A> xu(xq.size());
  offset_q8a(xq.data(), xu.data(), static_cast<int64_t>(xq.size()));
  std::vector<float> y(static_cast<size_t>(m * kN));
  GemmQ8aArgs a;
  if (gemm_q8a_uses_offset_acts(isa, t)) a.x_u = xu.data();  // as the backend does
  std::vector<float> xd(xq.size()), xs(xq.size());
  split_q8a_scales(xq.data(), xd.data(), xs.data(), static_cast<int64_t>(xq.size()));
  a.x_d = xd.data();
  a.x_s = xs.data();
  a.wtype = t;
  a.w = reinterpret_cast<const char*>(w.data());
  a.w_row_bytes = dtype_row_bytes(t, kK);
  a.x = xq.data();
  a.m = m;
  a.k = kK;
  a.y = y.data();
  a.ldy = kN;
  for (auto _ : state) {
    gemm_q8a(isa, a, 0, kN);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(w.size()),
                                                     benchmark::Counter::kIsIterationInvariantRate,
                                                     benchmark::Counter::kIs1000);
  state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(m * kK * kN) / 1e9,
                                                benchmark::Counter::kIsIterationInvariantRate);
}

void BM_QuantizeQ8a(benchmark::State& state) {
  const std::vector<float> x = random_rows(1, kK);
  std::vector<BlockQ8A> xq(kK / kQK);
  for (auto _ : state) {
    quantize_row_q8a(x.data(), xq.data(), kK);
    benchmark::DoNotOptimize(xq.data());
  }
  state.SetItemsProcessed(state.iterations() * kK);
}

void BM_MatmulFloat(benchmark::State& state, DType t) {
  const int64_t m = state.range(0);
  std::unique_ptr<Backend> be = make_cpu_backend({.n_threads = 1});
  const std::vector<uint8_t> wb = random_weights(t, kN, kK);
  Tensor w = be->load_weight(HostWeight{t, wb.data(), kN, kK}).value();
  Tensor x = be->alloc(DType::kF32, m, kK).value();
  Tensor y = be->alloc(DType::kF32, m, kN).value();
  const std::vector<float> xs = random_rows(m, kK);
  be->upload(x, xs.data(), xs.size() * 4);
  be->matmul(y, x, w, nullptr);  // untimed: the backend packs a weight at its first use
  for (auto _ : state) be->matmul(y, x, w, nullptr);
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * m * kK * kN / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  be->free(x);
  be->free(y);
}

void BM_MatmulStream(benchmark::State& state, DType t) {
  constexpr int kLayers = 12;
  constexpr int64_t kHidden = 2048, kFfn = 5632;
  const int64_t shapes[4][2] = {
      {2560, kHidden}, {kHidden, kHidden}, {2 * kFfn, kHidden}, {kHidden, kFfn}};
  std::unique_ptr<Backend> be = make_cpu_backend({.n_threads = static_cast<int>(state.range(0))});
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<Tensor> ws;
  double weight_bytes = 0;
  for (int l = 0; l < kLayers; ++l) {
    for (const auto& s : shapes) {
      bytes.push_back(random_weights(t, s[0], s[1]));
      ws.push_back(be->load_weight(HostWeight{t, bytes.back().data(), s[0], s[1]}).value());
      weight_bytes += static_cast<double>(bytes.back().size());
    }
  }
  Tensor x[2] = {be->alloc(DType::kF32, 1, kFfn).value(), be->alloc(DType::kF32, 1, kFfn).value()};
  Tensor y = be->alloc(DType::kF32, 1, 2 * kFfn).value();
  const std::vector<float> xs = random_rows(1, kFfn);
  be->upload(x[0], xs.data(), static_cast<size_t>(kHidden) * 4);
  be->upload(x[1], xs.data(), xs.size() * 4);
  auto pass = [&] {
    for (const Tensor& w : ws) {
      Tensor xin = x[w.cols == kFfn ? 1 : 0];
      xin.cols = w.cols;
      Tensor out = y;
      out.cols = w.rows;
      be->matmul(out, xin, w, nullptr);
    }
  };
  pass();  // untimed: the backend packs each weight at its first use
  for (auto _ : state) pass();
  state.counters["weight_GB/s"] =
      benchmark::Counter(weight_bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  be->free(x[0]);
  be->free(x[1]);
  be->free(y);
}

// KV cache layouts of BM_AttentionDecodeLayout: where one layer's K, V and scales begin and the
// strides from there (PagedAttentionArgs).
enum class KvBenchLayout {
  kApart,         // all blocks' K, then all blocks' V, then the scales (before 2026-11-28)
  kBlockRecords,  // one record per block: K of every head | V rows | K scales | V scales
  kHeadUnits,     // one record per block, one unit per head: K | K scales | V | V scales
};
const char* layout_name(KvBenchLayout l) {
  return l == KvBenchLayout::kApart          ? "apart"
         : l == KvBenchLayout::kBlockRecords ? "block-records"
                                             : "head-units";
}
struct KvBenchGeometry {
  KvStrides st;
  int64_t k0 = 0, v0 = 0, ks0 = 0, vs0 = 0;  // byte offsets in the layer
  int64_t layer_bytes = 0;
};
KvBenchGeometry bench_geometry(KvBenchLayout l, int n_blocks, int bs, int n_kv, int hd, int elem,
                               bool scaled) {
  const int64_t vals = int64_t{bs} * hd * elem, sc = scaled ? int64_t{bs} * 4 : 0;
  KvBenchGeometry g;
  if (l == KvBenchLayout::kApart) {
    g.st = KvStrides::back_to_back(bs, n_kv, hd, elem);
    g.v0 = n_blocks * n_kv * vals;
    g.ks0 = 2 * g.v0;
    g.vs0 = g.ks0 + n_blocks * n_kv * sc;
    g.layer_bytes = g.vs0 + n_blocks * n_kv * sc;
  } else if (l == KvBenchLayout::kBlockRecords) {
    g.st = KvStrides::back_to_back(bs, n_kv, hd, elem);
    g.st.block = g.st.scale_block = 2 * n_kv * (vals + sc);
    g.v0 = n_kv * vals;
    g.ks0 = 2 * n_kv * vals;
    g.vs0 = g.ks0 + n_kv * sc;
    g.layer_bytes = n_blocks * g.st.block;
  } else {
    const int64_t unit = 2 * (vals + sc);
    g.st = {n_kv * unit, unit, unit, int64_t{hd} * elem, n_kv * unit, unit};
    g.ks0 = vals;
    g.v0 = vals + sc;
    g.vs0 = 2 * vals + sc;
    g.layer_bytes = n_blocks * g.st.block;
  }
  return g;
}

// The layout of CpuBackend::alloc_kv's caches (kv_layout.h).
constexpr KvBenchLayout kEngineKvLayout = KvBenchLayout::kHeadUnits;

// Block orders of a sequence: shuffled over the cache, each sequence's blocks in order (a prompt
// prefilled at once), or interleaved (sequence s's block i at i * batch + s: sequences decoding
// side by side, each taking a block every block_size steps from the free list).
enum class BlockOrder { kShuffled, kInOrder, kInterleaved };
const char* order_name(BlockOrder o) {
  return o == BlockOrder::kShuffled  ? "shuffled"
         : o == BlockOrder::kInOrder ? "in-order"
                                     : "interleaved";
}

void BM_AttentionDecode(benchmark::State& state, CpuIsa isa, DType kv, KvBenchLayout layout,
                        BlockOrder order) {
  if (!cpu_supports(isa)) {
    state.SkipWithError("instruction set not supported here");
    return;
  }
  constexpr int kLayers = 30, kHeads = 9, kKvHeads = 3, kHeadDim = 64, kBlock = 16;
  const int batch = static_cast<int>(state.range(0)), ctx = static_cast<int>(state.range(1));
  const int blocks_per_seq = (ctx + kBlock - 1) / kBlock;
  const int n_blocks = batch * blocks_per_seq;
  const int64_t kv_cols = kKvHeads * kHeadDim;
  const int elem = static_cast<int>(dtype_row_bytes(kv, 1));
  const KvBenchGeometry g =
      bench_geometry(layout, n_blocks, kBlock, kKvHeads, kHeadDim, elem, kv == DType::kI8);
  const auto layer_bytes = static_cast<size_t>((g.layer_bytes + 63) / 64 * 64);
  // Enough distinct caches (at least 512 MB in all) that a step finds none of its layers in the
  // last-level cache, as in serving, where the weights stream through it between layers.
  const int n_caches = std::max<int>(kLayers, static_cast<int>((512ull << 20) / layer_bytes) + 1);
  // One arena for all of them, allocated as the engine allocates its KV cache (host_alloc: huge
  // pages), cache l at l * layer_bytes.
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  const std::unique_ptr<uint8_t[], Free> arena(
      static_cast<uint8_t*>(host_alloc(static_cast<size_t>(n_caches) * layer_bytes)));
  if (!arena) {
    state.SkipWithError("out of memory");
    return;
  }
  // Byte offsets in a layer of (slot, col) of K and of V, and of the scale of (slot, head).
  auto unit = [&](int64_t slot, int64_t head, int64_t head_stride) {
    return slot / kBlock * g.st.block + head * head_stride;
  };
  auto k_at = [&](int64_t slot, int64_t col) {
    return g.k0 + unit(slot, col / kHeadDim, g.st.k_head) +
           (col % kHeadDim * kBlock + slot % kBlock) * elem;
  };
  auto v_at = [&](int64_t slot, int64_t col) {
    return g.v0 + unit(slot, col / kHeadDim, g.st.v_head) + slot % kBlock * g.st.v_row +
           col % kHeadDim * elem;
  };
  auto scale_at = [&](int side, int64_t slot, int head) {
    return (side == 0 ? g.ks0 : g.vs0) + slot / kBlock * g.st.scale_block + head * g.st.scale_head +
           slot % kBlock * 4;
  };
  auto at = [&](int l, int64_t off) {
    return arena.get() + static_cast<size_t>(l) * layer_bytes + off;
  };
  const std::vector<float> fill = random_rows(kBlock, kv_cols);
  auto put = [&](uint8_t* dst, float x) {
    if (elem == 4) std::memcpy(dst, &x, 4);
    const uint16_t h = f32_to_f16(x);
    if (elem == 2) std::memcpy(dst, &h, 2);
    if (elem == 1) *reinterpret_cast<int8_t*>(dst) = static_cast<int8_t>(std::lrint(x * 127.f));
  };
  const int64_t rows = int64_t{n_blocks} * kBlock;
  for (int l = 0; l < n_caches; ++l) {
    for (int64_t slot = 0; slot < rows; ++slot) {
      for (int64_t c = 0; c < kv_cols; ++c) {
        const size_t j = static_cast<size_t>(slot * kv_cols + c);
        put(at(l, k_at(slot, c)), fill[j % fill.size()]);
        put(at(l, v_at(slot, c)), fill[(j * 7) % fill.size()]);
      }
      for (int side = 0; side < (kv == DType::kI8 ? 2 : 0); ++side) {
        for (int h = 0; h < kKvHeads; ++h) {
          const float x = 1.f / 127.f;
          std::memcpy(at(l, scale_at(side, slot, h)), &x, 4);
        }
      }
    }
  }
  std::vector<int32_t> table(static_cast<size_t>(n_blocks));
  std::iota(table.begin(), table.end(), 0);
  if (order == BlockOrder::kShuffled) std::shuffle(table.begin(), table.end(), std::mt19937(3));
  if (order == BlockOrder::kInterleaved) {
    for (int s = 0; s < batch; ++s) {
      for (int i = 0; i < blocks_per_seq; ++i)
        table[static_cast<size_t>(s * blocks_per_seq + i)] = i * batch + s;
    }
  }
  std::vector<int32_t> starts(static_cast<size_t>(batch) + 1),
      lens(static_cast<size_t>(batch), ctx);
  std::iota(starts.begin(), starts.end(), 0);
  const std::vector<float> q = random_rows(batch, kHeads * kHeadDim);
  std::vector<float> out(q.size());
  ThreadPool pool(2);
  PagedAttentionArgs a;
  a.q = q.data();
  a.out = out.data();
  a.query_start = starts.data();
  a.kv_len = lens.data();
  a.block_tables = table.data();
  a.n_seqs = batch;
  a.max_blocks_per_seq = blocks_per_seq;
  a.block_size = kBlock;
  a.n_heads = kHeads;
  a.n_kv_heads = kKvHeads;
  a.head_dim = kHeadDim;
  a.scale = 0.125f;
  a.kv_dtype = kv;
  a.strides = g.st;
  std::vector<std::vector<float>> scratch(2, std::vector<float>(paged_attention_scratch_floats(a)));
  int next = 0;
  for (auto _ : state) {
    for (int l = 0; l < kLayers; ++l, next = (next + 1) % n_caches) {
      a.k_cache = at(next, g.k0);
      a.v_cache = at(next, g.v0);
      if (kv == DType::kI8) {
        a.k_scales = reinterpret_cast<const float*>(at(next, g.ks0));
        a.v_scales = reinterpret_cast<const float*>(at(next, g.vs0));
      }
      paged_attention(isa, a, pool, scratch.data());
    }
    benchmark::DoNotOptimize(out.data());
  }
  const double token_bytes = 2.0 * kv_cols * elem + (kv == DType::kI8 ? 2.0 * kKvHeads * 4 : 0.0);
  state.counters["KV_GB/s"] = benchmark::Counter(kLayers * batch * ctx * token_bytes / 1e9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// Spins for about `ns` nanoseconds of core time (calibrated once against the steady clock).
void spin_ns(int64_t ns) {
  static const double iters_per_ns = [] {
    volatile uint64_t sink = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (uint64_t i = 0; i < 50'000'000; ++i) sink = sink + i;
    const double el =
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    return 50'000'000 / el;
  }();
  volatile uint64_t sink = 0;
  const auto n = static_cast<uint64_t>(static_cast<double>(ns) * iters_per_ns);
  for (uint64_t i = 0; i < n; ++i) sink = sink + i;
}

void BM_PoolJob(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const int64_t items = state.range(1), ns = state.range(2);
  ThreadPool pool(threads);
  spin_ns(1);
  for (auto _ : state) {
    pool.parallel_for(
        items, 1, [&](int64_t b, int64_t e, int) { spin_ns((e - b) * ns); },
        ThreadPool::Claims::kCoarse);
  }
  state.counters["ideal_us"] = static_cast<double>(items * ns) / threads / 1e3;
}

void register_all() {
  for (DType t :
       {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K}) {
    for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
      const std::string name =
          std::string("BM_GemmQ8a/") + std::string(dtype_name(t)) + "/" + cpu_isa_name(isa);
      auto* b = benchmark::RegisterBenchmark(name.c_str(), BM_GemmQ8a, t, isa);
      b->Arg(1)->Arg(16)->Arg(64);
    }
  }
  benchmark::RegisterBenchmark("BM_QuantizeQ8a", BM_QuantizeQ8a);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    const std::string name = std::string("BM_MatmulFloat/") + std::string(dtype_name(t));
    benchmark::RegisterBenchmark(name.c_str(), BM_MatmulFloat, t)
        ->Arg(1)
        ->Arg(16)
        ->Arg(64)
        ->Arg(256);
  }
  for (DType t :
       {DType::kQ4_0, DType::kQ4_1, DType::kQ5_0, DType::kQ5_1, DType::kQ8_0, DType::kQ2_K,
        DType::kQ3_K, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS}) {
    const std::string name = std::string("BM_Matmul/") + std::string(dtype_name(t));
    benchmark::RegisterBenchmark(name.c_str(), BM_MatmulFloat, t)
        ->Arg(1)
        ->Arg(16)
        ->Arg(32)
        ->Arg(64);
  }
  for (DType t :
       {DType::kQ4_0, DType::kQ4_1, DType::kQ8_0, DType::kQ2_K, DType::kQ3_K, DType::kQ4_K,
        DType::kQ5_K, DType::kQ6_K, DType::kIQ4_NL, DType::kIQ4_XS, DType::kF16, DType::kBF16}) {
    const std::string name = std::string("BM_MatmulStream/") + std::string(dtype_name(t));
    benchmark::RegisterBenchmark(name.c_str(), BM_MatmulStream, t)->Arg(1)->Arg(2)->UseRealTime();
  }
  benchmark::RegisterBenchmark("BM_PoolJob", BM_PoolJob)
      ->ArgsProduct({{1, 2}, {16, 192}, {250, 1000}})
      ->UseRealTime();
  for (DType kv : {DType::kF32, DType::kF16, DType::kI8}) {
    for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512}) {
      const std::string name = std::string("BM_AttentionDecode/") + std::string(dtype_name(kv)) +
                               "/" + cpu_isa_name(isa);
      benchmark::RegisterBenchmark(name.c_str(), BM_AttentionDecode, isa, kv, kEngineKvLayout,
                                   BlockOrder::kShuffled)
          ->Args({16, 48})
          ->Args({16, 160})
          ->Args({16, 512})
          ->Args({1, 2048})
          ->UseRealTime();
    }
    for (KvBenchLayout l :
         {KvBenchLayout::kApart, KvBenchLayout::kBlockRecords, KvBenchLayout::kHeadUnits}) {
      for (BlockOrder o : {BlockOrder::kShuffled, BlockOrder::kInOrder, BlockOrder::kInterleaved}) {
        const std::string name = std::string("BM_AttentionDecodeLayout/") +
                                 std::string(dtype_name(kv)) + "/" + layout_name(l) + "/" +
                                 order_name(o);
        benchmark::RegisterBenchmark(name.c_str(), BM_AttentionDecode, CpuIsa::kAvx512, kv, l, o)
            ->Args({16, 160})
            ->Args({16, 1024})
            ->Args({1, 2048})
            ->UseRealTime();
      }
    }
  }
}

}  // namespace
}  // namespace carpool

int main(int argc, char** argv) {
  carpool::register_all();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
