#include "artifact/chain_hash.h"

namespace kvmart::artifact {

Digest256 ChainSeed(const Digest256& profile_digest) {
  Sha256 h;
  h.Update(kChainDomain);
  h.Update(profile_digest.data(), profile_digest.size());
  return h.Finish();
}

Digest256 ChainStep(const Digest256& prev, std::span<const uint32_t> block_tokens) {
  Sha256 h;
  h.Update(prev.data(), prev.size());
  // Explicit little-endian bytes, independent of the host's byte order.
  uint8_t buf[4 * 256];
  size_t n = 0;
  for (uint32_t t : block_tokens) {
    buf[n++] = static_cast<uint8_t>(t);
    buf[n++] = static_cast<uint8_t>(t >> 8);
    buf[n++] = static_cast<uint8_t>(t >> 16);
    buf[n++] = static_cast<uint8_t>(t >> 24);
    if (n == sizeof(buf)) {
      h.Update(buf, n);
      n = 0;
    }
  }
  if (n > 0) h.Update(buf, n);
  return h.Finish();
}

std::vector<Digest256> ChainHashes(const Digest256& profile_digest, std::span<const uint32_t> tokens,
                                   uint32_t block_size) {
  std::vector<Digest256> out;
  if (tokens.empty() || block_size == 0) return out;
  out.reserve((tokens.size() + block_size - 1) / block_size);
  Digest256 h = ChainSeed(profile_digest);
  for (size_t begin = 0; begin < tokens.size(); begin += block_size) {
    size_t n = std::min<size_t>(block_size, tokens.size() - begin);
    h = ChainStep(h, tokens.subspan(begin, n));
    out.push_back(h);
  }
  return out;
}

std::string ArtifactIdFromChain(const Digest256& last) { return std::string(kArtifactIdPrefix) + ToHex(last); }

std::string ArtifactId(const Profile& profile, std::span<const uint32_t> tokens) {
  auto chain = ChainHashes(ProfileDigest(profile), tokens, profile.block_size);
  if (chain.empty()) return "";
  return ArtifactIdFromChain(chain.back());
}

}  // namespace kvmart::artifact
