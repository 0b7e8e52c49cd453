#include "formats/gguf.h"

#include <cstring>
#include <limits>

#include "util/mapped_file.h"

namespace carpool {
namespace {

// Bounds on what a file may claim, so nothing is sized by an unchecked count.
constexpr uint64_t kMaxKeyLength = 1 << 16;
constexpr uint64_t kMaxStringLength = 1ull << 30;
constexpr uint32_t kMaxDims = 4;
constexpr uint64_t kMaxAlignment = 1 << 20;

// Cursor over the untrusted bytes; every read is bounds-checked.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const uint8_t* at(size_t p) const { return data_ + p; }

  template <typename T>
  Status read(T* out, const char* what) {
    if (remaining() < sizeof(T)) return truncated(what);
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::ok();
  }
  Status skip(uint64_t n, const char* what) {
    if (n > remaining()) return truncated(what);
    pos_ += static_cast<size_t>(n);
    return Status::ok();
  }
  Status read_string(std::string_view* out, uint64_t max_len, const char* what) {
    uint64_t len = 0;
    CARPOOL_RETURN_IF_ERROR(read(&len, what));
    if (len > max_len) {
      return Status::error(std::string("gguf: ") + what + " length " + std::to_string(len) +
                           " exceeds the limit " + std::to_string(max_len));
    }
    if (len > remaining()) return truncated(what);
    *out = std::string_view(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += static_cast<size_t>(len);
    return Status::ok();
  }
  Status truncated(const char* what) const {
    return Status::error(std::string("gguf: file truncated while reading ") + what + " at byte " +
                         std::to_string(pos_));
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool:
      return 1;
    case GgufType::kU16:
    case GgufType::kI16:
      return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32:
      return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64:
      return 8;
    default:
      return 0;
  }
}

bool valid_type(uint32_t t) {
  return t <= static_cast<uint32_t>(GgufType::kF64);
}

// Reads one scalar of type t at the cursor into v.
Status read_scalar(Reader& r, GgufType t, GgufValue* v) {
  v->type = t;
  switch (t) {
    case GgufType::kU8: {
      uint8_t x = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&x, "u8"));
      v->u = x;
      v->i = x;
      v->f = x;
      break;
    }
    case GgufType::kI8: {
      int8_t x = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&x, "i8"));
      v->i = x;
      v->u = static_cast<uint64_t>(x);
      v->f = x;
      break;
    }
    case GgufType::kU16: {
      uint16_t x = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&x, "u16"));
      v->u = x;
      v->i = x;
      v->f = x;
      break;
    }
    case GgufType::kI16: {
      int16_t x = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&x, "i16"));
      v->i = x;
      v->u = static_cast<uint64_t>(x);
      v->f = x;
      break;
    }
    case GgufType::kU32: {
      uint32_t x = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&x, "u32"));
      v->u = x;
      v->i = x;
      v->f = x;
      break;
    }
    case GgufType::kI32: {
      int32_t x = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&x, "i32"));
      v->i = x;
      v->u = static_cast<uint64_t>(x);
      v->f = x;
      break;
    }
    case GgufType::kU64: {
      uint64_t x = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&x, "u64"));
      v->u = x;
      v->i = static_cast<int64_t>(x);
      v->f = static_cast<double>(x);
      break;
    }
    case GgufType::kI64: {
      int64_t x = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&x, "i64"));
      v->i = x;
      v->u = static_cast<uint64_t>(x);
      v->f = static_cast<double>(x);
      break;
    }
    case GgufType::kF32: {
      float x = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&x, "f32"));
      v->f = x;
      break;
    }
    case GgufType::kF64: {
      double x = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&x, "f64"));
      v->f = x;
      break;
    }
    case GgufType::kBool: {
      uint8_t x = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&x, "bool"));
      if (x > 1) return Status::error("gguf: bool value " + std::to_string(x) + " is not 0 or 1");
      v->u = x;
      v->i = x;
      v->f = x;
      break;
    }
    default:
      return Status::error("gguf: not a scalar type");
  }
  return Status::ok();
}

Status read_value(Reader& r, GgufType t, GgufValue* v, const std::string& key) {
  if (t == GgufType::kString) {
    v->type = t;
    return r.read_string(&v->str, kMaxStringLength, "string value");
  }
  if (t != GgufType::kArray) return read_scalar(r, t, v);
  uint32_t et = 0;
  CARPOOL_RETURN_IF_ERROR(r.read(&et, "array type"));
  if (!valid_type(et)) {
    return Status::error("gguf: key '" + key + "' has invalid array element type " +
                         std::to_string(et));
  }
  if (static_cast<GgufType>(et) == GgufType::kArray) {
    return Status::error("gguf: key '" + key + "' is a nested array (unsupported)");
  }
  uint64_t count = 0;
  CARPOOL_RETURN_IF_ERROR(r.read(&count, "array length"));
  v->type = GgufType::kArray;
  v->array_type = static_cast<GgufType>(et);
  v->array_count = count;
  v->array_data = r.at(r.pos());
  size_t start = r.pos();
  if (v->array_type == GgufType::kString) {
    // Each string needs at least its 8-byte length, so count is bounded by what remains.
    if (count > r.remaining() / 8) {
      return Status::error("gguf: key '" + key + "' claims " + std::to_string(count) +
                           " strings, more than the file holds");
    }
    for (uint64_t i = 0; i < count; ++i) {
      std::string_view s;
      CARPOOL_RETURN_IF_ERROR(r.read_string(&s, kMaxStringLength, "array string"));
    }
  } else {
    size_t es = scalar_size(v->array_type);
    if (count > r.remaining() / es) {
      return Status::error("gguf: key '" + key + "' claims " + std::to_string(count) +
                           " elements, more than the file holds");
    }
    if (v->array_type == GgufType::kBool) {
      for (uint64_t i = 0; i < count; ++i) {
        if (*r.at(r.pos() + i) > 1)
          return Status::error("gguf: key '" + key + "' has a bool that is not 0 or 1");
      }
    }
    CARPOOL_RETURN_IF_ERROR(r.skip(count * es, "array data"));
  }
  v->array_bytes = r.pos() - start;
  return Status::ok();
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

}  // namespace

GgufFile::GgufFile() = default;
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

Result<GgufFile> GgufFile::open(const std::string& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped) return mapped.status();
  auto holder = std::make_unique<MappedFile>(std::move(mapped).value());
  auto parsed = parse(holder->data(), holder->size());
  if (!parsed) return Status::error(path + ": " + parsed.error());
  GgufFile f = std::move(parsed).value();
  f.file_ = std::move(holder);
  return f;
}

Result<GgufFile> GgufFile::parse(const uint8_t* data, size_t size) {
  Reader r(data, size);
  uint32_t magic = 0;
  CARPOOL_RETURN_IF_ERROR(r.read(&magic, "magic"));
  if (std::memcmp(&magic, "GGUF", 4) != 0)
    return Status::error("gguf: not a GGUF file (bad magic)");
  GgufFile f;
  CARPOOL_RETURN_IF_ERROR(r.read(&f.version_, "version"));
  if (f.version_ != 2 && f.version_ != 3) {
    return Status::error("gguf: unsupported version " + std::to_string(f.version_) +
                         " (2 or 3 supported)");
  }
  uint64_t n_tensors = 0, n_kv = 0;
  CARPOOL_RETURN_IF_ERROR(r.read(&n_tensors, "tensor count"));
  CARPOOL_RETURN_IF_ERROR(r.read(&n_kv, "metadata count"));
  // A key-value pair takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
  // 8 + 4 + 8 + 4 + 8. Counts beyond what the file could hold are rejected before any reserve.
  if (n_kv > r.remaining() / 13) {
    return Status::error("gguf: metadata count " + std::to_string(n_kv) +
                         " exceeds what the file holds");
  }
  if (n_tensors > r.remaining() / 32) {
    return Status::error("gguf: tensor count " + std::to_string(n_tensors) +
                         " exceeds what the file holds");
  }
  f.kv_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string_view key;
    CARPOOL_RETURN_IF_ERROR(r.read_string(&key, kMaxKeyLength, "metadata key"));
    uint32_t t = 0;
    CARPOOL_RETURN_IF_ERROR(r.read(&t, "metadata type"));
    if (!valid_type(t)) {
      return Status::error("gguf: key '" + std::string(key) + "' has invalid type " +
                           std::to_string(t));
    }
    GgufValue v;
    CARPOOL_RETURN_IF_ERROR(read_value(r, static_cast<GgufType>(t), &v, std::string(key)));
    if (!f.kv_index_.emplace(std::string(key), f.kv_.size()).second)
      return Status::error("gguf: duplicate metadata key '" + std::string(key) + "'");
    f.kv_.emplace_back(std::string(key), v);
  }
  if (const GgufValue* a = f.find("general.alignment")) {
    if (a->type != GgufType::kU32 && a->type != GgufType::kU64 && a->type != GgufType::kI32) {
      return Status::error("gguf: general.alignment has the wrong type");
    }
    if (a->u == 0 || a->u > kMaxAlignment || (a->u & (a->u - 1)) != 0) {
      return Status::error("gguf: general.alignment " + std::to_string(a->u) +
                           " is not a power of two <= 1 MiB");
    }
    f.alignment_ = static_cast<size_t>(a->u);
  }
  f.tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo ti;
    std::string_view name;
    CARPOOL_RETURN_IF_ERROR(r.read_string(&name, kMaxKeyLength, "tensor name"));
    ti.name = std::string(name);
    uint32_t n_dims = 0;
    CARPOOL_RETURN_IF_ERROR(r.read(&n_dims, "tensor dims"));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return Status::error("gguf: tensor '" + ti.name + "' has " + std::to_string(n_dims) +
                           " dimensions (1 to 4 supported)");
    }
    uint64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = 0;
      CARPOOL_RETURN_IF_ERROR(r.read(&dim, "tensor dimension"));
      if (dim == 0 || dim > (1ull << 40) || mul_overflows(n_el, dim, &n_el) ||
          n_el > (1ull << 42)) {
        return Status::error("gguf: tensor '" + ti.name +
                             "' has an invalid or overflowing dimension " + std::to_string(dim));
      }
      ti.dims.push_back(static_cast<int64_t>(dim));
    }
    ti.n_elements = n_el;
    uint32_t type_id = 0;
    CARPOOL_RETURN_IF_ERROR(r.read(&type_id, "tensor type"));
    auto info = dtype_info(type_id);
    if (!info || !dtype_is_weight(static_cast<DType>(type_id))) {
      return Status::error("gguf: tensor '" + ti.name + "' has unsupported type id " +
                           std::to_string(type_id));
    }
    ti.dtype = static_cast<DType>(type_id);
    if (ti.dims[0] % info->block_elems != 0) {
      return Status::error("gguf: tensor '" + ti.name + "' row length " +
                           std::to_string(ti.dims[0]) + " is not a multiple of the " +
                           std::string(info->name) + " block size");
    }
    ti.n_bytes = n_el / info->block_elems * info->block_bytes;
    CARPOOL_RETURN_IF_ERROR(r.read(&ti.offset, "tensor offset"));
    if (ti.offset % f.alignment_ != 0) {
      return Status::error("gguf: tensor '" + ti.name + "' offset " + std::to_string(ti.offset) +
                           " is not aligned");
    }
    if (!f.tensor_index_.emplace(ti.name, f.tensors_.size()).second)
      return Status::error("gguf: duplicate tensor name '" + ti.name + "'");
    f.tensors_.push_back(std::move(ti));
  }
  // The data section starts at the next aligned offset.
  size_t data_start = (r.pos() + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  if (n_tensors > 0 && data_start > size) return r.truncated("data section");
  size_t data_size = n_tensors > 0 ? size - data_start : 0;
  for (GgufTensorInfo& ti : f.tensors_) {
    if (ti.offset > data_size || ti.n_bytes > data_size - ti.offset) {
      return Status::error("gguf: tensor '" + ti.name + "' data [" + std::to_string(ti.offset) +
                           ", +" + std::to_string(ti.n_bytes) +
                           ") lies outside the file's data section of " +
                           std::to_string(data_size) + " bytes");
    }
    ti.data = data + data_start + ti.offset;
  }
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
Status missing(std::string_view key) {
  return Status::error("gguf: missing key '" + std::string(key) + "'");
}
Status wrong_type(std::string_view key, const char* want) {
  return Status::error("gguf: key '" + std::string(key) + "' is not " + want);
}
bool is_int(GgufType t) {
  return t == GgufType::kU8 || t == GgufType::kI8 || t == GgufType::kU16 || t == GgufType::kI16 ||
         t == GgufType::kU32 || t == GgufType::kI32 || t == GgufType::kU64 || t == GgufType::kI64;
}
}  // namespace

Result<std::string_view> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(key);
  if (v->type != GgufType::kString) return wrong_type(key, "a string");
  return v->str;
}

Result<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(key);
  if (!is_int(v->type)) return wrong_type(key, "an integer");
  if (v->type == GgufType::kU64 &&
      v->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Status::error("gguf: key '" + std::string(key) + "' is out of range");
  }
  return v->i;
}

Result<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(key);
  if (v->type != GgufType::kF32 && v->type != GgufType::kF64 && !is_int(v->type))
    return wrong_type(key, "a number");
  return v->f;
}

Result<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(key);
  if (v->type != GgufType::kBool) return wrong_type(key, "a bool");
  return v->u != 0;
}

Result<std::vector<std::string_view>> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(key);
  if (v->type != GgufType::kArray || v->array_type != GgufType::kString)
    return wrong_type(key, "an array of strings");
  std::vector<std::string_view> out;
  out.reserve(v->array_count);  // bounded at parse time by the file size
  Reader r(v->array_data, v->array_bytes);
  for (uint64_t i = 0; i < v->array_count; ++i) {
    std::string_view s;
    CARPOOL_RETURN_IF_ERROR(r.read_string(&s, kMaxStringLength, "array string"));
    out.push_back(s);
  }
  return out;
}

Result<std::vector<float>> GgufFile::get_f32_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(key);
  if (v->type != GgufType::kArray || v->array_type != GgufType::kF32)
    return wrong_type(key, "an array of f32");
  std::vector<float> out(v->array_count);
  if (v->array_count > 0) std::memcpy(out.data(), v->array_data, v->array_count * sizeof(float));
  return out;
}

Result<std::vector<int32_t>> GgufFile::get_i32_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return missing(key);
  if (v->type != GgufType::kArray || !is_int(v->array_type))
    return wrong_type(key, "an array of integers");
  std::vector<int32_t> out;
  out.reserve(v->array_count);
  Reader r(v->array_data, v->array_bytes);
  for (uint64_t i = 0; i < v->array_count; ++i) {
    GgufValue e;
    CARPOOL_RETURN_IF_ERROR(read_scalar(r, v->array_type, &e));
    if (e.i < std::numeric_limits<int32_t>::min() || e.i > std::numeric_limits<int32_t>::max()) {
      return Status::error("gguf: key '" + std::string(key) +
                           "' has an element out of int32 range");
    }
    out.push_back(static_cast<int32_t>(e.i));
  }
  return out;
}

}  // namespace carpool
