// Helpers shared by the container tests, the golden-file test and the fuzz seed
// generator: deterministic artifacts and a hand-rolled container builder that
// follows docs/ARTIFACT.md §3 independently of container.cc.
#pragma once

#include <xxhash.h>

#include <cstring>
#include <string>
#include <vector>

#include "artifact/container.h"
#include "artifact/integrity.h"
#include "synthetic_kv.h"

namespace kvmart::artifact::testing {

inline SigningKey TestKey(uint8_t fill = 7) {
  std::array<uint8_t, 32> seed;
  seed.fill(fill);
  return std::move(SigningKey::FromSeed(seed)).value();
}

struct Built {
  Artifact artifact;
  std::vector<std::vector<uint8_t>> payloads;
  std::vector<uint8_t> bytes;  // .kva
};

inline std::vector<uint32_t> TestTokens(size_t n) {
  std::vector<uint32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<uint32_t>((i * 7919 + 11) % 151936);
  return t;
}

inline Built BuildTestArtifact(Codec codec, const Profile& profile, size_t num_tokens, const SigningKey& key,
                               bool with_optional = true) {
  Built b;
  auto w = ArtifactWriter::Create(profile, TestTokens(num_tokens), codec);
  if (!w.ok()) throw std::runtime_error(w.status().ToString());
  for (size_t i = 0; i < w->num_blocks(); ++i)
    b.payloads.push_back(SyntheticKv(profile.shape, w->BlockTokenEnd(i) - w->BlockTokenBegin(i), 42,
                                     w->BlockTokenBegin(i)));
  std::vector<std::span<const uint8_t>> spans(b.payloads.begin(), b.payloads.end());
  Status s = w->AddBlocks(spans, 2);
  if (!s.ok()) throw std::runtime_error(s.ToString());
  ArtifactMetadata meta;
  meta.created_at = "2025-01-02T03:04:05Z";
  if (with_optional) {
    meta.title = "tiny test document";
    meta.source_sha256 = Sha256Of("source document");
  }
  auto a = std::move(*w).Finish(Sha256Of("probe logits"), meta, key);
  if (!a.ok()) throw std::runtime_error(a.status().ToString());
  b.artifact = std::move(*a);
  b.bytes = std::move(SerializeContainer(b.artifact)).value();
  return b;
}

inline void PutLE(uint8_t* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Container from parts, with correct checksums; header fields may be overridden
// to craft hostile files.
inline std::vector<uint8_t> RawContainer(const std::string& manifest, const std::vector<uint8_t>& blocks,
                                         uint16_t major = 1, uint16_t minor = 0, int64_t manifest_len = -1,
                                         int64_t blocks_len = -1) {
  std::vector<uint8_t> out(40 + manifest.size() + 16 + blocks.size() + 16);
  uint8_t* p = out.data();
  const uint8_t magic[8] = {0x89, 'K', 'V', 'A', '\r', '\n', 0x1a, '\n'};
  std::memcpy(p, magic, 8);
  PutLE(p + 8, major, 2);
  PutLE(p + 10, minor, 2);
  PutLE(p + 12, 0, 4);
  PutLE(p + 16, manifest_len < 0 ? manifest.size() : static_cast<uint64_t>(manifest_len), 8);
  PutLE(p + 24, blocks_len < 0 ? blocks.size() : static_cast<uint64_t>(blocks_len), 8);
  PutLE(p + 32, XXH3_64bits(p, 32), 8);
  std::memcpy(p + 40, manifest.data(), manifest.size());
  auto sum = Xxh3_128({reinterpret_cast<const uint8_t*>(manifest.data()), manifest.size()});
  std::memcpy(p + 40 + manifest.size(), sum.data(), 16);
  if (!blocks.empty()) std::memcpy(p + 56 + manifest.size(), blocks.data(), blocks.size());
  uint8_t* t = p + out.size() - 16;
  const uint8_t tm[8] = {'K', 'V', 'A', 'E', 'N', 'D', 0, 0};
  std::memcpy(t, tm, 8);
  PutLE(t + 8, out.size(), 8);
  return out;
}

inline std::vector<uint8_t> ConcatBlocks(const Artifact& a) {
  std::vector<uint8_t> all;
  for (const auto& b : a.stored_blocks) all.insert(all.end(), b.begin(), b.end());
  return all;
}

}  // namespace kvmart::artifact::testing
