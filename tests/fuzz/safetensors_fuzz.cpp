// libFuzzer target for the safetensors reader. Any crash, sanitizer report, or tensor view that
// escapes the input buffer is a bug; parse errors are expected.
#include <cstddef>
#include <cstdint>

#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = carpool::SafetensorsFile::parse(data, size);
  if (!r.is_ok()) return 0;
  const carpool::SafetensorsFile& f = r.value();
  volatile uint8_t sink = 0;
  uint64_t covered = 0;
  for (const auto& t : f.tensors()) {
    // Touch both ends of every view: ASan reports any byte outside the input.
    if (t.n_bytes() > 0) sink = sink + t.data[0] + t.data[t.n_bytes() - 1];
    if (f.find(t.name) != &t) __builtin_trap();  // lookup must find the same tensor
    covered += t.n_bytes();
  }
  // Tensors tile the data section exactly.
  if (covered != f.data_bytes()) __builtin_trap();
  return 0;
}
