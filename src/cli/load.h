// Shared start-up for commands that run a model: pick the backend, open or synthesize the model.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "chat/chat_template.h"
#include "model/llama.h"
#include "model/open_model.h"
#include "util/status.h"

namespace carpool::cli {

struct LoadOptions {
  std::string model;            // path, known name, or "synthetic:NAME" / "synthetic:FILE.json"
  std::string device = "auto";  // auto, cpu, cuda
  int threads = 0;              // CPU threads (0: all)
  std::string tokenizer;        // tokenizer from this GGUF file or folder (else the model's)
  bool cpu_exact = false;       // CPU: f32 reference arithmetic instead of 8-bit activations
  std::string kv_cache_dtype = "auto";  // auto, f16, f32 (CPU) or bf16 (CUDA)
  std::string
      synthetic_dtype;  // weight type of synthetic models (default: q4_1 on CPU, bf16 on GPU)
  ModelLimits limits;
};

struct LoadedModel {
  std::unique_ptr<Backend> backend;
  OpenedModel opened;  // empty tokenizer for synthetic models
  std::unique_ptr<LlamaModel> model;
  bool synthetic = false;
  double load_s = 0;
};

// Chooses the backend: "cuda" requires a GPU; "auto" uses one when present and otherwise says
// clearly that it is using the CPU. kv_cache_dtype: "auto" (CPU: f16, or f32 with cpu_exact;
// CUDA: bf16), "f16" or "f32" (CPU only), "bf16" (CUDA only).
// OK when `name` is a --kv-cache-dtype value (auto, f16, f32, bf16); else the option's error.
Status check_kv_cache_dtype(const std::string& name);
// --device: auto, cpu or cuda.
Status check_device(const std::string& device);
// --threads: 0 (every core) to kMaxThreads.
constexpr int64_t kMaxThreads = 1024;
Status check_threads(int64_t n);

Result<std::unique_ptr<Backend>> make_backend(const std::string& device, int threads,
                                              bool cpu_exact = false,
                                              const std::string& kv_cache_dtype = "auto");

Result<LoadedModel> load_model(const LoadOptions& options);

// The config of "synthetic:NAME" (a named preset) or "synthetic:CONFIG.json".
Result<ModelConfig> synthetic_config(const std::string& spec);

// --chat-template: the Jinja chat template in file `path` (at most chat::kMaxTemplateBytes),
// parsed by the sandboxed engine, to use instead of the model's own; errors name the option.
Result<chat::ChatTemplate> load_chat_template(const std::string& path);

// Parses a weight type name ("q4_1", "bf16", ...).
Result<DType> parse_dtype(const std::string& name);

}  // namespace carpool::cli
