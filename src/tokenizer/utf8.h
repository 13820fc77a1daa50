// UTF-8 validation and lossy decoding, shared by encode (which must reject
// invalid input) and decode (which must turn arbitrary token bytes into text).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "base/status.h"

namespace kvmart::tokenizer {

// Ok when `s` is well-formed UTF-8 (no overlongs, surrogates or code points
// above U+10FFFF); otherwise InvalidArgument naming the byte offset.
Status ValidateUtf8(std::string_view s);

// Length of the well-formed sequence starting at s[0]: 1..4, or 0 when s[0]
// starts an ill-formed sequence, or -1 when s is a valid but truncated start of
// a sequence (more bytes could complete it). `s` must be non-empty.
int Utf8SequenceLength(std::string_view s);

// Appends `bytes` to *out, replacing each maximal ill-formed subpart with
// U+FFFD, the policy of WHATWG TextDecoder and Rust's from_utf8_lossy (and so
// of the reference tokenizers' decoders). A truncated tail is replaced too.
void AppendUtf8Lossy(std::string_view bytes, std::string* out);

// Length of the longest prefix of `bytes` after which more bytes cannot change
// the lossy decoding of that prefix: everything except a trailing, still
// completable, truncated sequence. Used by the streaming decoder.
size_t StableUtf8PrefixLength(std::string_view bytes);

}  // namespace kvmart::tokenizer
