#include "model/open_model.h"

#include <filesystem>

#include "formats/gguf.h"

namespace carpool {
namespace fs = std::filesystem;

Result<OpenedModel> open_model(const std::string& path) {
  std::error_code ec;
  OpenedModel m;
  m.path = path;
  if (fs::is_directory(path, ec)) {
    auto src = load_hf_model(path);
    if (!src) return src.status();
    m.source = std::move(src).value();
    // A folder may hold weights without tokenizer files (then only token ids can be used).
    if (fs::exists(fs::path(path) / "tokenizer.json", ec)) {
      auto tok = Tokenizer::from_hf_dir(path);
      if (!tok) return Status::error(path + ": tokenizer: " + tok.error());
      m.tokenizer = std::make_unique<Tokenizer>(std::move(tok).value());
    }
    return m;
  }
  if (!fs::exists(path, ec)) return Status::error(path + ": no such file or folder");
  auto file = GgufFile::open(path);
  if (!file) return file.status();
  m.gguf = std::make_shared<GgufFile>(std::move(file).value());
  auto src = load_gguf_model(m.gguf);
  if (!src) return Status::error(path + ": " + src.error());
  m.source = std::move(src).value();
  auto tok = Tokenizer::from_gguf(*m.gguf);
  if (!tok) return Status::error(path + ": tokenizer: " + tok.error());
  m.tokenizer = std::make_unique<Tokenizer>(std::move(tok).value());
  return m;
}

Result<std::unique_ptr<Tokenizer>> open_tokenizer(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    auto tok = Tokenizer::from_hf_dir(path);
    if (!tok) return Status::error(path + ": " + tok.error());
    return std::make_unique<Tokenizer>(std::move(tok).value());
  }
  auto file = GgufFile::open(path);
  if (!file) return file.status();
  auto tok = Tokenizer::from_gguf(file.value());
  if (!tok) return Status::error(path + ": " + tok.error());
  return std::make_unique<Tokenizer>(std::move(tok).value());
}

}  // namespace carpool
