// Content address of a token sequence under a profile (docs/DESIGN.md §4).
//
//   h0  = SHA-256("kvmart/v1" ‖ profile_digest)          (9 ASCII bytes ‖ 32 raw bytes)
//   h_i = SHA-256(h_{i-1} ‖ ids of block i as u32 LE)     (32 raw bytes ‖ 4·n bytes)
//   id  = "kv1-" ‖ lower-hex(h_last)
//
// Raw digests, never hex, enter every hash. Because h_i depends only on the prefix,
// a document that extends another shares all its full-block hashes, which is what
// lets the store deduplicate shared prefixes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "artifact/profile.h"
#include "base/sha256.h"

namespace kvmart::artifact {

inline constexpr std::string_view kChainDomain = "kvmart/v1";
inline constexpr std::string_view kArtifactIdPrefix = "kv1-";

Digest256 ChainSeed(const Digest256& profile_digest);
Digest256 ChainStep(const Digest256& prev, std::span<const uint32_t> block_tokens);

// One hash per block of `block_size` tokens (the last block may be partial).
// Empty tokens give an empty vector.
std::vector<Digest256> ChainHashes(const Digest256& profile_digest, std::span<const uint32_t> tokens,
                                   uint32_t block_size);

// "kv1-" + hex(last chain hash). Precondition: tokens non-empty.
std::string ArtifactIdFromChain(const Digest256& last);
// Convenience: profile digest + chain in one call; "" when tokens is empty.
std::string ArtifactId(const Profile& profile, std::span<const uint32_t> tokens);

}  // namespace kvmart::artifact
