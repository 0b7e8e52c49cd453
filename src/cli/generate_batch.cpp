// carpool generate with several prompts (generate_batch.h).
#include "cli/generate_batch.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <mutex>

#include "backend/dtype.h"
#include "engine/engine.h"

namespace carpool::cli {

Result<std::vector<std::vector<int32_t>>> parse_prompt_ids(const std::string& text,
                                                           int64_t vocab_size) {
  std::vector<std::vector<int32_t>> prompts(1);
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = text.find_first_of(",;", start);
    const std::string item =
        text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    char* tail = nullptr;
    const long v = std::strtol(item.c_str(), &tail, 10);
    if (item.empty() || *tail != '\0' || v < 0 || v >= vocab_size)
      return Status::error("--prompt-ids: '" + item + "' is not a token id of this model");
    prompts.back().push_back(static_cast<int32_t>(v));
    if (end == std::string::npos) break;
    if (text[end] == ';') prompts.emplace_back();
    start = end + 1;
  }
  return prompts;
}

Result<std::vector<std::vector<int32_t>>> generate_batch(
    LoadedModel& lm, const std::vector<std::vector<int32_t>>& prompts, const GenerateOptions& opt,
    bool ignore_eos) {
  const ModelLimits& limits = lm.model->limits();
  const int n = static_cast<int>(prompts.size());
  if (n > limits.max_seqs)
    return Status::error("at most " + std::to_string(limits.max_seqs) + " prompts at once");
  size_t longest = 0;
  for (const auto& p : prompts) longest = std::max(longest, p.size());
  const int64_t need_len = static_cast<int64_t>(longest) + opt.max_tokens + 1;
  const ModelConfig& cfg = lm.model->config();
  EngineOptions eo;
  eo.max_num_seqs = n;
  eo.max_num_batched_tokens = limits.max_batch_tokens;
  eo.block_size = opt.block_size;
  eo.max_model_len = static_cast<int>(std::min<int64_t>(
      {need_len, cfg.max_position, int64_t{limits.max_blocks_per_seq} * opt.block_size}));
  if (need_len > eo.max_model_len)
    return Status::error("a prompt of " + std::to_string(longest) + " tokens plus " +
                         std::to_string(opt.max_tokens) + " new ones exceeds the context (" +
                         std::to_string(eo.max_model_len) + ")");
  // KV for every sequence at full length, with a block of slack each, within what the device
  // has free (half of it on the CPU, 90% on a GPU); with less the engine runs the prompts in turn.
  const int64_t want = int64_t{n} * (eo.max_model_len + 2 * opt.block_size) *
                       cfg.kv_bytes_per_token(lm.backend->kv_cache_dtype());
  const auto free_bytes = static_cast<int64_t>(lm.backend->memory_info().free_bytes);
  const int64_t cap = lm.backend->name() == "cpu" ? free_bytes / 2 : free_bytes / 10 * 9;
  eo.kv_cache_bytes = std::max<int64_t>(1, cap > 0 ? std::min(want, cap) : want);
  auto engine = Engine::create(*lm.model, eo);
  if (!engine) return engine.status();

  std::vector<std::vector<int32_t>> out(prompts.size());
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::string error;
  for (int i = 0; i < n; ++i) {
    RequestParams rp;
    rp.prompt = prompts[static_cast<size_t>(i)];
    rp.sampling = opt.sampling;
    rp.max_tokens = opt.max_tokens;
    rp.stop_ids = opt.stop_ids;
    rp.ignore_eos = ignore_eos;
    auto id = engine.value()->submit(std::move(rp), [&, i](const TokenEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      if (e.token >= 0) out[static_cast<size_t>(i)].push_back(e.token);
      if (e.finished) {
        if (e.finish_reason == FinishReason::kError && error.empty()) error = e.error;
        ++done;
        cv.notify_all();
      }
    });
    if (!id) {
      engine.value()->shutdown(0);
      return id.status();
    }
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done == n; });
  }
  engine.value()->shutdown(0);
  if (!error.empty()) return Status::error(error);
  return out;
}

}  // namespace carpool::cli
