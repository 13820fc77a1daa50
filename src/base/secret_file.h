// Secret files (API keys, signing keys): written once, atomically, never
// readable by group or other at any moment.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace kvmart {

enum class SecretWrite {
  kCreateOnly,  // AlreadyExists when `path` exists (a concurrent creator wins)
  kReplace,     // atomically replaces an existing file
};

// Writes `text` to `path`: a temporary file in the same directory is created
// with mode 0600 (O_EXCL, so the umask can only remove bits), written in full,
// fsync'd, then linked (kCreateOnly) or renamed (kReplace) to `path`, and the
// directory fsync'd. On any error `path` is unchanged and the temporary file
// is gone. The caller's copy of the secret is not wiped here.
Status WriteSecretFile(const std::string& path, std::string_view text, SecretWrite mode);

// The file's contents; NotFound when it does not exist, PermissionDenied when
// group or other may read it (a secret someone else could have copied).
StatusOr<std::string> ReadSecretFile(const std::string& path);

}  // namespace kvmart
