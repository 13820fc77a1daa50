// Artifacts for store tests: a small profile, and block payloads that are a
// function of the block's chain hash, as real KV is a function of the prefix —
// so two documents sharing a prefix carry identical shared blocks.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "artifact/chain_hash.h"
#include "artifact/container.h"
#include "artifact_test_util.h"
#include "store/store.h"
#include "testing/temp_dir.h"

namespace kvmart::store::testing {

using artifact::Artifact;
using artifact::Codec;
using artifact::Profile;
using artifact::SigningKey;

inline Profile SmallProfile(uint32_t block_size = 4) {
  return artifact::testing::TestProfile({2, 2, 16, artifact::KvDtype::kBf16}, block_size);
}

inline std::vector<uint32_t> Tokens(size_t n, uint32_t salt = 0) {
  std::vector<uint32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<uint32_t>((i * 7919 + 11 + salt * 104729) % 151936);
  return t;
}

// The payload "the model" computes for block i of these tokens.
inline std::vector<uint8_t> PayloadFor(const Profile& p, std::span<const uint32_t> tokens, size_t i) {
  auto chain = artifact::ChainHashes(artifact::ProfileDigest(p), tokens, p.block_size);
  uint64_t seed;
  std::memcpy(&seed, chain[i].data(), sizeof(seed));
  const uint64_t begin = i * p.block_size;
  const uint64_t end = std::min<uint64_t>(tokens.size(), begin + p.block_size);
  return artifact::testing::SyntheticKv(p.shape, end - begin, seed % 1000, begin);
}

inline Artifact MakeArtifact(const Profile& p, const std::vector<uint32_t>& tokens, Codec codec = Codec::kRaw,
                             const SigningKey* key = nullptr, std::optional<std::string> title = std::nullopt) {
  auto w = artifact::ArtifactWriter::Create(p, tokens, codec);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  for (size_t i = 0; i < w->num_blocks(); ++i) {
    Status s = w->AddBlock(PayloadFor(p, tokens, i));
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  artifact::ArtifactMetadata meta;
  meta.created_at = "2025-01-02T03:04:05Z";
  meta.title = std::move(title);
  SigningKey default_key = artifact::testing::TestKey();
  auto a = std::move(*w).Finish(Sha256Of("probe"), meta, key != nullptr ? *key : default_key);
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  return std::move(a).value();
}

// Every block's payload, in order.
inline std::vector<std::vector<uint8_t>> Payloads(const Profile& p, const std::vector<uint32_t>& tokens) {
  std::vector<std::vector<uint8_t>> out;
  for (size_t i = 0; i < (tokens.size() + p.block_size - 1) / p.block_size; ++i) out.push_back(PayloadFor(p, tokens, i));
  return out;
}

inline StoreOptions Options(const std::string& dir) {
  StoreOptions o;
  o.data_dir = dir;
  o.memory_budget_bytes = 64 << 20;
  o.decode_threads = 2;
  return o;
}

// All payloads of a Load, in order.
inline StatusOr<std::vector<std::vector<uint8_t>>> LoadAll(Store& s, const std::string& id, LoadOptions o = {},
                                                           std::vector<Tier>* tiers = nullptr) {
  std::vector<std::vector<uint8_t>> out;
  Status st = s.Load(id, o, [&](const LoadedBlock& b) {
    if (b.index != out.size()) return Status::Internal("out of order");
    out.push_back(*b.payload);
    if (tiers) tiers->push_back(b.tier);
    return Status::Ok();
  });
  if (!st.ok()) return st;
  return out;
}

}  // namespace kvmart::store::testing
