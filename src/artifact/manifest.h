// The manifest: the signed, canonical-JSON description of an artifact (docs/DESIGN.md §4).
//
// The manifest names everything needed to trust the blocks before reading them:
// profile, token ids, per-block chain hash / sizes / payload SHA-256 / XXH3-128 of
// the stored bytes, the probe digest, the publisher and an Ed25519 signature over
// the canonical manifest text without the "signature" key. Exact schema:
// docs/ARTIFACT.md §4.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "artifact/codec.h"
#include "artifact/profile.h"
#include "artifact/signing.h"
#include "base/sha256.h"
#include "base/status.h"

namespace kvmart::artifact {

struct FormatVersion {
  uint32_t major = 1;
  uint32_t minor = 0;
  bool operator==(const FormatVersion&) const = default;
};
// The version this code writes. It reads major 1, any minor (fields added by a
// newer minor are ignored but still covered by the signature).
inline constexpr FormatVersion kCurrentFormat{1, 0};

// Largest decoded block this reader will ever allocate (a block of the 4B model at
// 256 tokens is 37.7 MB). Profiles whose block would exceed it are rejected.
inline constexpr uint64_t kMaxBlockRawBytes = 1ull << 30;

using Xxh3Digest = std::array<uint8_t, 16>;  // XXH3-128, canonical (big-endian) byte order

struct BlockInfo {
  uint32_t index = 0;
  uint64_t token_begin = 0;  // [token_begin, token_end)
  uint64_t token_end = 0;
  Digest256 chain_hash{};
  Codec codec = Codec::kRaw;
  uint64_t raw_bytes = 0;
  uint64_t stored_bytes = 0;
  Digest256 payload_sha256{};  // of the raw (decoded) payload
  Xxh3Digest xxh3_128{};       // of the stored (encoded) bytes
};

struct Manifest {
  FormatVersion version = kCurrentFormat;
  std::string artifact_id;  // "kv1-" + hex(last chain hash)
  Profile profile;
  std::vector<uint32_t> tokens;
  std::vector<BlockInfo> blocks;
  Digest256 probe_logits_sha256{};
  PublicKey publisher{};
  std::string created_at;  // RFC 3339 UTC, "YYYY-MM-DDTHH:MM:SSZ"
  std::optional<std::string> title;
  std::optional<Digest256> source_sha256;
  std::optional<Signature> signature;
  // Canonical text the signature covers (manifest without "signature"). Filled by
  // SignManifest and ParseManifest; for a parsed newer-minor manifest it includes
  // fields this reader does not model.
  std::string signed_text;

  uint64_t TotalRawBytes() const;
  uint64_t TotalStoredBytes() const;
};

// Canonical JSON of the manifest; with_signature=false gives the signed text.
StatusOr<std::string> SerializeManifest(const Manifest& m, bool with_signature = true);

// Sets publisher, signed_text and signature.
Status SignManifest(Manifest* m, const SigningKey& key);

// Parses untrusted text: canonical form, exact types, supported version, then
// ValidateManifest. Does NOT check the signature (see VerifyManifestSignature).
StatusOr<Manifest> ParseManifest(std::string_view text);

// Internal consistency: profile valid, token_count, block layout, raw sizes from
// the shape, chain hashes and artifact id recomputed from profile + tokens, raw
// codec ⇒ stored == raw, per-block raw size ≤ kMaxBlockRawBytes.
Status ValidateManifest(const Manifest& m);

// Unauthenticated when the signature is missing or does not verify against the
// publisher key over signed_text.
Status VerifyManifestSignature(const Manifest& m);

// Current UTC time as "YYYY-MM-DDTHH:MM:SSZ".
std::string NowRfc3339();

}  // namespace kvmart::artifact
