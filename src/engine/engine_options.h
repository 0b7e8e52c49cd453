// Engine start-up arithmetic: option validation, KV cache sizing, the model limits that match.
// Pure functions (the backend's memory figures come in as a value), so tests can drive them.
#pragma once

#include <cstdint>
#include <string>

#include "backend/backend.h"
#include "engine/engine.h"
#include "model/model_config.h"
#include "util/status.h"

namespace carpool {

// KV budget on the CPU when EngineOptions::kv_cache_bytes is 0: a fixed 512 MiB (at most half
// of the free memory), because host memory is shared with everything else on the machine and
// "free" is not a figure a server should take 90% of. (SmolLM2-135M: about 23,300 tokens in the
// default f16 cache, 11,600 in f32.)
inline constexpr int64_t kDefaultCpuKvCacheBytes = int64_t{512} << 20;

// Checks the options (each message names the option) and fills max_model_len from the model's
// context length when 0. Errors: sizes out of range, max_model_len beyond the model's context,
// max_num_batched_tokens below max_num_seqs (decodes could starve).
Result<EngineOptions> resolve_engine_options(const EngineOptions& options,
                                             const ModelConfig& config);

struct KvCachePlan {
  int num_blocks = 0;
  int block_size = 16;
  int64_t bytes_per_block = 0;       // K and V of block_size tokens over all layers
  int64_t bytes = 0;                 // num_blocks * bytes_per_block
  int64_t tokens = 0;                // num_blocks * block_size
  int max_seqs_at_full_context = 0;  // sequences of max_model_len that fit at once

  // "KV cache: N blocks × 16 tokens = T tokens (M MiB); max batch at full context: B sequences"
  std::string summary() const;
};

// Sizes the cache. The budget is options.kv_cache_bytes when set; otherwise, on a GPU,
// free_bytes × gpu_memory_utilization (the weights and workspace are already allocated), and
// on the CPU kDefaultCpuKvCacheBytes capped at half the free memory. Error when not even one
// max_model_len sequence fits. PRECONDITION: options from resolve_engine_options.
// kv_dtype: the cache's element type (Backend::kv_cache_dtype).
Result<KvCachePlan> plan_kv_cache(const ModelConfig& config, DType kv_dtype,
                                  const EngineOptions& options, bool on_gpu,
                                  const BackendMemoryInfo& memory);

}  // namespace carpool
