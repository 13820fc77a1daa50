// The longest-prefix walk behind Store::Lookup, shared by every implementation
// so that they answer the same question the same way (store.h, PrefixMatch).
//
// From the profile's chain seed, one ChainStep and one index probe per block
// of the request: the walk stops at the first block the store does not hold.
// An artifact whose chain ends at a matched block is an exact-prefix candidate;
// an artifact whose last block is partial is found through its parent hash
// (one extra ChainStep per such artifact). The longest candidate wins.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "artifact/chain_hash.h"
#include "store/store.h"

namespace kvmart::store {

struct LiveArtifact {
  std::string_view id;
  uint64_t tokens = 0;
};

// Index must provide (all under the caller's lock):
//   std::optional<LiveArtifact> ArtifactEndingAt(const Digest256& last) const;
//       a live artifact (not expired, no damaged block) whose chain ends at `last`
//   const std::vector<std::pair<std::string, uint32_t>>* PartialsAfter(const Digest256& parent) const;
//       artifacts whose last, partial block follows `parent` (id, its token count)
//   bool BlockAvailable(const Digest256& chain) const;   // an undamaged stored block
//   std::string OwnerOf(const Digest256& chain) const;   // an artifact holding that block
// Returns the match; matched_tokens == 0 is a miss (the caller counts it).
// Only artifacts `eligible` accepts (all when it is empty) are named.
template <typename Index>
PrefixMatch LongestPrefix(const Index& index, const Digest256& profile_digest, uint64_t block_size,
                          std::span<const uint32_t> tokens, const Store::ArtifactFilter& eligible) {
  auto named = [&](std::string_view id) { return !eligible || eligible(id); };
  PrefixMatch match;
  const uint64_t bs = block_size, n = tokens.size();
  if (bs == 0 || n == 0) return match;
  Digest256 h = artifact::ChainSeed(profile_digest);
  std::optional<LiveArtifact> best;
  std::optional<Digest256> best_partial_hash;  // when best ends in a partial block
  for (uint64_t k = 0;; ++k) {
    const uint64_t begin = k * bs;
    if (const auto* partials = index.PartialsAfter(h)) {
      for (const auto& [id, r] : *partials) {
        if (begin + r > n || (best && best->tokens >= begin + r)) continue;
        const Digest256 hp = artifact::ChainStep(h, tokens.subspan(begin, r));
        auto e = index.ArtifactEndingAt(hp);
        if (e && e->id == id && named(id)) {
          best = e;
          best_partial_hash = hp;
        }
      }
    }
    if (begin + bs > n) break;
    const Digest256 next = artifact::ChainStep(h, tokens.subspan(begin, bs));
    if (!index.BlockAvailable(next)) break;
    match.block_hashes.push_back(next);
    h = next;
    if (auto e = index.ArtifactEndingAt(h); e && named(e->id)) {
      best = e;
      best_partial_hash.reset();
    }
  }
  match.matched_tokens = match.block_hashes.size() * bs;
  if (best) {
    match.artifact_id = std::string(best->id);
    match.artifact_tokens = best->tokens;
    if (best->tokens > match.matched_tokens) {
      // Only an artifact ending in a partial block right after the matched
      // blocks can reach further than they do.
      match.block_hashes.push_back(*best_partial_hash);
      match.matched_tokens = best->tokens;
    }
  }
  if (match.matched_tokens == 0) return match;
  if (best && best->tokens == match.matched_tokens) {
    match.source_artifact_id = std::string(best->id);
  } else {
    match.source_artifact_id = index.OwnerOf(match.block_hashes.back());  // holds every earlier block too
  }
  return match;
}

}  // namespace kvmart::store
