#include "engine/generator.h"

#include <algorithm>
#include <chrono>

namespace carpool {
namespace {
// Frees a KV cache when the generation ends, on every path.
struct KvGuard {
  Backend& backend;
  KvCache& kv;
  ~KvGuard() { backend.free_kv(kv); }
};
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

Status Generator::feed(const std::vector<int32_t>& tokens, int begin, int end, const KvCache& kv,
                       int block_size, std::vector<float>* logits) {
  const int max_chunk = model_.limits().max_batch_tokens;
  const int n_blocks = kv.config.num_blocks;
  std::vector<int32_t> table(n_blocks);
  for (int i = 0; i < n_blocks; ++i) table[i] = i;  // this sequence owns the whole cache
  std::vector<int32_t> pos, slots;
  for (int start = begin; start < end; start += max_chunk) {
    const int stop = std::min(end, start + max_chunk);
    const int n = stop - start;
    pos.resize(n);
    slots.resize(n);
    for (int i = 0; i < n; ++i) pos[i] = slots[i] = start + i;
    int32_t qstart[2] = {0, n};
    int32_t kv_len[1] = {stop};
    int32_t last_row[1] = {n - 1};
    ForwardBatch b;
    b.token_ids = std::span<const int32_t>(tokens.data() + start, n);
    b.positions = pos;
    b.slots = slots;
    b.query_start = qstart;
    b.kv_len = kv_len;
    b.block_tables = table;
    b.max_blocks_per_seq = n_blocks;
    b.logit_rows = last_row;
    auto out = model_.forward(b, kv);
    if (!out) return out.status();
    if (logits && stop == end) {
      logits->resize(model_.config().vocab_size);
      model_.backend().download(logits->data(), out.value(), logits->size() * sizeof(float));
    }
  }
  (void)block_size;
  return Status::ok();
}

Result<std::vector<float>> Generator::last_logits(const std::vector<int32_t>& tokens) {
  if (tokens.empty()) return Status::error("generate: empty prompt");
  const int bs = 16;
  const int n_blocks = (static_cast<int>(tokens.size()) + bs - 1) / bs;
  if (n_blocks > model_.limits().max_blocks_per_seq)
    return Status::error("generate: prompt too long");
  auto kv = model_.alloc_kv_cache(n_blocks, bs);
  if (!kv) return kv.status();
  std::vector<float> logits;
  Status st = feed(tokens, 0, static_cast<int>(tokens.size()), kv.value(), bs, &logits);
  model_.backend().free_kv(kv.value());
  if (!st) return st;
  return logits;
}

Result<GenerateStats> Generator::run(const std::vector<int32_t>& prompt, const GenerateOptions& opt,
                                     const TokenCallback& on_token) {
  if (prompt.empty()) return Status::error("generate: empty prompt");
  if (opt.max_tokens < 0) return Status::error("generate: max_tokens must be >= 0");
  CARPOOL_RETURN_IF_ERROR(opt.sampling.validate());
  const int64_t total = static_cast<int64_t>(prompt.size()) + opt.max_tokens;
  if (total > model_.config().max_position) {
    return Status::error("generate: prompt (" + std::to_string(prompt.size()) + " tokens) plus " +
                         std::to_string(opt.max_tokens) + " new tokens exceeds the context of " +
                         std::to_string(model_.config().max_position));
  }
  const int bs = opt.block_size;
  const int n_blocks = static_cast<int>((total + bs - 1) / bs);
  if (n_blocks > model_.limits().max_blocks_per_seq) {
    return Status::error("generate: sequence of " + std::to_string(total) +
                         " tokens exceeds the model limits");
  }
  auto kv = model_.alloc_kv_cache(n_blocks, bs);
  if (!kv) return kv.status();
  KvGuard guard{model_.backend(), kv.value()};
  GenerateStats stats;
  stats.prompt_tokens = static_cast<int>(prompt.size());
  Sampler sampler(opt.sampling, prompt);
  std::vector<int32_t> tokens = prompt;
  std::vector<float> logits;
  double t0 = now_s();
  CARPOOL_RETURN_IF_ERROR(
      feed(tokens, 0, static_cast<int>(tokens.size()), kv.value(), bs, &logits));
  stats.prefill_s = now_s() - t0;
  double t1 = now_s();
  for (int i = 0; i < opt.max_tokens; ++i) {
    if (i > 0) {
      const int n = static_cast<int>(tokens.size());
      CARPOOL_RETURN_IF_ERROR(feed(tokens, n - 1, n, kv.value(), bs, &logits));
    }
    int32_t next = sampler.sample(logits);
    sampler.accept(next);
    tokens.push_back(next);
    ++stats.generated_tokens;
    bool stop = std::find(opt.stop_ids.begin(), opt.stop_ids.end(), next) != opt.stop_ids.end();
    if (!on_token(next) || stop) break;
  }
  stats.decode_s = now_s() - t1;
  return stats;
}

}  // namespace carpool
