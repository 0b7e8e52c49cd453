// safetensors reader: an 8-byte little-endian header length, a JSON header that maps tensor names
// to {dtype, shape, data_offsets}, then the data section. Memory-mapped; zero copy.
//
// The file is untrusted. parse() checks, before any tensor is handed out:
//   - the header length is at most kMaxHeaderBytes and fits in the file;
//   - the header is a JSON object without duplicate keys (at any level) and nesting at most 3 deep;
//   - `__metadata__`, when present, maps strings to strings;
//   - each tensor has a supported dtype (F32, F16, BF16), a shape of rank <= kMaxRank with
//     non-negative dimensions whose product does not overflow, and data_offsets [begin, end] with
//     end - begin == product(shape) * element size;
//   - the tensors' byte ranges tile the data section exactly: no overlap, no hole, nothing after.
// Tensor data pointers view the mapping (or the caller's buffer for parse()) and are NOT aligned
// in general: the format aligns nothing beyond what the writer chose.
// A SafetensorsFile is immutable after parsing: its const methods are thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "backend/dtype.h"
#include "util/status.h"

namespace carpool {

class MappedFile;

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kF32;   // kF32, kF16 or kBF16
  std::vector<int64_t> shape;  // row-major, last dimension contiguous; empty = scalar
  uint64_t begin = 0;          // byte offsets into the data section, [begin, end)
  uint64_t end = 0;
  const uint8_t* data = nullptr;  // start of the tensor's bytes (end - begin of them)

  uint64_t n_bytes() const { return end - begin; }
  int64_t n_elements() const;
};

class SafetensorsFile {
 public:
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // 100 MiB, as the reference reader
  static constexpr int kMaxRank = 8;

  // Maps and parses the file at `path`. Errors start with the path.
  static Result<SafetensorsFile> open(const std::string& path);
  // Parses `size` bytes at `data` without copying; the caller keeps the bytes alive as long as
  // the returned object's tensors are used.
  static Result<SafetensorsFile> parse(const uint8_t* data, size_t size);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  // Sorted by name.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(std::string_view name) const;
  // `__metadata__` entries, in header order.
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
  // Size of the data section in bytes.
  uint64_t data_bytes() const { return data_bytes_; }

 private:
  SafetensorsFile();
  std::unique_ptr<MappedFile> file_;  // null for parse()
  std::vector<SafetensorsTensor> tensors_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  uint64_t data_bytes_ = 0;
};

}  // namespace carpool
