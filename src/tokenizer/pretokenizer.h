// Pre-tokenizers: split text into words before BPE, as the reference tokenizers' regular
// expressions do. Each rule set is written by hand over Unicode character classes (no regex
// engine), matching the alternatives in order the way a backtracking regex engine does.
//
// Rule sets (the patterns are those of the published tokenizer.json files):
//   kGpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   kSmolLM: every \p{N} character is a word of its own (the `Digits` pre-tokenizer with
//            individual_digits), then kGpt2 on the text between them (StarCoder, SmolLM).
//   kLlama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   kQwen2:  as kLlama3 but \p{N} (one digit per word).
//   kNone:   the whole text is one word (SentencePiece-style models).
//
// Invalid UTF-8 bytes count as one character that is neither letter, number nor space.
#pragma once

#include <string_view>
#include <vector>

namespace carpool {

enum class PreTokenizerKind { kNone, kGpt2, kSmolLM, kLlama3, kQwen2 };

const char* pre_tokenizer_name(PreTokenizerKind kind);

// Appends the words of `text` to `out`, in order; the words cover `text` exactly. The views point
// into `text`.
void pre_tokenize(PreTokenizerKind kind, std::string_view text, std::vector<std::string_view>* out);

}  // namespace carpool
