// UTF-8 and Unicode helpers for the tokenizer: decoding that tolerates invalid bytes, character
// classes used by the pre-tokenizers (\p{L}, \p{N}, \s) and NFC normalization.
//
// Every function is pure and thread-safe. Input strings are untrusted and may hold invalid UTF-8.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace carpool::unicode {

// A code point that never occurs in valid text: stands for an invalid byte.
inline constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFFu;

struct Utf8Char {
  uint32_t cp;   // kInvalidCodePoint for a byte that does not start a valid sequence
  uint32_t len;  // bytes consumed, 1..4 (1 for an invalid byte)
};

// Decodes the character starting at s[i] (i < s.size()). Overlong forms, surrogates, values past
// U+10FFFF and truncated sequences decode as one invalid byte.
Utf8Char decode_utf8(std::string_view s, size_t i);

// Appends the UTF-8 encoding of `cp` (a valid scalar value) to `out`.
void append_utf8(std::string& out, uint32_t cp);

// Character classes (false for kInvalidCodePoint).
bool is_letter(uint32_t cp);      // general category L*
bool is_number(uint32_t cp);      // general category N*
bool is_whitespace(uint32_t cp);  // the White_Space property

// Canonical composition (NFC). Invalid bytes pass through unchanged.
std::string nfc(std::string_view s);

// Replaces each maximal invalid subsequence with U+FFFD, the way the reference tokenizers turn
// decoded bytes into text (Rust's String::from_utf8_lossy).
std::string utf8_lossy(std::string_view s);

// Length of the longest prefix of `s` after which no pending multi-byte sequence is cut short:
// the bytes past it are the start of a sequence that may still become valid with more bytes.
size_t utf8_complete_prefix(std::string_view s);

bool is_valid_utf8(std::string_view s);

}  // namespace carpool::unicode
