// GPT-2 byte-level alphabet: every byte maps to one printable code point, so a
// vocabulary of strings can represent arbitrary bytes. tokenizer.json stores
// tokens and merges in this alphabet; kvmart works on raw bytes internally and
// converts only when loading.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace kvmart::tokenizer {

// The byte-level string (UTF-8) that stands for raw `bytes`.
std::string BytesToByteLevel(std::string_view bytes);

// The raw bytes that the byte-level string `s` stands for, or nullopt when `s`
// holds a code point outside the 256-symbol alphabet (or is not UTF-8).
std::optional<std::string> ByteLevelToBytes(std::string_view s);

}  // namespace kvmart::tokenizer
