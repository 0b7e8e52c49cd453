#include "engine/engine_options.h"

#include <algorithm>
#include <climits>
#include <cstdio>

namespace carpool {
namespace {
// Upper bounds that keep every derived size (workspace rows, slots) far from overflow.
constexpr int kMaxNumSeqs = 4096;
constexpr int kMaxBatchedTokens = 1 << 20;
constexpr int kMaxBlockSize = 1024;
constexpr int kMaxModelLen = 1 << 22;

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
}  // namespace

Result<EngineOptions> resolve_engine_options(const EngineOptions& in, const ModelConfig& config) {
  EngineOptions o = in;
  if (o.max_num_seqs < 1 || o.max_num_seqs > kMaxNumSeqs) {
    return Status::error("max_num_seqs must be in [1, " + std::to_string(kMaxNumSeqs) + "]");
  }
  if (o.max_num_batched_tokens < 1 || o.max_num_batched_tokens > kMaxBatchedTokens) {
    return Status::error("max_num_batched_tokens must be in [1, " +
                         std::to_string(kMaxBatchedTokens) + "]");
  }
  if (o.max_num_batched_tokens < o.max_num_seqs) {
    return Status::error("max_num_batched_tokens (" + std::to_string(o.max_num_batched_tokens) +
                         ") must be at least max_num_seqs (" + std::to_string(o.max_num_seqs) +
                         ")");
  }
  if (o.block_size < 1 || o.block_size > kMaxBlockSize) {
    return Status::error("block_size must be in [1, " + std::to_string(kMaxBlockSize) + "]");
  }
  if (o.kv_cache_bytes < 0) return Status::error("kv_cache_bytes must be >= 0");
  if (!(o.gpu_memory_utilization > 0.0 && o.gpu_memory_utilization <= 1.0)) {
    return Status::error("gpu_memory_utilization must be in (0, 1]");
  }
  if (o.max_queued_requests < 1) return Status::error("max_queued_requests must be >= 1");
  const int64_t context = std::min<int64_t>(config.max_position, kMaxModelLen);
  if (o.max_model_len < 0) return Status::error("max_model_len must be >= 0");
  if (o.max_model_len == 0) o.max_model_len = static_cast<int>(context);
  if (o.max_model_len > context) {
    return Status::error("max_model_len (" + std::to_string(o.max_model_len) +
                         ") exceeds the model's context length (" + std::to_string(context) + ")");
  }
  if (o.max_model_len < 2) return Status::error("max_model_len must be at least 2");
  return o;
}

ModelLimits engine_model_limits(const EngineOptions& options, const ModelConfig& config) {
  const int64_t max_model_len = options.max_model_len > 0
                                    ? options.max_model_len
                                    : std::min<int64_t>(config.max_position, kMaxModelLen);
  const int block_size = std::max(1, options.block_size);
  ModelLimits l;
  l.max_batch_tokens = std::max(1, options.max_num_batched_tokens);
  l.max_seqs = std::max(1, options.max_num_seqs);
  l.max_logit_rows = l.max_seqs;
  l.max_blocks_per_seq =
      static_cast<int>(std::max<int64_t>(1, ceil_div(max_model_len, block_size)));
  return l;
}

std::string KvCachePlan::summary() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "KV cache: %d blocks × %d tokens = %lld tokens (%.1f MiB); max batch at full "
                "context: %d sequences",
                num_blocks, block_size, static_cast<long long>(tokens),
                static_cast<double>(bytes) / (1 << 20), max_seqs_at_full_context);
  return buf;
}

Result<KvCachePlan> plan_kv_cache(const ModelConfig& config, DType kv_dtype, const EngineOptions& o,
                                  bool on_gpu, const BackendMemoryInfo& memory) {
  KvCachePlan p;
  p.block_size = o.block_size;
  p.bytes_per_block = config.kv_bytes_per_token(kv_dtype) * o.block_size;
  if (p.bytes_per_block <= 0) return Status::error("kv cache: bad model geometry");
  int64_t budget = 0;
  std::string source;
  if (o.kv_cache_bytes > 0) {
    budget = o.kv_cache_bytes;
    source = "kv_cache_bytes";
    // Host memory is committed as it is touched: a cache larger than the machine would be
    // killed by the kernel's OOM killer part way through, with no message (GPU allocations
    // fail cleanly instead).
    if (!on_gpu && memory.total_bytes > 0 && static_cast<uint64_t>(budget) > memory.total_bytes) {
      return Status::error("kv cache: " + std::to_string(budget >> 20) + " MiB asked, more than " +
                           "this machine's memory (" + std::to_string(memory.total_bytes >> 20) +
                           " MiB)");
    }
  } else if (on_gpu) {
    budget =
        static_cast<int64_t>(static_cast<double>(memory.free_bytes) * o.gpu_memory_utilization);
    source = "free device memory × gpu_memory_utilization";
  } else {
    budget =
        std::min<int64_t>(kDefaultCpuKvCacheBytes, static_cast<int64_t>(memory.free_bytes / 2));
    source = "the CPU default budget";
  }
  // Slots are int32: num_blocks * block_size must stay below 2^31.
  const int64_t max_blocks = (int64_t{INT_MAX} / o.block_size) - 1;
  const int64_t blocks = std::min(budget / p.bytes_per_block, max_blocks);
  const int64_t blocks_per_seq = ceil_div(o.max_model_len, o.block_size);
  if (blocks < blocks_per_seq) {
    return Status::error("kv cache: " + std::to_string(budget >> 20) + " MiB (" + source +
                         ") holds " + std::to_string(blocks * o.block_size) +
                         " tokens, less than one sequence of max_model_len " +
                         std::to_string(o.max_model_len) +
                         "; lower max_model_len or give the cache more memory");
  }
  p.num_blocks = static_cast<int>(blocks);
  p.bytes = blocks * p.bytes_per_block;
  p.tokens = blocks * o.block_size;
  p.max_seqs_at_full_context = static_cast<int>(blocks / blocks_per_seq);
  return p;
}

}  // namespace carpool
