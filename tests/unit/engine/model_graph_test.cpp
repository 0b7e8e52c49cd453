// LlamaModel's graph steps (pure-decode steps padded to a bucket and handed to
// Backend::run_graph), checked on the CPU:
//  - decode_graph_shape: batch and context buckets, caps from the limits, distinct keys;
//  - a backend that claims graphs and, like a real recording, requires every call with the same
//    key to make the very same op calls (addresses, shapes, scalars): the model's padded steps
//    must satisfy that, give the same logits as the unpadded steps of a plain CPU backend, and
//    leave the KV cache exactly as the plain steps do (padding rows never write it).
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/llama.h"

namespace carpool {
namespace {

ModelLimits limits_of(int seqs, int blocks_per_seq, int tokens = 512) {
  ModelLimits l;
  l.max_batch_tokens = tokens;
  l.max_seqs = seqs;
  l.max_logit_rows = seqs;
  l.max_blocks_per_seq = blocks_per_seq;
  return l;
}

TEST(DecodeGraphShape, BatchBuckets) {
  const ModelLimits l = limits_of(512, 512);
  const std::vector<std::pair<int, int>> want = {{1, 1},    {2, 2},     {3, 4},    {5, 8},
                                                 {9, 16},   {17, 32},   {33, 64},  {64, 64},
                                                 {65, 128}, {200, 256}, {256, 256}};
  for (auto [n, rows] : want) EXPECT_EQ(decode_graph_shape(n, 100, 16, l).rows, rows) << n;
  EXPECT_EQ(decode_graph_shape(257, 100, 16, l).rows, 0);  // beyond kMaxGraphBatch: direct
  EXPECT_EQ(decode_graph_shape(0, 100, 16, l).rows, 0);
}

TEST(DecodeGraphShape, CapsFromLimits) {
  // Padding may not pass any limit: the cap itself becomes the bucket.
  EXPECT_EQ(decode_graph_shape(3, 10, 16, limits_of(3, 64)).rows, 3);
  EXPECT_EQ(decode_graph_shape(5, 10, 16, limits_of(6, 64)).rows, 6);
  EXPECT_EQ(decode_graph_shape(7, 10, 16, limits_of(6, 64)).rows, 0);
  EXPECT_EQ(decode_graph_shape(5, 10, 16, limits_of(64, 64, /*tokens=*/4)).rows, 0);
  ModelLimits few_logits = limits_of(64, 64);
  few_logits.max_logit_rows = 2;
  EXPECT_EQ(decode_graph_shape(2, 10, 16, few_logits).rows, 2);
  EXPECT_EQ(decode_graph_shape(3, 10, 16, few_logits).rows, 0);
}

TEST(DecodeGraphShape, ContextBuckets) {
  const ModelLimits l = limits_of(64, 1024);  // 16384 tokens of context
  const std::vector<std::pair<int, int>> want = {
      {1, 256},    {256, 256},   {257, 384},   {384, 384},   {385, 512},    {513, 768},
      {769, 1024}, {1025, 1536}, {4097, 6144}, {8192, 8192}, {16384, 16384}};
  for (auto [kv, bucket] : want) {
    DecodeGraphShape g = decode_graph_shape(4, kv, 16, l);
    EXPECT_EQ(g.kv_bucket, bucket) << kv;
    EXPECT_GE(g.kv_bucket, kv);
    EXPECT_EQ(g.blocks_per_seq, (bucket + 15) / 16) << kv;
  }
  // Never beyond the limits' context; a length beyond it is not a graph step.
  EXPECT_EQ(decode_graph_shape(4, 150, 16, limits_of(64, 12)).kv_bucket, 192);
  EXPECT_EQ(decode_graph_shape(4, 150, 16, limits_of(64, 12)).blocks_per_seq, 12);
  EXPECT_EQ(decode_graph_shape(4, 193, 16, limits_of(64, 12)).rows, 0);
}

TEST(DecodeGraphShape, KeysSeparateShapes) {
  const ModelLimits l = limits_of(256, 1024);
  std::map<uint64_t, std::string> seen;
  for (int n : {1, 2, 3, 8, 100, 256}) {
    for (int kv : {1, 300, 700, 5000}) {
      for (int bs : {16, 32}) {
        DecodeGraphShape g = decode_graph_shape(n, kv, bs, l);
        const std::string shape =
            std::to_string(g.rows) + "/" + std::to_string(g.kv_bucket) + "/" + std::to_string(bs);
        auto [it, fresh] = seen.emplace(g.key, shape);
        EXPECT_EQ(it->second, shape) << "one key for two shapes";
      }
    }
  }
}

// A CPU backend that claims graphs. Each run_graph call runs `enqueue` directly while logging
// every op call with all its arguments; calls with a key seen before must log exactly what the
// first one did, as a real recording would replay it.
class RecordingCheckBackend final : public Backend {
 public:
  RecordingCheckBackend() : cpu_(make_cpu_backend(exact_options())) {}

  std::string name() const override { return "cpu-graph-check"; }
  std::string device_name() const override { return cpu_->device_name(); }
  DType activation_dtype() const override { return cpu_->activation_dtype(); }
  BackendMemoryInfo memory_info() const override { return cpu_->memory_info(); }
  Result<Tensor> alloc(DType t, int64_t r, int64_t c) override { return cpu_->alloc(t, r, c); }
  void free(Tensor& t) override { cpu_->free(t); }
  Result<Tensor> load_weight(const HostWeight& w) override { return cpu_->load_weight(w); }
  Result<KvCache> alloc_kv(const KvCacheConfig& c) override { return cpu_->alloc_kv(c); }
  std::vector<float> kv_cache_row(const Tensor& cache, int64_t slot) override {
    return cpu_->kv_cache_row(cache, slot);
  }
  void upload(Tensor dst, const void* host, size_t bytes) override {
    if (recording_) ++uploads_inside_;
    cpu_->upload(dst, host, bytes);
  }
  void download(void* host, const Tensor& src, size_t bytes) override {
    if (recording_) ++uploads_inside_;
    cpu_->download(host, src, bytes);
  }
  void synchronize() override { cpu_->synchronize(); }

  void embed(Tensor out, const Tensor& table, const Tensor& ids) override {
    log("embed", {out, table, ids});
    cpu_->embed(out, table, ids);
  }
  void rmsnorm(Tensor out, const Tensor& x, const Tensor& w, float eps) override {
    log("rmsnorm", {out, x, w}, {eps});
    cpu_->rmsnorm(out, x, w, eps);
  }
  void add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& w, Tensor out,
                   float eps) override {
    log("add_rmsnorm", {residual, x, w, out}, {eps});
    cpu_->add_rmsnorm(residual, x, w, out, eps);
  }
  void matmul(Tensor out, const Tensor& x, const Tensor& w, const Tensor* bias) override {
    log("matmul", bias ? std::vector<Tensor>{out, x, w, *bias} : std::vector<Tensor>{out, x, w});
    cpu_->matmul(out, x, w, bias);
  }
  void rope(Tensor x, const Tensor& positions, const Tensor& inv_freq, int n_heads, int head_dim,
            RopeStyle style) override {
    log("rope", {x, positions, inv_freq}, {double(n_heads), double(head_dim), double(style)});
    cpu_->rope(x, positions, inv_freq, n_heads, head_dim, style);
  }
  // Skips rows whose slot is negative, as Backend::run_graph asks of graph backends.
  void kv_write(Tensor k_cache, Tensor v_cache, const Tensor& k, const Tensor& v,
                const Tensor& slots) override {
    log("kv_write", {k_cache, v_cache, k, v, slots});
    const auto* s = static_cast<const int32_t*>(slots.data);
    for (int64_t i = 0; i < k.rows; ++i) {
      if (s[i] < 0) continue;
      Tensor one = slots;
      one.data = const_cast<int32_t*>(s + i);
      one.cols = 1;
      cpu_->kv_write(k_cache, v_cache, k.rows_view(i, 1), v.rows_view(i, 1), one);
    }
  }
  void attention(Tensor out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                 const AttentionMeta& m) override {
    log("attention", {out, q, k_cache, v_cache, m.query_start, m.kv_len, m.block_tables},
        {double(m.n_tokens), double(m.n_seqs), double(m.max_q_len), double(m.max_kv_len),
         double(m.max_blocks_per_seq), double(m.block_size), double(m.n_heads),
         double(m.n_kv_heads), double(m.head_dim), m.scale});
    cpu_->attention(out, q, k_cache, v_cache, m);
  }
  void swiglu(Tensor out, const Tensor& gate, const Tensor& up) override {
    log("swiglu", {out, gate, up});
    cpu_->swiglu(out, gate, up);
  }
  void gather_rows(Tensor out, const Tensor& x, const Tensor& idx) override {
    log("gather_rows", {out, x, idx});
    cpu_->gather_rows(out, x, idx);
  }

  bool graphs_enabled() const override { return true; }
  void run_graph(const void* owner, uint64_t key, const std::function<void()>& enqueue) override {
    EXPECT_FALSE(recording_);
    recording_ = true;
    trace_.str("");
    enqueue();
    recording_ = false;
    ++graph_calls_;
    auto [it, fresh] = traces_.emplace(std::make_pair(owner, key), trace_.str());
    if (!fresh) {
      ++replays_;
      EXPECT_EQ(it->second, trace_.str()) << "key " << key << " made different op calls";
    }
  }
  void drop_graphs(const void* owner) override {
    ++drops_;
    for (auto it = traces_.begin(); it != traces_.end();)
      it = it->first.first == owner ? traces_.erase(it) : std::next(it);
  }

  int graph_calls_ = 0, replays_ = 0, drops_ = 0, uploads_inside_ = 0;

 private:
  static CpuBackendOptions exact_options() {
    CpuBackendOptions o;
    o.n_threads = 1;
    o.quantize_activations = false;
    return o;
  }
  void log(const char* op, const std::vector<Tensor>& ts, const std::vector<double>& xs = {}) {
    if (!recording_) return;
    trace_ << op;
    for (const Tensor& t : ts)
      trace_ << " [" << t.data << " " << int(t.dtype) << " " << t.rows << "x" << t.cols << "]";
    for (double x : xs) trace_ << " " << x;
    trace_ << "\n";
  }

  std::unique_ptr<Backend> cpu_;
  bool recording_ = false;
  std::ostringstream trace_;
  std::map<std::pair<const void*, uint64_t>, std::string> traces_;
};

ModelConfig tiny_config() {
  ModelConfig c;
  c.name = "tiny";
  c.vocab_size = 96;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.max_position = 4096;
  return c;
}

std::vector<float> read_all(Backend& be, const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  be.download(v.data(), t, v.size() * sizeof(float));
  return v;
}

// Three sequences (one joins late) prefill, then decode past the 256- and 384-token context
// buckets; the graph backend and a plain CPU backend must agree bit for bit.
TEST(ModelGraph, PaddedDecodeStepsMatchDirectSteps) {
  const ModelConfig c = tiny_config();
  const int bs = 16, blocks_per_seq = 32, n_seqs = 3;
  const ModelLimits limits = limits_of(4, blocks_per_seq, 512);
  RecordingCheckBackend graph_be;
  std::unique_ptr<Backend> plain_be = make_cpu_backend([] {
    CpuBackendOptions o;
    o.n_threads = 1;
    o.quantize_activations = false;
    o.fused_projections = false;  // like graph_be: the same synthetic weights (drawn unstacked)
    return o;
  }());
  auto mg = LlamaModel::synthetic(graph_be, c, DType::kF32, 11, limits);
  auto mp = LlamaModel::synthetic(*plain_be, c, DType::kF32, 11, limits);
  ASSERT_TRUE(mg.is_ok() && mp.is_ok());
  auto kvg = mg.value()->alloc_kv_cache(n_seqs * blocks_per_seq + 1, bs);
  auto kvp = mp.value()->alloc_kv_cache(n_seqs * blocks_per_seq + 1, bs);
  ASSERT_TRUE(kvg.is_ok() && kvp.is_ok());
  // Block 0 is used by no sequence: a padding row's attention reads it (zero: the CPU backend's
  // fresh caches are zeroed).
  auto block_of = [&](int s, int i) { return 1 + s * blocks_per_seq + (blocks_per_seq - 1 - i); };
  const std::vector<int> prompt = {250, 7, 100};  // sequence 1 joins at step 40
  std::vector<int> len(n_seqs, 0);
  uint32_t rng = 12345;
  auto next_tok = [&] {
    rng = rng * 1664525u + 1013904223u;
    return static_cast<int32_t>((rng >> 8) % c.vocab_size);
  };

  auto step = [&](const std::vector<int>& seqs, const std::vector<int>& q_lens) {
    std::vector<int32_t> ids, pos, slots, qs = {0}, kvl, table, rows;
    for (size_t i = 0; i < seqs.size(); ++i) {
      const int s = seqs[i];
      for (int j = 0; j < q_lens[i]; ++j) {
        const int p = len[s] + j;
        ids.push_back(next_tok());
        pos.push_back(p);
        slots.push_back(block_of(s, p / bs) * bs + p % bs);
      }
      len[s] += q_lens[i];
      qs.push_back(static_cast<int32_t>(ids.size()));
      kvl.push_back(len[s]);
      for (int b = 0; b < blocks_per_seq; ++b) table.push_back(block_of(s, b));
      rows.push_back(static_cast<int32_t>(ids.size()) - 1);
    }
    ForwardBatch b{ids, pos, slots, qs, kvl, table, blocks_per_seq, rows};
    auto lg = mg.value()->forward(b, kvg.value());
    auto lp = mp.value()->forward(b, kvp.value());
    ASSERT_TRUE(lg.is_ok()) << lg.error();
    ASSERT_TRUE(lp.is_ok()) << lp.error();
    ASSERT_EQ(lg.value().rows, static_cast<int64_t>(seqs.size()));
    ASSERT_EQ(read_all(graph_be, lg.value()), read_all(*plain_be, lp.value()));
  };

  step({0}, {prompt[0]});
  step({2}, {prompt[2]});
  for (int i = 0; i < 160; ++i) {
    if (i == 40) step({1}, {prompt[1]});
    if (i < 40) {
      step({0, 2}, {1, 1});
    } else {
      step({0, 1, 2}, {1, 1, 1});
    }
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(graph_be.uploads_inside_, 0);
  EXPECT_GT(graph_be.graph_calls_, 150);
  EXPECT_GT(graph_be.replays_, 140);  // the same key repeats within a bucket
  // Every KV slot, padding included, as the direct steps left it.
  for (int l = 0; l < c.n_layers; ++l) {
    for (int64_t slot = 0; slot < kvg.value().k[l].rows; ++slot) {
      ASSERT_EQ(graph_be.kv_cache_row(kvg.value().k[l], slot),
                plain_be->kv_cache_row(kvp.value().k[l], slot))
          << "layer " << l << " K slot " << slot;
      ASSERT_EQ(graph_be.kv_cache_row(kvg.value().v[l], slot),
                plain_be->kv_cache_row(kvp.value().v[l], slot))
          << "layer " << l << " V slot " << slot;
    }
  }
  // Another cache: recordings of the old one are dropped first.
  const int drops = graph_be.drops_;
  auto kv2 = mg.value()->alloc_kv_cache(n_seqs * blocks_per_seq + 1, bs);
  ASSERT_TRUE(kv2.is_ok());
  std::vector<int32_t> ids = {1}, pos = {0}, slots = {bs}, qs = {0, 1}, kvl = {1}, rows = {0};
  std::vector<int32_t> table(blocks_per_seq, 1);
  ForwardBatch b{ids, pos, slots, qs, kvl, table, blocks_per_seq, rows};
  ASSERT_TRUE(mg.value()->forward(b, kv2.value()).is_ok());
  EXPECT_EQ(graph_be.drops_, drops + 1);
  graph_be.free_kv(kv2.value());
  graph_be.free_kv(kvg.value());
  plain_be->free_kv(kvp.value());
}

}  // namespace
}  // namespace carpool
