#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/unicode.h"

namespace carpool {
namespace {

struct Tables {
  std::array<uint32_t, 256> byte_to_cp;
  std::array<int16_t, 512> cp_to_byte;  // all mapped code points are below U+0200
};

Tables make_tables() {
  Tables t;
  t.cp_to_byte.fill(-1);
  uint32_t extra = 0;
  for (uint32_t b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    t.byte_to_cp[b] = printable ? b : 256 + extra++;
    t.cp_to_byte[t.byte_to_cp[b]] = static_cast<int16_t>(b);
  }
  return t;
}

const Tables& tables() {
  static const Tables t = make_tables();  // immutable after first use
  return t;
}

}  // namespace

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) unicode::append_utf8(out, tables().byte_to_cp[b]);
  return out;
}

bool byte_level_decode(std::string_view text, std::string* bytes) {
  bytes->clear();
  bytes->reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    unicode::Utf8Char c = unicode::decode_utf8(text, i);
    if (c.cp >= 512 || tables().cp_to_byte[c.cp] < 0) return false;
    bytes->push_back(static_cast<char>(tables().cp_to_byte[c.cp]));
    i += c.len;
  }
  return true;
}

}  // namespace carpool
