#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "formats/json_util.h"
#include "util/mapped_file.h"

namespace carpool {
namespace {

using Json = nlohmann::json;

constexpr int kMaxJsonDepth = 3;  // header object > tensor object > shape array

Status err(std::string msg) {
  return Status::error("safetensors: " + std::move(msg));
}

Result<DType> parse_dtype(const std::string& name, const std::string& dtype) {
  if (dtype == "F32") return DType::kF32;
  if (dtype == "F16") return DType::kF16;
  if (dtype == "BF16") return DType::kBF16;
  return err("tensor " + quote_name(name) + ": unsupported dtype " + quote_name(dtype) +
             " (supported: F32, F16, BF16)");
}

Result<uint64_t> parse_u64(const Json& v, const std::string& what) {
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer()) return err(what + " is negative");
    return err(what + " is not a non-negative integer");
  }
  return v.get<uint64_t>();
}

Result<SafetensorsTensor> parse_tensor(const std::string& name, const Json& v,
                                       uint64_t data_bytes) {
  const std::string where = "tensor " + quote_name(name);
  if (name.empty()) return err("empty tensor name in header");
  if (!v.is_object()) return err(where + ": entry is not an object");
  for (const auto& [key, _] : v.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return err(where + ": unknown field " + quote_name(key));
    }
  }
  SafetensorsTensor t;
  t.name = name;

  auto dtype_it = v.find("dtype");
  if (dtype_it == v.end()) return err(where + ": missing 'dtype'");
  if (!dtype_it->is_string()) return err(where + ": 'dtype' is not a string");
  CARPOOL_ASSIGN_OR_RETURN(t.dtype, parse_dtype(name, dtype_it->get_ref<const std::string&>()));
  const uint64_t elem_bytes = static_cast<uint64_t>(dtype_info(t.dtype).block_bytes);

  auto shape_it = v.find("shape");
  if (shape_it == v.end()) return err(where + ": missing 'shape'");
  if (!shape_it->is_array()) return err(where + ": 'shape' is not an array");
  if (shape_it->size() > static_cast<size_t>(SafetensorsFile::kMaxRank)) {
    return err(where + ": rank " + std::to_string(shape_it->size()) + " exceeds " +
               std::to_string(SafetensorsFile::kMaxRank));
  }
  // Product of dims, bounded by the data section so it never overflows (a zero dim makes the
  // product zero whatever follows, so overflow is checked on every step).
  uint64_t n_elements = 1;
  bool overflow = false;
  for (size_t i = 0; i < shape_it->size(); ++i) {
    CARPOOL_ASSIGN_OR_RETURN(
        uint64_t dim, parse_u64((*shape_it)[i], where + ": shape[" + std::to_string(i) + "]"));
    if (dim > static_cast<uint64_t>(INT64_MAX)) {
      return err(where + ": shape[" + std::to_string(i) + "] is too large");
    }
    t.shape.push_back(static_cast<int64_t>(dim));
    uint64_t product = 0;
    if (__builtin_mul_overflow(n_elements, dim, &product)) overflow = true;
    n_elements = product;
  }
  uint64_t n_bytes = 0;
  if (overflow || __builtin_mul_overflow(n_elements, elem_bytes, &n_bytes)) {
    // A product that overflows with a zero dim present is still zero bytes; only reject when
    // every dim is non-zero.
    bool has_zero = std::find(t.shape.begin(), t.shape.end(), 0) != t.shape.end();
    if (!has_zero) return err(where + ": shape element count overflows");
    n_elements = 0;
    n_bytes = 0;
  }

  auto offsets_it = v.find("data_offsets");
  if (offsets_it == v.end()) return err(where + ": missing 'data_offsets'");
  if (!offsets_it->is_array() || offsets_it->size() != 2) {
    return err(where + ": 'data_offsets' is not an array of two integers");
  }
  CARPOOL_ASSIGN_OR_RETURN(t.begin, parse_u64((*offsets_it)[0], where + ": data_offsets[0]"));
  CARPOOL_ASSIGN_OR_RETURN(t.end, parse_u64((*offsets_it)[1], where + ": data_offsets[1]"));
  if (t.end < t.begin) {
    return err(where + ": data_offsets end " + std::to_string(t.end) + " < begin " +
               std::to_string(t.begin));
  }
  if (t.end > data_bytes) {
    return err(where + ": data_offsets end " + std::to_string(t.end) +
               " is past the data section (" + std::to_string(data_bytes) + " bytes)");
  }
  if (t.end - t.begin != n_bytes) {
    return err(where + ": shape needs " + std::to_string(n_bytes) +
               " bytes but data_offsets span " + std::to_string(t.end - t.begin));
  }
  return t;
}

Status parse_metadata(const Json& v, std::vector<std::pair<std::string, std::string>>& out) {
  if (!v.is_object()) return err("'__metadata__' is not an object");
  for (const auto& [key, value] : v.items()) {
    if (!value.is_string())
      return err("'__metadata__' value for " + quote_name(key) + " is not a string");
    out.emplace_back(key, value.get<std::string>());
  }
  return Status::ok();
}

}  // namespace

int64_t SafetensorsTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // validated at parse time: fits
  return n;
}

SafetensorsFile::SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped) return mapped.status();
  auto file = std::make_unique<MappedFile>(std::move(mapped).value());
  auto parsed = parse(file->data(), file->size());
  if (!parsed) return Status::error(path + ": " + parsed.error());
  SafetensorsFile out = std::move(parsed).value();
  out.file_ = std::move(file);  // tensor pointers already view this mapping; it does not move
  return out;
}

Result<SafetensorsFile> SafetensorsFile::parse(const uint8_t* data, size_t size) {
  if (size < 8) return err("file is " + std::to_string(size) + " bytes, too short for a header");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > kMaxHeaderBytes) {
    return err("header length " + std::to_string(header_len) + " exceeds the " +
               std::to_string(kMaxHeaderBytes) + "-byte limit");
  }
  if (header_len > size - 8) {
    return err("header length " + std::to_string(header_len) + " exceeds the file (" +
               std::to_string(size) + " bytes): truncated?");
  }
  if (header_len < 2) return err("header is too short to be a JSON object");
  std::string_view text(reinterpret_cast<const char*>(data + 8), header_len);
  if (text.front() != '{') return err("header does not start with '{'");
  Json header;
  CARPOOL_RETURN_IF_ERROR(parse_json_strict(text, kMaxJsonDepth, "safetensors: header", header));
  if (!header.is_object()) return err("header is not a JSON object");

  SafetensorsFile out;
  out.data_bytes_ = size - 8 - header_len;
  const uint8_t* data_start = data + 8 + header_len;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      CARPOOL_RETURN_IF_ERROR(parse_metadata(value, out.metadata_));
      continue;
    }
    CARPOOL_ASSIGN_OR_RETURN(SafetensorsTensor t, parse_tensor(name, value, out.data_bytes_));
    t.data = data_start + t.begin;
    out.tensors_.push_back(std::move(t));
  }

  // The byte ranges must tile [0, data_bytes) exactly.
  std::vector<const SafetensorsTensor*> by_offset;
  by_offset.reserve(out.tensors_.size());
  for (const auto& t : out.tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expected = 0;
  const SafetensorsTensor* prev = nullptr;
  for (const auto* t : by_offset) {
    if (t->begin < expected) {
      return err("tensor " + quote_name(t->name) + " overlaps tensor " + quote_name(prev->name) +
                 " (bytes " + std::to_string(t->begin) + ".." + std::to_string(expected) + ")");
    }
    if (t->begin > expected) {
      return err("hole in the data section before tensor " + quote_name(t->name) + " (bytes " +
                 std::to_string(expected) + ".." + std::to_string(t->begin) + " unused)");
    }
    expected = t->end;
    prev = t;
  }
  if (expected != out.data_bytes_) {
    return err("data section has " + std::to_string(out.data_bytes_ - expected) +
               " trailing bytes not covered by any tensor");
  }
  // nlohmann's object is a sorted map, so tensors_ is sorted by name: find() bisects.
  return out;
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  auto it =
      std::lower_bound(tensors_.begin(), tensors_.end(), name,
                       [](const SafetensorsTensor& t, std::string_view n) { return t.name < n; });
  if (it == tensors_.end() || it->name != name) return nullptr;
  return &*it;
}

}  // namespace carpool
