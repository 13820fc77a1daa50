#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <new>

#include "artifact/canonical_json.h"
#include "artifact/chain_hash.h"
#include "artifact_test_util.h"
#include "testing/temp_dir.h"

namespace kvmart::artifact::testing {
extern std::atomic<size_t> g_max_alloc;  // alloc_tracker.cc
}

namespace kvmart::artifact {
namespace {

using json = nlohmann::json;
using testing::BuildTestArtifact;
using testing::ConcatBlocks;
using testing::RawContainer;
using testing::TestKey;
using testing::TestProfile;
using testing::g_max_alloc;

using kvmart::testing::TempDir;

// A small artifact: 2 layers, 2 heads, head_dim 16, 4-token blocks, 10 tokens.
testing::Built Small(Codec codec = Codec::kLossless, KvDtype dtype = KvDtype::kBf16) {
  static SigningKey key = TestKey();
  return BuildTestArtifact(codec, TestProfile({2, 2, 16, dtype}, 4), 10, key);
}

TEST(Container, RoundTripEveryCodecAndDtype) {
  for (Codec c : {Codec::kRaw, Codec::kLossless}) {
    for (KvDtype d : {KvDtype::kBf16, KvDtype::kF16}) {
      auto b = Small(c, d);
      auto r = ArtifactReader::OpenBytes(b.bytes);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      const Manifest& m = r->manifest();
      EXPECT_EQ(m.artifact_id, ArtifactId(TestProfile({2, 2, 16, d}, 4), testing::TestTokens(10)));
      EXPECT_EQ(m.blocks.size(), 3u);
      EXPECT_EQ(m.tokens, testing::TestTokens(10));
      EXPECT_EQ(m.title, "tiny test document");
      EXPECT_TRUE(r->signature_status().ok());
      auto blocks = r->ReadAllBlocks(2);
      ASSERT_TRUE(blocks.ok()) << blocks.status().ToString();
      EXPECT_EQ(*blocks, b.payloads);
      // The store's view: separate pieces round-trip to the same container.
      EXPECT_EQ(*SerializeContainer(r->ToArtifact()), b.bytes);
    }
  }
}

TEST(Container, FileRoundTripAndProfileCheck) {
  TempDir dir;
  auto b = Small();
  ASSERT_TRUE(WriteContainerFile(dir.Sub("a.kva"), b.artifact).ok());
  auto r = ArtifactReader::OpenFile(dir.Sub("a.kva"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->CheckProfile(TestProfile()).ok());
  ReaderOptions opts;
  opts.expected_profile = TestProfile();
  opts.expected_profile->weights_digest[3] = '9';
  auto bad = ArtifactReader::OpenFile(dir.Sub("a.kva"), opts);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(bad.status().message().find("weights_digest"), std::string::npos) << bad.status().ToString();
  EXPECT_FALSE(ArtifactReader::OpenFile(dir.Sub("missing.kva")).ok());
}

TEST(Container, EveryTruncationIsRejected) {
  auto b = Small();
  for (size_t n = 0; n < b.bytes.size(); ++n) {
    auto r = ArtifactReader::OpenBytes(std::span(b.bytes).first(n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes opened";
  }
}

TEST(Container, EveryBitFlipIsDetected) {
  // Tiny (1 layer, 2 heads, head_dim 8, 6 tokens) so that this stays fast under ASan.
  auto b = BuildTestArtifact(Codec::kLossless, TestProfile({1, 2, 8, KvDtype::kBf16}, 4), 6, TestKey());
  const size_t text_end = 40 + SerializeManifest(b.artifact.manifest)->size();
  for (size_t i = 0; i < b.bytes.size(); ++i) {
    // Every bit of the header, checksums and trailer; one rotating bit per byte
    // of manifest text and block bytes (checksums treat all bits alike).
    bool sampled = i >= 40 && i < b.bytes.size() - 16 && !(i >= text_end && i < text_end + 16);
    for (int bit = 0; bit < 8; ++bit) {
      if (sampled && bit != static_cast<int>(i % 8)) continue;
      auto bytes = b.bytes;
      bytes[i] ^= static_cast<uint8_t>(1u << bit);
      auto r = ArtifactReader::OpenBytes(bytes);
      if (!r.ok()) continue;
      auto blocks = r->ReadAllBlocks(1);
      ASSERT_FALSE(blocks.ok()) << "flip of byte " << i << " bit " << bit << " went unnoticed";
    }
  }
}

TEST(Container, ForgedSignatureIsRejected) {
  auto b = Small();
  json j = json::parse(b.artifact.manifest.signed_text);
  j["title"] = "a different title";
  j["signature"] = ToHex(b.artifact.manifest.signature->data(), 64);
  auto forged = RawContainer(*CanonicalJson(j), ConcatBlocks(b.artifact));
  auto r = ArtifactReader::OpenBytes(forged);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kUnauthenticated) << r.status().ToString();
  // inspect-style open still works and reports the bad signature.
  ReaderOptions lax;
  lax.require_signature = false;
  auto r2 = ArtifactReader::OpenBytes(forged, lax);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_FALSE(r2->signature_status().ok());
  // Signed by another key while claiming the original publisher.
  SigningKey other = TestKey(9);
  j.erase("signature");
  std::string text = *CanonicalJson(j);
  auto sig = other.Sign(text);
  j["signature"] = ToHex(sig.data(), sig.size());
  EXPECT_EQ(ArtifactReader::OpenBytes(RawContainer(*CanonicalJson(j), ConcatBlocks(b.artifact))).status().code(),
            Status::Code::kUnauthenticated);
  // No signature at all.
  j.erase("signature");
  EXPECT_EQ(ArtifactReader::OpenBytes(RawContainer(*CanonicalJson(j), ConcatBlocks(b.artifact))).status().code(),
            Status::Code::kUnauthenticated);
}

// Re-signs an edited manifest so only the edit itself can be the reason for rejection.
std::vector<uint8_t> Edited(const testing::Built& b, const std::function<void(json&)>& edit) {
  json j = json::parse(b.artifact.manifest.signed_text);
  edit(j);
  auto text = CanonicalJson(j);
  if (!text.ok()) return {};
  auto sig = TestKey().Sign(*text);
  j["signature"] = ToHex(sig.data(), sig.size());
  return RawContainer(*CanonicalJson(j), ConcatBlocks(b.artifact));
}

TEST(Container, AbsurdSizesAreRejectedWithoutLargeAllocations) {
  auto b = Small(Codec::kRaw);
  auto blocks = ConcatBlocks(b.artifact);
  const std::string text = *SerializeManifest(b.artifact.manifest);
  std::vector<std::pair<std::string, std::vector<uint8_t>>> cases = {
      {"token_count 2^60", Edited(b, [](json& j) { j["token_count"] = uint64_t{1} << 60; })},
      {"raw_bytes 2^60", Edited(b, [](json& j) { j["blocks"][0]["raw_bytes"] = uint64_t{1} << 60; })},
      {"stored_bytes 2^60", Edited(b, [](json& j) { j["blocks"][1]["stored_bytes"] = uint64_t{1} << 60; })},
      {"token_end 2^60", Edited(b, [](json& j) { j["blocks"][2]["token_end"] = uint64_t{1} << 60; })},
      {"num_layers 2^31", Edited(b, [](json& j) { j["profile"]["kv_shape"]["num_layers"] = uint64_t{1} << 31; })},
      {"head_dim 65536",
       Edited(b, [](json& j) {
         j["profile"]["kv_shape"]["head_dim"] = 65536;
         j["profile"]["block_size"] = 1 << 20;
       })},
      {"u64 max token id", Edited(b, [](json& j) { j["token_ids"][0] = UINT64_MAX; })},
      {"manifest_len 2^60", RawContainer(text, blocks, 1, 0, int64_t{1} << 60)},
      {"manifest_len size-1", RawContainer(text, blocks, 1, 0, static_cast<int64_t>(text.size() + blocks.size()))},
      {"blocks_len 2^60", RawContainer(text, blocks, 1, 0, -1, int64_t{1} << 60)},
      {"blocks_len short", RawContainer(text, blocks, 1, 0, -1, static_cast<int64_t>(blocks.size() - 1))},
  };
  for (const auto& [name, bytes] : cases) {
    ASSERT_FALSE(bytes.empty()) << name;
    g_max_alloc = 0;
    auto r = ArtifactReader::OpenBytes(bytes);
    size_t peak = g_max_alloc.load();
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.status().code(), Status::Code::kCorruption) << name << ": " << r.status().ToString();
    EXPECT_LT(peak, 1u << 20) << name << ": allocated " << peak << " bytes";
  }
}

TEST(Container, VersionsMajorRefusedMinorAccepted) {
  auto b = Small();
  auto blocks = ConcatBlocks(b.artifact);
  const std::string text = *SerializeManifest(b.artifact.manifest);
  auto r = ArtifactReader::OpenBytes(RawContainer(text, blocks, 2, 0));
  EXPECT_EQ(r.status().code(), Status::Code::kUnimplemented) << r.status().ToString();
  EXPECT_NE(r.status().message().find("version 2.0"), std::string::npos) << r.status().ToString();
  auto m2 = Edited(b, [](json& j) { j["format_version"] = "2.0"; });
  EXPECT_EQ(ArtifactReader::OpenBytes(m2).status().code(), Status::Code::kUnimplemented);
  // A newer minor with a field this reader does not know: readable, and the
  // signature (which covers the unknown field) still verifies.
  auto newer = Edited(b, [](json& j) {
    j["format_version"] = "1.7";
    j["zz_future_field"] = "x";
  });
  auto ok = ArtifactReader::OpenBytes(newer);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->manifest().version, (FormatVersion{1, 7}));
  // ... but the current minor does not accept unknown fields.
  auto unknown = Edited(b, [](json& j) { j["zz_future_field"] = "x"; });
  EXPECT_EQ(ArtifactReader::OpenBytes(unknown).status().code(), Status::Code::kCorruption);
}

TEST(Container, ManifestConsistencyChecks) {
  auto b = Small();
  std::vector<std::pair<std::string, std::function<void(json&)>>> edits = {
      {"artifact id", [](json& j) { j["artifact_id"] = "kv1-" + std::string(64, '0'); }},
      {"chain hash", [](json& j) { j["blocks"][1]["chain_hash"] = std::string(64, '0'); }},
      {"token id", [](json& j) { j["token_ids"][3] = 5; }},
      {"profile digest", [](json& j) { j["profile_digest"] = std::string(64, '0'); }},
      {"block dropped", [](json& j) { j["blocks"].erase(2); }},
      {"created_at", [](json& j) { j["created_at"] = "yesterday"; }},
      {"codec", [](json& j) { j["blocks"][0]["codec"] = "gzip"; }},
      {"upper-case hex", [](json& j) { j["probe_logits_sha256"] = std::string(64, 'A'); }},
  };
  for (const auto& [name, edit] : edits) {
    auto r = ArtifactReader::OpenBytes(Edited(b, edit));
    EXPECT_FALSE(r.ok()) << name;
  }
}

TEST(Container, WriterRejectsMisuse) {
  auto w = ArtifactWriter::Create(TestProfile(), testing::TestTokens(10), Codec::kLossless);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->num_blocks(), 3u);
  EXPECT_EQ(w->BlockRawBytes(2), 2u * TestProfile().shape.BytesPerToken());
  std::vector<uint8_t> wrong(5);
  EXPECT_FALSE(w->AddBlock(wrong).ok());
  EXPECT_FALSE(std::move(*w).Finish({}, {}, TestKey()).ok());
  EXPECT_FALSE(ArtifactWriter::Create(TestProfile(), {}, Codec::kRaw).ok());
}

TEST(Integrity, StoredChecksumAndPayloadHash) {
  auto b = Small();
  const BlockInfo& info = b.artifact.manifest.blocks[1];
  auto stored = b.artifact.stored_blocks[1];
  EXPECT_TRUE(VerifyStoredChecksum(info, stored).ok());
  auto raw = DecodeVerifiedBlock(info, KvDtype::kBf16, stored);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(*raw, b.payloads[1]);
  stored[stored.size() / 2] ^= 4;
  EXPECT_EQ(VerifyStoredChecksum(info, stored).code(), Status::Code::kCorruption);
  EXPECT_FALSE(DecodeVerifiedBlock(info, KvDtype::kBf16, stored).ok());
  auto payload = b.payloads[1];
  payload[0] ^= 1;
  EXPECT_EQ(VerifyPayloadSha256(info, payload).code(), Status::Code::kCorruption);
}

TEST(Signing, KeyFileRoundTripAndPermissions) {
  TempDir dir;
  auto k = SigningKey::Generate();
  ASSERT_TRUE(k.ok());
  ASSERT_TRUE(k->SaveFile(dir.Sub("key")).ok());
  struct stat st {};
  ASSERT_EQ(stat((dir.Sub("key")).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(k->SaveFile(dir.Sub("key")).ok()) << "must not overwrite a key";
  auto loaded = SigningKey::LoadFile(dir.Sub("key"));
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->public_key(), k->public_key());
  auto sig = loaded->Sign("hello");
  EXPECT_TRUE(VerifySignature(k->public_key(), "hello", sig));
  EXPECT_FALSE(VerifySignature(k->public_key(), "hellO", sig));
  chmod((dir.Sub("key")).c_str(), 0644);
  EXPECT_EQ(SigningKey::LoadFile(dir.Sub("key")).status().code(), Status::Code::kPermissionDenied);
  // A key file whose public line does not match its seed.
  std::string other_pk = TestKey(1).public_key_hex();
  FILE* f = fopen((dir.Sub("bad")).c_str(), "w");
  fprintf(f, "kvmart-ed25519-key-v1\npublic %s\nseed %s\n", other_pk.c_str(), std::string(64, '1').c_str());
  fclose(f);
  chmod((dir.Sub("bad")).c_str(), 0600);
  EXPECT_EQ(SigningKey::LoadFile(dir.Sub("bad")).status().code(), Status::Code::kCorruption);
}

}  // namespace
}  // namespace kvmart::artifact
