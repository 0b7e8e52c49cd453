// carpool-cuda-bench: the ceilings the CUDA backend is judged against, measured on this GPU.
//
//   copy      device-to-device copy bandwidth (bytes read + written), the MBU denominator
//   gemm      backend matmul (bf16 x bf16, f32 accumulate) at 8192^3 and at Llama-3.1-8B's
//             decode/prefill widths for batch 1, 64, 256: TFLOP/s and weight bytes streamed/s;
//             at batch 1, 4 and 8 also with cuBLAS instead of the small-batch kernel ("cublas")
//   attention paged decode attention (Llama-3.1-8B heads) at several batch x context sizes:
//             KV bytes read/s; causal prefill at 1024 and 4096 tokens: TFLOP/s. Rows ending in
//             "-gen" run the generic kernel on the same shapes (A/B against the fast kernels).
//
// Timing: CUDA events on the backend's stream after warm-up; each sample is a group of calls
// long enough to dwarf event overhead; the median of the samples is reported. Weights and KV
// caches are rotated over copies totalling more than twice the L2 cache, so no figure is an L2
// figure.
//
//   carpool-cuda-bench [--json FILE] [--device N] [--quick]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_check.h"
#include "json_writer.h"

using namespace carpool;

namespace {

struct Row {
  std::string bench, shape;
  double ms = 0;           // median time per call
  double tflops = 0;       // 0 when not meaningful
  double gbps = 0;         // bytes moved per second / 1e9
  std::string bytes_note;  // which bytes gbps counts
};

class Timer {
 public:
  explicit Timer(cudaStream_t s) : s_(s) {
    CUDA_CHECK(cudaEventCreate(&a_));
    CUDA_CHECK(cudaEventCreate(&b_));
  }
  ~Timer() {
    cudaEventDestroy(a_);
    cudaEventDestroy(b_);
  }
  // Median ms per call of fn(i) (i counts calls, for rotating inputs).
  template <typename F>
  double median_ms(F&& fn, int samples) {
    int calls = 0;
    for (int i = 0; i < 3; ++i) fn(calls++);  // warm-up (and cuBLAS heuristics)
    CUDA_CHECK(cudaStreamSynchronize(s_));
    // Calls per sample so that one sample is at least ~0.5 ms.
    CUDA_CHECK(cudaEventRecord(a_, s_));
    fn(calls++);
    CUDA_CHECK(cudaEventRecord(b_, s_));
    CUDA_CHECK(cudaEventSynchronize(b_));
    float one = 0;
    CUDA_CHECK(cudaEventElapsedTime(&one, a_, b_));
    const int group = std::clamp(static_cast<int>(0.5 / std::max(one, 1e-4f)), 1, 200);
    std::vector<double> t;
    for (int s = 0; s < samples; ++s) {
      CUDA_CHECK(cudaEventRecord(a_, s_));
      for (int g = 0; g < group; ++g) fn(calls++);
      CUDA_CHECK(cudaEventRecord(b_, s_));
      CUDA_CHECK(cudaEventSynchronize(b_));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, a_, b_));
      t.push_back(double(ms) / group);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }

 private:
  cudaStream_t s_;
  cudaEvent_t a_, b_;
};

Tensor must(Result<Tensor> r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "carpool-cuda-bench: %s: %s\n", what, r.error().c_str());
    std::exit(3);
  }
  return *r;
}

// Copies of a buffer needed so that rotating over them touches more than 2x L2.
int rotation(size_t bytes, size_t l2) {
  return static_cast<int>(std::clamp<size_t>(2 * l2 / std::max<size_t>(bytes, 1) + 1, 1, 64));
}

void bench_copy(cuda::CudaBackend& b, Timer& timer, int samples, std::vector<Row>& rows) {
  const size_t bytes = size_t{1} << 30;
  Tensor src = must(b.alloc(DType::kBF16, 1, int64_t(bytes / 2)), "alloc");
  Tensor dst = must(b.alloc(DType::kBF16, 1, int64_t(bytes / 2)), "alloc");
  CUDA_CHECK(cudaMemsetAsync(src.data, 1, bytes, b.stream()));
  double ms = timer.median_ms(
      [&](int) {
        CUDA_CHECK(
            cudaMemcpyAsync(dst.data, src.data, bytes, cudaMemcpyDeviceToDevice, b.stream()));
      },
      samples);
  rows.push_back({"copy", "1 GiB d2d", ms, 0, 2.0 * bytes / (ms * 1e-3) / 1e9, "read+written"});
  b.free(src);
  b.free(dst);
}

void bench_gemm(cuda::CudaBackend& b, Timer& timer, size_t l2, int samples, int64_t m, int64_t k,
                int64_t n, const std::string& label, std::vector<Row>& rows) {
  const size_t w_bytes = size_t(n) * k * 2;
  const int copies = rotation(w_bytes, l2);
  std::vector<Tensor> ws;
  for (int i = 0; i < copies; ++i)
    ws.push_back(must(b.alloc_random_weight(DType::kBF16, n, k, 100 + i, 0.02f), "weight"));
  Tensor x = must(b.alloc_random_weight(DType::kBF16, m, k, 7, 1.f), "x");
  Tensor y = must(b.alloc(DType::kBF16, m, n), "y");
  const double ms =
      timer.median_ms([&](int i) { b.matmul(y, x, ws[size_t(i) % ws.size()], nullptr); }, samples);
  const double flops = 2.0 * m * n * k;
  char shape[96];  // (snprintf, as in bench_attention)
  std::snprintf(shape, sizeof shape, " m%lld %lld->%lld", static_cast<long long>(m),
                static_cast<long long>(k), static_cast<long long>(n));
  rows.push_back({"gemm", label + shape, ms, flops / (ms * 1e-3) / 1e12,
                  w_bytes / (ms * 1e-3) / 1e9, "weights"});
  for (Tensor& w : ws) b.free(w);
  b.free(x);
  b.free(y);
}

// Llama-3.1-8B attention: 32 query heads, 8 KV heads, head_dim 128, blocks of 16.
// generic: the generic kernel instead of the fast ones; simt: the SIMT decode kernel instead of
// the tensor-core one; pairs: the paired prefill kernel (A/B on the same card and run).
void bench_attention(cuda::CudaBackend& b, Timer& timer, size_t l2, int samples, int batch, int ctx,
                     bool prefill, std::vector<Row>& rows, bool generic = false, bool simt = false,
                     bool pairs = false, bool w4 = false) {
  const int n_heads = 32, n_kv = 8, hd = 128, bs = 16;
  const int blocks_per_seq = (ctx + bs - 1) / bs;
  const size_t layer_bytes = size_t(batch) * blocks_per_seq * bs * n_kv * hd * 2 * 2;
  const int layers = std::min(rotation(layer_bytes, l2), 32);
  KvCacheConfig kc{layers, batch * blocks_per_seq, bs, n_kv, hd};
  auto cache = b.alloc_kv(kc);
  if (!cache) {
    std::fprintf(stderr, "attention b%d ctx%d skipped: %s\n", batch, ctx, cache.error().c_str());
    return;
  }
  for (int l = 0; l < layers; ++l) {
    cuda::launch_random_bf16(b.launch_ctx(), cache->k[l].data, cache->k[l].numel(), 11 + l, 1.f);
    cuda::launch_random_bf16(b.launch_ctx(), cache->v[l].data, cache->v[l].numel(), 51 + l, 1.f);
  }
  const int q_len = prefill ? ctx : 1;
  const int n_tokens = batch * q_len;
  std::vector<int32_t> qstart(batch + 1), kv_len(batch, ctx),
      tables(size_t(batch) * blocks_per_seq);
  for (int s = 0; s <= batch; ++s) qstart[s] = s * q_len;
  for (size_t i = 0; i < tables.size(); ++i) tables[i] = int32_t(i);  // contiguous, per sequence
  Tensor t_qs = must(b.alloc(DType::kI32, 1, batch + 1), "meta");
  Tensor t_kv = must(b.alloc(DType::kI32, 1, batch), "meta");
  Tensor t_bt = must(b.alloc(DType::kI32, batch, blocks_per_seq), "meta");
  b.upload(t_qs, qstart.data(), qstart.size() * 4);
  b.upload(t_kv, kv_len.data(), kv_len.size() * 4);
  b.upload(t_bt, tables.data(), tables.size() * 4);
  Tensor q = must(b.alloc_random_weight(DType::kBF16, n_tokens, n_heads * hd, 3, 1.f), "q");
  Tensor out = must(b.alloc(DType::kBF16, n_tokens, n_heads * hd), "out");
  AttentionMeta meta;
  meta.n_tokens = n_tokens;
  meta.n_seqs = batch;
  meta.max_q_len = q_len;
  meta.max_kv_len = ctx;
  meta.max_blocks_per_seq = blocks_per_seq;
  meta.block_size = bs;
  meta.query_start = t_qs;
  meta.kv_len = t_kv;
  meta.block_tables = t_bt;
  meta.n_heads = n_heads;
  meta.n_kv_heads = n_kv;
  meta.head_dim = hd;
  meta.scale = 1.f / std::sqrt(float(hd));
  const cuda::LaunchCtx before = b.launch_ctx();  // the settings to return to (environment's)
  b.set_generic_attention(generic);
  b.set_simt_decode_attention(simt);
  b.set_prefill_pairs(pairs);
  if (w4) b.set_decode_shape(4, 0);  // 4-warp CTAs whatever the batch
  const double ms = timer.median_ms(
      [&](int i) {
        const int l = i % layers;
        b.attention(out, q, cache->k[l], cache->v[l], meta);
      },
      samples);
  b.set_generic_attention(before.generic_attention);
  b.set_simt_decode_attention(before.simt_decode_attention);
  b.set_prefill_pairs(before.prefill_pairs);
  b.set_decode_shape(before.decode_warps, before.decode_ctas_per_sm);
  const double kv_bytes = double(batch) * ctx * n_kv * hd * 2 * 2;
  // FLOPs: QK^T and PV, causal half for prefill.
  const double flops = 4.0 * batch * n_heads * hd * (prefill ? 0.5 * ctx * ctx : double(ctx));
  char shape[64];  // (snprintf: GCC 12 warns falsely on a std::string operator+ chain, bug 105329)
  std::snprintf(shape, sizeof shape, "b%d ctx%d h32/kv8 d128", batch, ctx);
  const char* variant = generic   ? "-gen"
                        : simt    ? "-simt"
                        : pairs   ? "-pairs"
                        : w4      ? "-w4"
                        : prefill ? "-single"
                                  : "";
  rows.push_back({std::string(prefill ? "attn-prefill" : "attn-decode") + variant, shape, ms,
                  flops / (ms * 1e-3) / 1e12, kv_bytes / (ms * 1e-3) / 1e9, "kv read once"});
  for (Tensor& t : cache->k) b.free(t);
  for (Tensor& t : cache->v) b.free(t);
  for (Tensor* t : {&t_qs, &t_kv, &t_bt, &q, &out}) b.free(*t);
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  bool quick = false;
  CudaBackendOptions opts;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--json" && i + 1 < argc)
      json_path = argv[++i];
    else if (a == "--device" && i + 1 < argc)
      opts.device = std::atoi(argv[++i]);
    else if (a == "--quick")
      quick = true;
    else {
      std::fprintf(stderr, "usage: carpool-cuda-bench [--json FILE] [--device N] [--quick]\n");
      return 2;
    }
  }
  auto made = make_cuda_backend(opts);
  if (!made) {
    std::fprintf(stderr, "carpool-cuda-bench: %s\n", made.error().c_str());
    return 2;
  }
  auto& b = static_cast<cuda::CudaBackend&>(**made);
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, opts.device));
  const size_t l2 = size_t(prop.l2CacheSize);
  int driver = 0, runtime = 0;
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  std::printf("device: %s, %d SMs, L2 %zu MiB, %.1f GiB, driver API %d, runtime %d\n", prop.name,
              prop.multiProcessorCount, l2 >> 20, double(prop.totalGlobalMem) / (1 << 30), driver,
              runtime);
  const int samples = quick ? 5 : 15;
  Timer timer(b.stream());
  std::vector<Row> rows;

  bench_copy(b, timer, samples, rows);
  bench_gemm(b, timer, l2, samples, 8192, 8192, 8192, "square", rows);
  // Llama-3.1-8B linear layers: fused qkv, o, fused gate+up, down, lm_head.
  struct Shape {
    int64_t k, n;
    const char* name;
  };
  const Shape shapes[] = {{4096, 6144, "qkv"},   {4096, 4096, "o"},     {4096, 28672, "gate_up"},
                          {14336, 4096, "down"}, {4096, 14336, "gate"}, {4096, 128256, "lm_head"}};
  for (int m : {1, 64, 256}) {
    for (const Shape& s : shapes) {
      if (quick && s.n == 128256 && m != 1) continue;
      bench_gemm(b, timer, l2, samples, m, s.k, s.n, s.name, rows);
    }
  }
  // Small batches: the streaming kernel (gemv_kernels.cu) against cuBLAS on the same shapes,
  // same run, whatever the default dispatch (CudaBackendOptions::Gemv) picks.
  using Gemv = CudaBackendOptions::Gemv;
  for (int m : {1, 4, 8}) {
    for (const Shape& s : shapes) {
      if (s.n == 128256 || (quick && s.n == 14336)) continue;
      std::string label = s.name;
      b.set_small_batch_gemv(Gemv::kAll);
      bench_gemm(b, timer, l2, samples, m, s.k, s.n, label + " gemv", rows);
      if (m == 1) {  // 1, 2 and 4 weight rows per warp (A/B; "gemv" is the default choice)
        const int rows_before = b.launch_ctx().gemv_rows_m1;
        b.set_gemv_rows_m1(1);
        bench_gemm(b, timer, l2, samples, m, s.k, s.n, label + " gemv-r1", rows);
        b.set_gemv_rows_m1(2);
        bench_gemm(b, timer, l2, samples, m, s.k, s.n, label + " gemv-r2", rows);
        b.set_gemv_rows_m1(4);
        bench_gemm(b, timer, l2, samples, m, s.k, s.n, label + " gemv-r4", rows);
        b.set_gemv_rows_m1(rows_before);
      }
      b.set_small_batch_gemv(Gemv::kOff);
      bench_gemm(b, timer, l2, samples, m, s.k, s.n, label + " cublas", rows);
      b.set_small_batch_gemv(Gemv::kAuto);
    }
  }
  bench_gemm(b, timer, l2, samples, 4096, 4096, 14336, "prefill gate", rows);
  for (auto [batch, ctx] :
       std::vector<std::pair<int, int>>{{1, 1024}, {1, 8192}, {16, 4096}, {64, 2048}, {256, 1024}})
    bench_attention(b, timer, l2, samples, batch, ctx, false, rows);
  // Short contexts (the decode benchmarks' 128-160 positions), tensor-core and SIMT kernels.
  for (auto [batch, ctx] : std::vector<std::pair<int, int>>{{64, 160}, {256, 160}, {256, 1024}}) {
    if (ctx == 160) bench_attention(b, timer, l2, samples, batch, ctx, false, rows);
    bench_attention(b, timer, l2, samples, batch, ctx, false, rows, false, /*simt=*/true);
  }
  // 4-warp CTAs whatever the batch (the default picks 2 warps once one wave of 4-warp CTAs
  // cannot hold the batch), same run.
  for (auto [batch, ctx] : std::vector<std::pair<int, int>>{
           {1, 1024}, {16, 4096}, {64, 2048}, {64, 160}, {256, 160}, {256, 1024}})
    bench_attention(b, timer, l2, samples, batch, ctx, false, rows, false, false, false,
                    /*w4=*/true);
  for (auto [batch, ctx] : std::vector<std::pair<int, int>>{{1, 1024}, {16, 4096}, {256, 1024}})
    bench_attention(b, timer, l2, samples, batch, ctx, false, rows, /*generic=*/true);
  bench_attention(b, timer, l2, samples, 1, 1024, true, rows);
  bench_attention(b, timer, l2, quick ? 3 : 5, 1, 4096, true, rows);
  bench_attention(b, timer, l2, samples, 1, 1024, true, rows, false, false, /*pairs=*/true);
  bench_attention(b, timer, l2, quick ? 3 : 5, 1, 4096, true, rows, false, false, /*pairs=*/true);
  bench_attention(b, timer, l2, 3, 1, 4096, true, rows, /*generic=*/true);

  std::printf("\n%-13s %-36s %10s %9s %10s  %s\n", "bench", "shape", "ms", "TFLOP/s", "GB/s",
              "bytes");
  for (const Row& r : rows)
    std::printf("%-13s %-36s %10.4f %9.1f %10.1f  %s\n", r.bench.c_str(), r.shape.c_str(), r.ms,
                r.tflops, r.gbps, r.bytes_note.c_str());
  if (!json_path.empty()) {
    std::FILE* f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
    using cuda_tools::json_number;
    using cuda_tools::json_string;
    std::fprintf(f,
                 "{\"tool\": \"carpool-cuda-bench\", \"device\": %s, \"sm_count\": %d, "
                 "\"l2_bytes\": %zu, \"driver\": %d, \"runtime\": %d, \"rows\": [\n",
                 json_string(prop.name).c_str(), prop.multiProcessorCount, l2, driver, runtime);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f,
                   "  {\"bench\": %s, \"shape\": %s, \"ms\": %s, \"tflops\": %s, \"gbps\": %s, "
                   "\"bytes\": %s}%s\n",
                   json_string(r.bench).c_str(), json_string(r.shape).c_str(),
                   json_number(r.ms).c_str(), json_number(r.tflops).c_str(),
                   json_number(r.gbps).c_str(), json_string(r.bytes_note).c_str(),
                   i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "]}\n");
    std::fclose(f);
  }
  return 0;
}
