// open_model: resolves a model path (a .gguf file or a Hugging Face folder) into its config,
// weight views and tokenizer, ready for LlamaModel::load.
#pragma once

#include <memory>
#include <string>

#include "model/model_source.h"
#include "tokenizer/tokenizer.h"
#include "util/status.h"

namespace carpool {

class GgufFile;

struct OpenedModel {
  std::string path;
  ModelSource source;
  std::unique_ptr<Tokenizer> tokenizer;  // null for a folder without tokenizer.json
  std::shared_ptr<GgufFile> gguf;        // set for GGUF models (metadata for `inspect`)
};

// Opens a GGUF file or a Hugging Face model folder. Untrusted: every error is a Status.
Result<OpenedModel> open_model(const std::string& path);

// Only the tokenizer: from a GGUF file, or a folder with tokenizer.json (+ tokenizer_config).
Result<std::unique_ptr<Tokenizer>> open_tokenizer(const std::string& path);

}  // namespace carpool
