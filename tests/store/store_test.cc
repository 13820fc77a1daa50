// The artifact store: publish/load round trips through both tiers, dedup by
// chain hash, longest-prefix lookup, pins/TTL/GC/quota, corruption handling and
// concurrent readers. Crash and disk-full tests: crash_test.cc.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "store/block_files.h"
#include "store_test_util.h"

namespace kvmart::store {
namespace {

using namespace testing;
using kvmart::testing::TempDir;
namespace fs = std::filesystem;

std::unique_ptr<Store> OpenOrDie(const StoreOptions& o) {
  auto s = Store::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

std::vector<std::vector<uint8_t>> Payloads(const Profile& p, const std::vector<uint32_t>& tokens) {
  std::vector<std::vector<uint8_t>> out;
  for (size_t i = 0; i < (tokens.size() + p.block_size - 1) / p.block_size; ++i) out.push_back(PayloadFor(p, tokens, i));
  return out;
}

size_t CountFiles(const std::string& dir) {
  size_t n = 0;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) ++n;
  return n;
}

std::string BlockPath(const std::string& dir, const artifact::BlockInfo& b) {
  return BlockFiles(dir + "/blocks", false).PathFor({b.chain_hash, b.xxh3_128});
}

class StoreTest : public ::testing::TestWithParam<Codec> {};

TEST_P(StoreTest, PutLoadExportThroughBothTiers) {
  TempDir tmp;
  auto store = OpenOrDie(Options(tmp.path()));
  const Profile p = SmallProfile();
  auto tokens = Tokens(10);  // blocks of 4, 4, 2 tokens
  Artifact a = MakeArtifact(p, tokens, GetParam(), nullptr, "doc");
  ASSERT_TRUE(store->Put(a).ok());

  auto info = store->Stat(a.manifest.artifact_id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->token_count, 10u);
  EXPECT_EQ(info->num_blocks, 3u);
  EXPECT_EQ(info->codec, std::string(artifact::CodecName(GetParam())));
  EXPECT_EQ(info->title, "doc");
  EXPECT_EQ(info->raw_bytes, a.manifest.TotalRawBytes());
  EXPECT_EQ(store->List().size(), 1u);
  auto m = store->GetManifest(a.manifest.artifact_id);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->signed_text, a.manifest.signed_text);

  // First load: disk, promoted; second: memory. Both give the published payloads.
  std::vector<Tier> tiers;
  auto first = LoadAll(*store, a.manifest.artifact_id, {}, &tiers);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*first, Payloads(p, tokens));
  EXPECT_EQ(tiers, std::vector<Tier>(3, Tier::kDisk));
  tiers.clear();
  auto second = LoadAll(*store, a.manifest.artifact_id, {}, &tiers);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, *first);
  EXPECT_EQ(tiers, std::vector<Tier>(3, Tier::kMemory));
  StoreMetrics mt = store->Metrics();
  EXPECT_EQ(mt.hits_disk, 3u);
  EXPECT_EQ(mt.hits_memory, 3u);
  EXPECT_EQ(mt.blocks, 3u);
  EXPECT_GT(mt.memory_bytes, 0u);

  // Partial load, no prefetch.
  LoadOptions lo;
  lo.num_blocks = 2;
  lo.prefetch = false;
  auto part = LoadAll(*store, a.manifest.artifact_id, lo);
  ASSERT_TRUE(part.ok());
  EXPECT_EQ(part->size(), 2u);

  auto ex = store->Export(a.manifest.artifact_id);
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(ex->stored_blocks, a.stored_blocks);
  auto bytes = artifact::SerializeContainer(*ex);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, *artifact::SerializeContainer(a));

  // Republishing is a no-op; another manifest under the same id is refused.
  EXPECT_TRUE(store->Put(a).ok());
  Artifact other = MakeArtifact(p, tokens, GetParam(), nullptr, "another title");
  EXPECT_EQ(store->Put(other).code(), Status::Code::kAlreadyExists);

  // Loads straight into a destination buffer, from disk (promoting) and memory.
  store->DropMemoryTier();
  EXPECT_EQ(store->Metrics().memory_bytes, 0u);
  const auto expected = Payloads(p, tokens);
  for (Tier want : {Tier::kDisk, Tier::kMemory}) {
    std::vector<uint8_t> dest(a.manifest.TotalRawBytes(), 0xee);
    LoadOptions d;
    d.destination = [&](uint32_t i, uint64_t raw) {
      return std::span<uint8_t>(dest.data() + a.manifest.blocks[i].token_begin * p.shape.BytesPerToken(), raw);
    };
    size_t calls = 0;
    ASSERT_TRUE(store->Load(a.manifest.artifact_id, d, [&](const LoadedBlock& b) {
      EXPECT_EQ(b.payload, nullptr);
      EXPECT_EQ(b.tier, want);
      EXPECT_TRUE(std::equal(b.bytes.begin(), b.bytes.end(), expected[b.index].begin(), expected[b.index].end()));
      ++calls;
      return Status::Ok();
    }).ok());
    EXPECT_EQ(calls, 3u);
    std::vector<uint8_t> concat;
    for (const auto& e : expected) concat.insert(concat.end(), e.begin(), e.end());
    EXPECT_EQ(dest, concat);
  }
}

INSTANTIATE_TEST_SUITE_P(Codecs, StoreTest, ::testing::Values(Codec::kRaw, Codec::kLossless),
                         [](const auto& i) { return std::string(artifact::CodecName(i.param)); });

TEST(Store, PersistsAcrossReopenAndLocksOutASecondOpener) {
  TempDir tmp;
  const Profile p = SmallProfile();
  Artifact a = MakeArtifact(p, Tokens(9), Codec::kLossless);
  {
    auto store = OpenOrDie(Options(tmp.path()));
    ASSERT_TRUE(store->Put(a).ok());
    ASSERT_TRUE(store->Pin(a.manifest.artifact_id, true).ok());
    auto second = Store::Open(Options(tmp.path()));
    EXPECT_EQ(second.status().code(), Status::Code::kFailedPrecondition);
  }
  auto store = OpenOrDie(Options(tmp.path()));
  auto info = store->Stat(a.manifest.artifact_id);
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->pinned);
  auto loaded = LoadAll(*store, a.manifest.artifact_id);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(*loaded, Payloads(p, Tokens(9)));
  auto m = store->Lookup(artifact::ProfileDigest(p), Tokens(9));
  EXPECT_EQ(m.artifact_id, a.manifest.artifact_id);
}

TEST(Store, RejectsBadSignatureAndDamagedBlocksAtPut) {
  TempDir tmp;
  auto store = OpenOrDie(Options(tmp.path()));
  const Profile p = SmallProfile();
  Artifact a = MakeArtifact(p, Tokens(8));
  Artifact bad_sig = a;
  (*bad_sig.manifest.signature)[0] ^= 1;
  EXPECT_EQ(store->Put(bad_sig).code(), Status::Code::kUnauthenticated);
  Artifact bad_block = a;
  bad_block.stored_blocks[1][5] ^= 0x10;
  EXPECT_EQ(store->Put(bad_block).code(), Status::Code::kCorruption);
  EXPECT_TRUE(store->List().empty());
  EXPECT_EQ(CountFiles(tmp.path() + "/blocks"), 0u);
}

TEST(Store, LookupFindsLongestPublishedPrefix) {
  TempDir tmp;
  auto store = OpenOrDie(Options(tmp.path()));
  const Profile p = SmallProfile();  // block size 4
  const Digest256 pd = artifact::ProfileDigest(p);
  auto doc = Tokens(10);  // 4 + 4 + partial 2
  Artifact a = MakeArtifact(p, doc);
  ASSERT_TRUE(store->Put(a).ok());
  const std::string id = a.manifest.artifact_id;

  // Exact request: the whole artifact, partial last block included.
  PrefixMatch m = store->Lookup(pd, doc);
  EXPECT_EQ(m.matched_tokens, 10u);
  EXPECT_EQ(m.artifact_id, id);
  EXPECT_EQ(m.artifact_tokens, 10u);
  EXPECT_EQ(m.source_artifact_id, id);
  EXPECT_EQ(m.block_hashes.size(), 3u);

  // The document plus a question: still the whole artifact.
  auto longer = doc;
  for (uint32_t t : {5u, 6u, 7u, 8u, 9u}) longer.push_back(t);
  m = store->Lookup(pd, longer);
  EXPECT_EQ(m.matched_tokens, 10u);
  EXPECT_EQ(m.artifact_id, id);

  // Diverges inside block 1: block 0 is reusable, no artifact is an exact prefix.
  auto diverged = doc;
  diverged[6] += 1;
  m = store->Lookup(pd, diverged);
  EXPECT_EQ(m.matched_tokens, 4u);
  EXPECT_EQ(m.artifact_id, "");
  EXPECT_EQ(m.source_artifact_id, id);
  ASSERT_EQ(m.block_hashes.size(), 1u);
  std::vector<std::vector<uint8_t>> got;
  ASSERT_TRUE(store->LoadPrefix(m, [&](const LoadedBlock& b) {
    got.push_back(*b.payload);
    EXPECT_EQ(b.token_begin, 4 * got.size() - 4);
    return Status::Ok();
  }).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], PayloadFor(p, doc, 0));

  // A longer document sharing two full blocks: stored once.
  auto doc2 = Tokens(16);
  doc2.resize(8);
  for (uint32_t t = 0; t < 9; ++t) doc2.push_back(1000 + t);  // 8 shared + 9 new = 17 tokens
  Artifact b = MakeArtifact(p, doc2, Codec::kRaw);
  ASSERT_TRUE(store->Put(b).ok());
  EXPECT_EQ(store->Metrics().blocks, 3u + 3u);  // a: 3; b: 5 blocks, 2 shared
  m = store->Lookup(pd, doc2);
  EXPECT_EQ(m.matched_tokens, 17u);
  EXPECT_EQ(m.artifact_id, b.manifest.artifact_id);
  // A request through doc2's first 12 tokens then elsewhere: 3 blocks from b.
  auto req = doc2;
  req.resize(13);
  req[12] = 77;
  m = store->Lookup(pd, req);
  EXPECT_EQ(m.matched_tokens, 12u);
  EXPECT_EQ(m.artifact_id, "");
  EXPECT_EQ(m.source_artifact_id, b.manifest.artifact_id);
  // A request that is doc's first 8 tokens exactly: shared blocks, and the
  // longest exact-prefix artifact is none (doc has 10 tokens).
  std::vector<uint32_t> first8(doc.begin(), doc.begin() + 8);
  m = store->Lookup(pd, first8);
  EXPECT_EQ(m.matched_tokens, 8u);
  EXPECT_EQ(m.artifact_id, "");

  // Misses: other tokens, other profile, nothing.
  EXPECT_EQ(store->Lookup(pd, Tokens(10, 3)).matched_tokens, 0u);
  EXPECT_EQ(store->Lookup(artifact::ProfileDigest(SmallProfile(8)), doc).matched_tokens, 0u);
  EXPECT_EQ(store->Lookup(pd, {}).matched_tokens, 0u);
  EXPECT_EQ(store->Metrics().misses, 3u);

  // Removing a keeps b intact (shared blocks are refcounted).
  ASSERT_TRUE(store->Remove(id).ok());
  EXPECT_EQ(store->Metrics().blocks, 5u);
  auto loaded = LoadAll(*store, b.manifest.artifact_id);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(*loaded, Payloads(p, doc2));
  EXPECT_EQ(store->Lookup(pd, doc).matched_tokens, 8u);
  EXPECT_EQ(CountFiles(tmp.path() + "/blocks"), 5u);
}

TEST(Store, LookupPrefersLongestExactArtifact) {
  TempDir tmp;
  auto store = OpenOrDie(Options(tmp.path()));
  const Profile p = SmallProfile();
  const Digest256 pd = artifact::ProfileDigest(p);
  auto doc = Tokens(12);
  std::vector<uint32_t> d8(doc.begin(), doc.begin() + 8), d6(doc.begin(), doc.begin() + 6);
  for (const auto& t : {d8, d6, doc}) ASSERT_TRUE(store->Put(MakeArtifact(p, t)).ok());
  auto req = doc;
  req.push_back(1);
  PrefixMatch m = store->Lookup(pd, req);
  EXPECT_EQ(m.matched_tokens, 12u);
  EXPECT_EQ(m.artifact_tokens, 12u);
  std::vector<uint32_t> r7(doc.begin(), doc.begin() + 7);
  m = store->Lookup(pd, r7);
  EXPECT_EQ(m.artifact_tokens, 6u);
  EXPECT_EQ(m.matched_tokens, 6u);
  ASSERT_EQ(m.block_hashes.size(), 2u);
  size_t n = 0;
  ASSERT_TRUE(store->LoadPrefix(m, [&](const LoadedBlock& b) {
    EXPECT_EQ(*b.payload, PayloadFor(p, d6, n));
    ++n;
    return Status::Ok();
  }).ok());
  EXPECT_EQ(n, 2u);
}

TEST(Store, PinTtlGcAndQuota) {
  TempDir tmp;
  auto store = OpenOrDie(Options(tmp.path()));
  const Profile p = SmallProfile();
  Artifact a = MakeArtifact(p, Tokens(8, 1)), b = MakeArtifact(p, Tokens(8, 2));
  ASSERT_TRUE(store->Put(a).ok());
  ASSERT_TRUE(store->Put(b).ok());
  ASSERT_TRUE(store->SetTtl(a.manifest.artifact_id, std::chrono::seconds(0)).ok());
  ASSERT_TRUE(store->SetTtl(b.manifest.artifact_id, std::chrono::seconds(0)).ok());
  ASSERT_TRUE(store->Pin(b.manifest.artifact_id, true).ok());
  EXPECT_EQ(store->Lookup(artifact::ProfileDigest(p), Tokens(8, 1)).artifact_id, "");  // expired
  auto r = store->Gc();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->expired_artifacts, 1u);
  EXPECT_EQ(r->blocks_removed, 2u);
  EXPECT_EQ(r->bytes_freed, a.manifest.TotalStoredBytes());
  EXPECT_EQ(store->Stat(a.manifest.artifact_id).status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(store->Stat(b.manifest.artifact_id).ok());
  EXPECT_EQ(CountFiles(tmp.path() + "/blocks"), 2u);
  ASSERT_TRUE(store->SetTtl(b.manifest.artifact_id, std::nullopt).ok());
  EXPECT_FALSE(store->Stat(b.manifest.artifact_id)->expires_at_unix.has_value());
  EXPECT_EQ(store->Pin("kv1-nope", true).code(), Status::Code::kNotFound);

  // Quota: b's publisher may store b plus 10 bytes.
  const std::string pub = ToHex(b.manifest.publisher.data(), 32);
  ASSERT_TRUE(store->SetPublisherQuota(pub, b.manifest.TotalStoredBytes() + 10).ok());
  EXPECT_EQ(store->Put(a).code(), Status::Code::kResourceExhausted);
  EXPECT_EQ(store->List().size(), 1u);
  EXPECT_EQ(CountFiles(tmp.path() + "/blocks"), 2u);
  // Another publisher is not limited; lifting the quota lets a in.
  SigningKey other = artifact::testing::TestKey(9);
  EXPECT_TRUE(store->Put(MakeArtifact(p, Tokens(8, 5), Codec::kRaw, &other)).ok());
  ASSERT_TRUE(store->SetPublisherQuota(pub, 0).ok());
  EXPECT_TRUE(store->Put(a).ok());
}

TEST(Store, RefusesAConflictingPayloadForAStoredChainHash) {
  TempDir tmp;
  auto store = OpenOrDie(Options(tmp.path()));
  const Profile p = SmallProfile();
  auto tokens = Tokens(8);
  ASSERT_TRUE(store->Put(MakeArtifact(p, tokens)).ok());
  // Same first block (tokens), different KV bytes, by another publisher.
  auto longer = tokens;
  longer.push_back(3);
  auto w = artifact::ArtifactWriter::Create(p, longer, Codec::kRaw);
  ASSERT_TRUE(w.ok());
  for (size_t i = 0; i < w->num_blocks(); ++i) {
    auto payload = PayloadFor(p, longer, i);
    payload[0] ^= 1;
    ASSERT_TRUE(w->AddBlock(payload).ok());
  }
  artifact::ArtifactMetadata meta;
  auto liar = std::move(*w).Finish(Sha256Of("x"), meta, artifact::testing::TestKey(3));
  ASSERT_TRUE(liar.ok());
  EXPECT_EQ(store->Put(*liar).code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(store->List().size(), 1u);
}

enum class Damage { kBitFlip, kTruncate, kDelete };

class CorruptionTest : public ::testing::TestWithParam<std::tuple<Damage, Codec>> {};

TEST_P(CorruptionTest, DamagedBlockIsDataLossCountedAndNeverServed) {
  auto [damage, codec] = GetParam();
  TempDir tmp;
  auto store = OpenOrDie(Options(tmp.path()));
  const Profile p = SmallProfile();
  auto tokens = Tokens(12);
  Artifact a = MakeArtifact(p, tokens, codec);
  ASSERT_TRUE(store->Put(a).ok());
  const std::string id = a.manifest.artifact_id;
  const std::string path = BlockPath(tmp.path(), a.manifest.blocks[1]);
  ASSERT_TRUE(fs::exists(path));
  if (damage == Damage::kBitFlip) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(7);
    char c;
    f.read(&c, 1);
    c ^= 0x04;
    f.seekp(7);
    f.write(&c, 1);
  } else if (damage == Damage::kTruncate) {
    fs::resize_file(path, fs::file_size(path) - 3);
  } else {
    fs::remove(path);
  }
  std::vector<uint8_t> dest(a.manifest.TotalRawBytes());
  LoadOptions into;
  into.destination = [&](uint32_t i, uint64_t raw) {
    return std::span<uint8_t>(dest.data() + a.manifest.blocks[i].token_begin * p.shape.BytesPerToken(), raw);
  };
  std::vector<size_t> served;
  const bool use_dest = damage == Damage::kBitFlip;  // one damage kind through each path
  Status st = store->Load(id, use_dest ? into : LoadOptions{}, [&](const LoadedBlock& b) {
    served.push_back(b.index);
    auto want = PayloadFor(p, tokens, b.index);
    EXPECT_TRUE(std::equal(b.bytes.begin(), b.bytes.end(), want.begin(), want.end()));
    return Status::Ok();
  });
  EXPECT_EQ(st.code(), Status::Code::kCorruption) << st.ToString();
  EXPECT_TRUE(st.IsDataLoss()) << st.ToString();
  EXPECT_NE(st.message().find(id), std::string::npos);
  EXPECT_EQ(served, std::vector<size_t>{0});  // block 0 only; never the damaged one
  EXPECT_EQ(store->Metrics().checksum_failures, 1u);
  // Now a miss beyond block 0, for lookups and for loads.
  PrefixMatch m = store->Lookup(artifact::ProfileDigest(p), tokens);
  EXPECT_EQ(m.matched_tokens, 4u);
  EXPECT_EQ(m.artifact_id, "");
  EXPECT_EQ(store->Load(id, {}, [](const LoadedBlock&) { return Status::Ok(); }).code(), Status::Code::kCorruption);
  EXPECT_FALSE(store->Export(id).ok());
  auto v = store->Verify("");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->blocks_checked, 3u);
  EXPECT_EQ(v->blocks_bad, 1u);
  ASSERT_EQ(v->problems.size(), 1u);
  // Republishing repairs it.
  ASSERT_TRUE(store->Put(a).ok());
  store->DropMemoryTier();
  auto loaded = LoadAll(*store, id);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(*loaded, Payloads(p, tokens));
  EXPECT_EQ(store->Lookup(artifact::ProfileDigest(p), tokens).artifact_id, id);
  EXPECT_EQ(store->Verify(id)->blocks_bad, 0u);
}

std::string CorruptionName(const ::testing::TestParamInfo<std::tuple<Damage, Codec>>& i) {
  static constexpr const char* kNames[] = {"BitFlip", "Truncate", "Delete"};
  return std::string(kNames[static_cast<int>(std::get<0>(i.param))]) + "_" +
         std::string(artifact::CodecName(std::get<1>(i.param)));
}

INSTANTIATE_TEST_SUITE_P(All, CorruptionTest,
                         ::testing::Combine(::testing::Values(Damage::kBitFlip, Damage::kTruncate, Damage::kDelete),
                                            ::testing::Values(Codec::kRaw, Codec::kLossless)),
                         CorruptionName);

TEST(Store, ConsumerErrorStopsTheLoad) {
  TempDir tmp;
  auto store = OpenOrDie(Options(tmp.path()));
  Artifact a = MakeArtifact(SmallProfile(), Tokens(40));
  ASSERT_TRUE(store->Put(a).ok());
  int calls = 0;
  Status st = store->Load(a.manifest.artifact_id, {}, [&](const LoadedBlock&) {
    return ++calls == 3 ? Status::Aborted("enough") : Status::Ok();
  });
  EXPECT_EQ(st.code(), Status::Code::kAborted);
  EXPECT_EQ(calls, 3);
}

TEST(Store, ConcurrentReadersAndASharingPublisher) {
  TempDir tmp;
  StoreOptions o = Options(tmp.path());
  o.memory_budget_bytes = 8 * 1024;  // small: constant eviction and promotion
  auto store = OpenOrDie(o);
  const Profile p = SmallProfile();
  auto doc = Tokens(64);
  Artifact a = MakeArtifact(p, doc, Codec::kLossless);
  ASSERT_TRUE(store->Put(a).ok());
  const auto expected = Payloads(p, doc);
  std::vector<Artifact> extensions;
  for (uint32_t k = 0; k < 8; ++k) {
    auto t = doc;
    t.resize(32 + 4 * k);
    t.push_back(5000 + k);
    extensions.push_back(MakeArtifact(p, t, Codec::kRaw));
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < 4; ++r) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto got = LoadAll(*store, a.manifest.artifact_id);
        if (!got.ok() || *got != expected) ++failures;
        auto m = store->Lookup(artifact::ProfileDigest(p), doc);
        if (m.matched_tokens != 64) ++failures;
      }
    });
  }
  threads.emplace_back([&] {
    for (const auto& e : extensions)
      if (!store->Put(e).ok()) ++failures;
    for (size_t i = 0; i < extensions.size(); i += 2)
      if (!store->Remove(extensions[i].manifest.artifact_id).ok()) ++failures;
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(store->Metrics().evictions, 0u);
  EXPECT_EQ(store->List().size(), 5u);
}

TEST(BlockFiles, NamesRoundTripAndForeignNamesAreRejected) {
  BlockKey k;
  for (size_t i = 0; i < 32; ++i) k.chain[i] = static_cast<uint8_t>(i * 7);
  for (size_t i = 0; i < 16; ++i) k.xxh3[i] = static_cast<uint8_t>(255 - i);
  auto parsed = BlockFiles::ParseFileName(BlockFiles::FileName(k));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, k);
  EXPECT_FALSE(BlockFiles::ParseFileName(".tmp-1-abc").has_value());
  std::string upper = BlockFiles::FileName(k);
  upper[3] = 'E';
  EXPECT_FALSE(BlockFiles::ParseFileName(upper).has_value());
}

}  // namespace
}  // namespace kvmart::store
