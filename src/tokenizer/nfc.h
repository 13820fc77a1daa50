// Unicode Normalization Form C, the normalizer of Qwen2/Qwen3 tokenizer.json.
// Implemented with ICU's Normalizer2 (libicu-dev) on UTF-8 directly.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace kvmart::tokenizer {

// NFC of well-formed UTF-8 `s`. Pure ASCII and already-normalized text (the
// common case) is returned without building a new string's worth of work.
StatusOr<std::string> NormalizeNfc(std::string_view s);

}  // namespace kvmart::tokenizer
