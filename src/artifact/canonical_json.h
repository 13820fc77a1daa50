// Canonical JSON text, the form every hashed or signed JSON in an artifact takes.
//
// Rules (docs/ARTIFACT.md §1): object keys sorted by byte value, no whitespace,
// only strings, non-negative integers, arrays and objects; strings UTF-8 with
// nlohmann's minimal escaping. Hashes and signatures are only reproducible by an
// independent implementation if the text is, so the reader also rejects input that
// is not already canonical.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace kvmart::artifact {

// Serialises canonically; InvalidArgument on a float, negative number, null,
// boolean or invalid UTF-8 in a string.
StatusOr<std::string> CanonicalJson(const nlohmann::json& j);

// Parses untrusted text: bounded nesting depth (checked before parsing), no
// exceptions escape, and the text must equal its canonical re-serialisation.
StatusOr<nlohmann::json> ParseCanonicalJson(std::string_view text, int max_depth = 8);

}  // namespace kvmart::artifact
