// Integrity checks for stored blocks (docs/DESIGN.md §4, "Integrity").
//
// Two levels, because they guard against different things: XXH3-128 of the stored
// bytes is cheap (tens of GB/s) and catches media/transport damage inside the
// provider's own tiers on every load; SHA-256 of the decoded payload is what the
// publisher signed, and is checked whenever bytes cross a trust boundary.
#pragma once

#include <span>
#include <vector>

#include "artifact/manifest.h"
#include "base/status.h"

namespace kvmart::artifact {

// XXH3-128 in canonical (big-endian) byte order, as written in manifests.
Xxh3Digest Xxh3_128(std::span<const uint8_t> bytes);

// Size and XXH3-128 of stored bytes against the manifest entry.
Status VerifyStoredChecksum(const BlockInfo& block, std::span<const uint8_t> stored);
// Size and SHA-256 of a decoded payload against the manifest entry.
Status VerifyPayloadSha256(const BlockInfo& block, std::span<const uint8_t> raw);

// Checksum, decode, and (when verify_sha256) payload SHA-256; the one call a
// loader needs. Allocates exactly block.raw_bytes, which ValidateManifest bounded.
StatusOr<std::vector<uint8_t>> DecodeVerifiedBlock(const BlockInfo& block, KvDtype dtype,
                                                   std::span<const uint8_t> stored, bool verify_sha256 = true);

}  // namespace kvmart::artifact
