// ModelSource: a model's config and its weights as host views, from a GGUF file or a Hugging
// Face folder, before they are handed to a Backend.
//
// Weight names are canonical (GGUF style) whatever the file format:
//   token_embd.weight [vocab, hidden]           output_norm.weight [1, hidden]
//   output.weight [vocab, hidden] (absent when tied)
//   blk.{i}.attn_norm.weight [1, hidden]        blk.{i}.ffn_norm.weight [1, hidden]
//   blk.{i}.attn_q.weight [n_heads*hd, hidden]  blk.{i}.attn_q.bias [1, n_heads*hd] (Qwen2)
//   blk.{i}.attn_k.weight [n_kv*hd, hidden]     blk.{i}.attn_k.bias, attn_v.bias (Qwen2)
//   blk.{i}.attn_v.weight [n_kv*hd, hidden]     blk.{i}.attn_output.weight [hidden, n_heads*hd]
//   blk.{i}.ffn_gate.weight [ff, hidden]        blk.{i}.ffn_up.weight [ff, hidden]
//   blk.{i}.ffn_down.weight [hidden, ff]
// Shapes are [rows, cols] with cols contiguous (a Linear's [out_features, in_features]).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/model_config.h"
#include "util/status.h"

namespace carpool {

struct ModelSource {
  ModelConfig config;
  std::map<std::string, HostWeight> weights;  // canonical name -> view into mapped files
  std::string format;                         // "gguf" or "safetensors"
  std::shared_ptr<void> keepalive;            // owns the mappings the views point into
};

// Loads a Hugging Face model folder: config.json and model.safetensors (or shards listed in
// model.safetensors.index.json). Weights in F32, F16 or BF16. Untrusted: validated.
Result<ModelSource> load_hf_model(const std::string& dir);

// Loads a GGUF file's config and weights (general.architecture llama or qwen2).
class GgufFile;
Result<ModelSource> load_gguf_model(std::shared_ptr<GgufFile> file);

}  // namespace carpool
