// The GPT-2 byte <-> character mapping used by byte-level BPE vocabularies: printable bytes map to
// themselves, the others (space, control bytes, ...) to U+0100 and up, so every byte string has a
// printable spelling ("Ġthe" for " the").
#pragma once

#include <string>
#include <string_view>

namespace carpool {

// Bytes -> mapped text (UTF-8).
std::string byte_level_encode(std::string_view bytes);

// Mapped text -> bytes. Returns false (and leaves `bytes` unspecified) when `text` holds a
// character outside the mapping; callers then use the text's own bytes, as the reference does.
bool byte_level_decode(std::string_view text, std::string* bytes);

}  // namespace carpool
