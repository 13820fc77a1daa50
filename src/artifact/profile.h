// Profile: everything that changes the bytes of a KV cache (docs/DESIGN.md §4).
//
// Two parties compute the same KV bytes for the same tokens only when weights,
// config, tokenizer, KV dtype, KV shape, numerics profile and block size all agree,
// so the profile is folded into every content address. Its canonical JSON (sorted
// keys, no whitespace, integers only) is hashed into `profile_digest`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/sha256.h"
#include "base/status.h"

namespace kvmart::artifact {

enum class KvDtype : uint8_t { kBf16 = 1, kF16 = 2 };

// "bf16" / "f16".
std::string_view KvDtypeName(KvDtype d);
StatusOr<KvDtype> ParseKvDtype(std::string_view name);

// Geometry of one token's KV: per layer K then V, each [kv_heads][head_dim].
struct KvShape {
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  KvDtype dtype = KvDtype::kBf16;

  // Bytes of K+V for one token over all layers (2 * L * H * D * 2).
  uint64_t BytesPerToken() const;
  // Rejects zero or absurd dimensions (each ≤ 65536, BytesPerToken ≤ 64 MiB) so
  // that size arithmetic downstream cannot overflow.
  Status Validate() const;
  bool operator==(const KvShape&) const = default;
};

inline constexpr std::string_view kNumericsCpuFmaSeqV1 = "cpu-fma-seq-v1";
inline constexpr uint32_t kDefaultBlockSize = 256;

struct Profile {
  std::string weights_digest;    // 64 lower-case hex (SHA-256 over tensors in name order)
  std::string config_digest;     // 64 lower-case hex
  std::string tokenizer_digest;  // 64 lower-case hex
  std::string numerics = std::string(kNumericsCpuFmaSeqV1);
  uint32_t block_size = kDefaultBlockSize;
  KvShape shape;  // shape.dtype is the KV dtype

  bool operator==(const Profile&) const = default;

  // Field-level checks: hex digests, block size in [1, 1<<20], valid shape,
  // numerics id non-empty printable ASCII.
  Status Validate() const;
};

// Canonical JSON object (see docs/ARTIFACT.md §2 for the exact key set).
nlohmann::json ProfileToJson(const Profile& p);
// Strict: every key required, no unknown keys, types exact; then Validate().
StatusOr<Profile> ProfileFromJson(const nlohmann::json& j);
// Canonical text: sorted keys, no whitespace.
std::string CanonicalProfileJson(const Profile& p);
// SHA-256 of CanonicalProfileJson (raw 32 bytes).
Digest256 ProfileDigest(const Profile& p);

// Ok when equal; otherwise FailedPrecondition naming the first differing field,
// e.g. "profile mismatch: weights_digest: artifact has 12ab.., model has 34cd..".
Status CheckProfileMatches(const Profile& expected, const Profile& actual);

}  // namespace kvmart::artifact
