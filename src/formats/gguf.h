// GGUF reader (versions 2 and 3): metadata, tensor infos and tensor data, memory-mapped.
//
// The file is untrusted: every count, length, offset, dimension and type id is checked against
// the file size before use; nothing is allocated from a size the file claims without a bound.
// Strings and tensor data are views into the mapping and live as long as the GgufFile.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backend/dtype.h"
#include "util/status.h"

namespace carpool {

class MappedFile;

enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

// One metadata value. Scalars are widened; arrays are views validated at open time.
struct GgufValue {
  GgufType type = GgufType::kU8;
  uint64_t u = 0;        // unsigned integer types and bool
  int64_t i = 0;         // signed integer types (also set for unsigned values that fit)
  double f = 0.0;        // float types (also set for integers)
  std::string_view str;  // kString
  GgufType array_type = GgufType::kU8;  // kArray: element type (nested arrays are rejected)
  uint64_t array_count = 0;
  const uint8_t* array_data = nullptr;  // kArray: first element in the mapping
  size_t array_bytes = 0;
};

struct GgufTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> dims;  // dims[0] is the contiguous dimension (GGML order)
  uint64_t offset = 0;        // from the start of the data section, aligned
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping
  // As a 2-D row-major matrix: cols = dims[0], rows = product of the rest.
  int64_t cols() const { return dims.empty() ? 1 : dims[0]; }
  int64_t rows() const { return cols() == 0 ? 0 : static_cast<int64_t>(n_elements) / cols(); }
};

class GgufFile {
 public:
  // Maps and parses the file at `path`.
  static Result<GgufFile> open(const std::string& path);
  // Parses `size` bytes at `data` without copying; the caller keeps the bytes alive.
  static Result<GgufFile> parse(const uint8_t* data, size_t size);

  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* find(std::string_view key) const;
  const GgufTensorInfo* find_tensor(std::string_view name) const;

  // Typed getters: an error names the key when it is missing or of the wrong type.
  Result<std::string_view> get_string(std::string_view key) const;
  Result<int64_t> get_int(std::string_view key) const;   // any integer type
  Result<double> get_float(std::string_view key) const;  // any float or integer type
  Result<bool> get_bool(std::string_view key) const;
  Result<std::vector<std::string_view>> get_string_array(std::string_view key) const;
  Result<std::vector<float>> get_f32_array(std::string_view key) const;
  Result<std::vector<int32_t>> get_i32_array(std::string_view key) const;  // any int elements

 private:
  GgufFile();
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<GgufTensorInfo> tensors_;
  // Positions in kv_ and tensors_ by name: the reader's duplicate checks and the lookups stay
  // linear in the file's entries (a scan per entry took minutes on 200,000 hostile keys).
  std::unordered_map<std::string, size_t> kv_index_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace carpool
