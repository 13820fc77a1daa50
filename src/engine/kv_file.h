// A plain file of exported KV rows (KvExport) with a SHA-256 trailer, used to
// hand a session's cache to another process. Signed, content-addressed
// artifacts are the artifact module's `.kva`; this is the raw engine format:
//
//   "KVMRAWKV" | u32 version=1 | u32 layers | u32 kv_heads | u32 head_dim |
//   u64 begin | u64 n_tokens | u32 token_ids[n] | u16 data[...] | sha256(all before)
// All integers little-endian.
#pragma once

#include <string>

#include "base/status.h"
#include "engine/engine.h"

namespace kvmart {

Status WriteKvFile(const std::string& path, const KvExport& kv);
// Validates the header against the file size before allocating, and the trailer.
StatusOr<KvExport> ReadKvFile(const std::string& path);

}  // namespace kvmart
