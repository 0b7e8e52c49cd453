// libFuzzer target for tokenizer.json loading and for encoding with whatever loads. Errors are
// expected; crashes, sanitizer reports, out-of-range ids and failed round trips are bugs.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The input is "tokenizer.json\0text to encode".
  std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  std::string_view json = all.substr(0, nul);
  std::string_view text = nul == std::string_view::npos ? "Hello world 123" : all.substr(nul + 1);
  auto tok = carpool::Tokenizer::from_hf_json(json, "");
  if (!tok.is_ok()) return 0;
  const carpool::Tokenizer& t = tok.value();
  for (bool special : {false, true}) {
    auto ids = t.encode(text, special, special);
    for (int32_t id : ids) {
      if (id < 0 || id >= t.vocab_size()) __builtin_trap();
    }
    std::string full = t.decode(ids);
    carpool::StreamDecoder dec(t);
    std::string streamed;
    for (int32_t id : ids) streamed += dec.push(id);
    streamed += dec.finish();
    (void)full;
    (void)streamed;
  }
  return 0;
}
