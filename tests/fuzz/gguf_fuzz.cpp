// libFuzzer target for the GGUF reader: parses the input and reads every metadata value and
// tensor view through the public API. Any crash or sanitizer report is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "formats/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = carpool::GgufFile::parse(data, size);
  if (!r.is_ok()) return 0;
  const carpool::GgufFile& f = r.value();
  volatile size_t sink = 0;
  for (const auto& [key, value] : f.metadata()) {
    // Each typed getter either succeeds or reports the key; none may read out of bounds.
    if (auto s = f.get_string(key); s.is_ok()) sink = sink + s.value().size();
    if (auto i = f.get_int(key); i.is_ok()) sink = sink + static_cast<size_t>(i.value());
    if (auto d = f.get_float(key); d.is_ok()) sink = sink + (d.value() > 0);
    if (auto b = f.get_bool(key); b.is_ok()) sink = sink + b.value();
    if (auto a = f.get_string_array(key); a.is_ok()) {
      for (auto sv : a.value()) sink = sink + sv.size();
    }
    if (auto a = f.get_f32_array(key); a.is_ok()) sink = sink + a.value().size();
    if (auto a = f.get_i32_array(key); a.is_ok()) sink = sink + a.value().size();
    if (f.find(key) == nullptr) __builtin_trap();
  }
  for (const auto& t : f.tensors()) {
    if (t.n_bytes > 0) sink = sink + t.data[0] + t.data[t.n_bytes - 1];
    sink = sink + static_cast<size_t>(t.rows()) + static_cast<size_t>(t.cols());
    if (f.find_tensor(t.name) == nullptr) __builtin_trap();
  }
  return 0;
}
