// The store contract (store/store.h), one suite run over every implementation:
// what a caller may rely on whichever store the server runs on. Behaviour that
// only one implementation has (the disk and memory tiers, files on disk,
// reopening, crash safety) is tested in store_test.cc and crash_test.cc.
#include <gtest/gtest.h>

#include <algorithm>

#include <atomic>
#include <functional>
#include <thread>

#include "store/memory_store.h"
#include "store_test_util.h"
#include "testing/test_database.h"

namespace kvmart::store {
namespace {

using namespace testing;
using kvmart::testing::TempDir;

struct Implementation {
  std::string name;
  // A store in `dir` whose decoded-payload cache (where it has one) holds
  // about `cache_bytes`; a database it needs is left in *db (the test owns it).
  std::function<std::unique_ptr<Store>(const std::string& dir, uint64_t cache_bytes,
                                       std::unique_ptr<kvmart::testing::TestDatabase>* db)>
      open;
};

using DbSlot = std::unique_ptr<kvmart::testing::TestDatabase>;
#ifdef KVMART_STORE_CONTRACT_ON_POSTGRES
constexpr bool kOnPostgres = true;
#else
constexpr bool kOnPostgres = false;
#endif

std::vector<Implementation> Implementations() {
  // The disk store whose catalog lives on PostgreSQL (each test's own schema
  // on the suite's server), as the nodes of a deployment share it: the
  // store_pg_test build of this file (prefix pg.store.).
  if constexpr (kOnPostgres) {
    return {{"postgres_catalog", [](const std::string& dir, uint64_t cache_bytes, DbSlot* db) -> std::unique_ptr<Store> {
               if (*db == nullptr) {
                 auto created = kvmart::testing::TestDatabase::Create(kvmart::testing::TempDir(),
                                                                      kvmart::testing::Backend::kPostgres);
                 EXPECT_TRUE(created.ok()) << created.status().ToString();
                 if (!created.ok()) return nullptr;
                 *db = std::move(created).value();
               } else {
                 EXPECT_TRUE((*db)->Recreate().ok());
               }
               StoreOptions o = Options(dir);
               o.durable = false;  // not a crash test
               o.memory_budget_bytes = cache_bytes;
               o.catalog = (*db)->location();
               auto s = Store::Open(o);
               EXPECT_TRUE(s.ok()) << s.status().ToString();
               return s.ok() ? std::move(s).value() : nullptr;
             }}};
  }
  return {
      {"embedded",
       [](const std::string& dir, uint64_t cache_bytes, DbSlot*) -> std::unique_ptr<Store> {
         StoreOptions o = Options(dir);
         o.durable = false;  // not a crash test
         o.memory_budget_bytes = cache_bytes;
         auto s = Store::Open(o);
         EXPECT_TRUE(s.ok()) << s.status().ToString();
         return s.ok() ? std::move(s).value() : nullptr;
       }},
      {"memory",
       [](const std::string&, uint64_t, DbSlot*) -> std::unique_ptr<Store> { return std::make_unique<MemoryStore>(); }},
  };
}

class StoreContract : public ::testing::TestWithParam<Implementation> {
 protected:
  void SetUp() override {
    store_ = GetParam().open(tmp_.path(), 64 << 20, &db_);
    ASSERT_NE(store_, nullptr);
  }
  TempDir tmp_;
  DbSlot db_;  // before store_: the store goes first
  std::unique_ptr<Store> store_;
};

TEST_P(StoreContract, PutStatLoadExportForEveryCodec) {
  const Profile p = SmallProfile();
  for (Codec codec : {Codec::kRaw, Codec::kLossless}) {
    SCOPED_TRACE(artifact::CodecName(codec));
    auto tokens = Tokens(10, codec == Codec::kRaw ? 1 : 2);  // blocks of 4, 4, 2 tokens
    Artifact a = MakeArtifact(p, tokens, codec, nullptr, "doc");
    const std::string id = a.manifest.artifact_id;
    ASSERT_TRUE(store_->Put(a).ok());

    auto info = store_->Stat(id);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_EQ(info->token_count, 10u);
    EXPECT_EQ(info->num_blocks, 3u);
    EXPECT_EQ(info->codec, std::string(artifact::CodecName(codec)));
    EXPECT_EQ(info->title, "doc");
    EXPECT_EQ(info->raw_bytes, a.manifest.TotalRawBytes());
    EXPECT_EQ(info->stored_bytes, a.manifest.TotalStoredBytes());
    EXPECT_EQ(info->publisher_hex, ToHex(a.manifest.publisher.data(), 32));
    EXPECT_EQ(info->profile_digest_hex, ToHex(artifact::ProfileDigest(p)));
    auto m = store_->GetManifest(id);
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->signed_text, a.manifest.signed_text);

    // Every loaded block carries its bytes (payload and span agree).
    const auto expected = Payloads(p, tokens);
    size_t n = 0;
    ASSERT_TRUE(store_->Load(id, {}, [&](const LoadedBlock& b) {
      EXPECT_EQ(b.index, n);
      EXPECT_NE(b.payload, nullptr);
      EXPECT_TRUE(std::equal(b.bytes.begin(), b.bytes.end(), expected[b.index].begin(), expected[b.index].end()));
      EXPECT_EQ(b.token_begin, a.manifest.blocks[b.index].token_begin);
      EXPECT_EQ(b.token_end, a.manifest.blocks[b.index].token_end);
      ++n;
      return Status::Ok();
    }).ok());
    EXPECT_EQ(n, 3u);

    // num_blocks limits the load.
    LoadOptions two;
    two.num_blocks = 2;
    two.prefetch = false;
    auto part = LoadAll(*store_, id, two);
    ASSERT_TRUE(part.ok());
    EXPECT_EQ(part->size(), 2u);

    // A destination receives the bytes; the consumer sees no payload.
    std::vector<uint8_t> dest(a.manifest.TotalRawBytes(), 0xee);
    LoadOptions d;
    d.destination = [&](uint32_t i, uint64_t raw) {
      return std::span<uint8_t>(dest.data() + a.manifest.blocks[i].token_begin * p.shape.BytesPerToken(), raw);
    };
    ASSERT_TRUE(store_->Load(id, d, [&](const LoadedBlock& b) {
      EXPECT_EQ(b.payload, nullptr);
      EXPECT_TRUE(std::equal(b.bytes.begin(), b.bytes.end(), expected[b.index].begin(), expected[b.index].end()));
      return Status::Ok();
    }).ok());
    std::vector<uint8_t> concat;
    for (const auto& e : expected) concat.insert(concat.end(), e.begin(), e.end());
    EXPECT_EQ(dest, concat);

    // Export gives the published container back, byte for byte.
    auto ex = store_->Export(id);
    ASSERT_TRUE(ex.ok());
    EXPECT_EQ(*artifact::SerializeContainer(*ex), *artifact::SerializeContainer(a));

    // Republishing is a no-op; another manifest under the same id is refused.
    EXPECT_TRUE(store_->Put(a).ok());
    EXPECT_EQ(store_->Put(MakeArtifact(p, tokens, codec, nullptr, "another title")).code(),
              Status::Code::kAlreadyExists);
  }
  EXPECT_EQ(store_->List().size(), 2u);
  EXPECT_EQ(store_->Metrics().artifacts, 2u);
  EXPECT_EQ(store_->GetManifest("kv1-nope").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(store_->Load("kv1-nope", {}, [](const LoadedBlock&) { return Status::Ok(); }).code(),
            Status::Code::kNotFound);
}

TEST_P(StoreContract, RejectsBadSignatureAndDamagedBlocksAtPut) {
  const Profile p = SmallProfile();
  Artifact a = MakeArtifact(p, Tokens(8));
  Artifact bad_sig = a;
  (*bad_sig.manifest.signature)[0] ^= 1;
  EXPECT_EQ(store_->Put(bad_sig).code(), Status::Code::kUnauthenticated);
  Artifact bad_block = a;
  bad_block.stored_blocks[1][5] ^= 0x10;
  EXPECT_EQ(store_->Put(bad_block).code(), Status::Code::kCorruption);
  EXPECT_TRUE(store_->List().empty());
  EXPECT_EQ(store_->Metrics().blocks, 0u);
}

TEST_P(StoreContract, LookupFindsLongestPublishedPrefixBlockByBlock) {
  const Profile p = SmallProfile();  // block size 4
  const Digest256 pd = artifact::ProfileDigest(p);
  auto doc = Tokens(10);  // 4 + 4 + partial 2
  Artifact a = MakeArtifact(p, doc);
  ASSERT_TRUE(store_->Put(a).ok());
  const std::string id = a.manifest.artifact_id;

  // Exact request: the whole artifact, partial last block included.
  PrefixMatch m = store_->Lookup(pd, doc);
  EXPECT_EQ(m.matched_tokens, 10u);
  EXPECT_EQ(m.artifact_id, id);
  EXPECT_EQ(m.artifact_tokens, 10u);
  EXPECT_EQ(m.source_artifact_id, id);
  EXPECT_EQ(m.block_hashes.size(), 3u);

  // The document plus a question: still the whole artifact.
  auto longer = doc;
  for (uint32_t t : {5u, 6u, 7u, 8u, 9u}) longer.push_back(t);
  m = store_->Lookup(pd, longer);
  EXPECT_EQ(m.matched_tokens, 10u);
  EXPECT_EQ(m.artifact_id, id);

  // Diverges inside block 1: block 0 is reusable, no artifact is an exact prefix.
  auto diverged = doc;
  diverged[6] += 1;
  m = store_->Lookup(pd, diverged);
  EXPECT_EQ(m.matched_tokens, 4u);
  EXPECT_EQ(m.artifact_id, "");
  EXPECT_EQ(m.source_artifact_id, id);
  ASSERT_EQ(m.block_hashes.size(), 1u);
  std::vector<std::vector<uint8_t>> got;
  ASSERT_TRUE(store_->LoadPrefix(m, [&](const LoadedBlock& b) {
    got.emplace_back(b.bytes.begin(), b.bytes.end());
    EXPECT_EQ(b.token_begin, 4 * got.size() - 4);
    return Status::Ok();
  }).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], PayloadFor(p, doc, 0));

  // A longer document sharing two full blocks: they are stored once.
  auto doc2 = Tokens(16);
  doc2.resize(8);
  for (uint32_t t = 0; t < 9; ++t) doc2.push_back(1000 + t);  // 8 shared + 9 new = 17 tokens
  Artifact b = MakeArtifact(p, doc2, Codec::kRaw);
  ASSERT_TRUE(store_->Put(b).ok());
  EXPECT_EQ(store_->Metrics().blocks, 3u + 3u);  // a: 3; b: 5 blocks, 2 shared
  m = store_->Lookup(pd, doc2);
  EXPECT_EQ(m.matched_tokens, 17u);
  EXPECT_EQ(m.artifact_id, b.manifest.artifact_id);
  auto req = doc2;
  req.resize(13);
  req[12] = 77;
  m = store_->Lookup(pd, req);
  EXPECT_EQ(m.matched_tokens, 12u);
  EXPECT_EQ(m.artifact_id, "");
  EXPECT_EQ(m.source_artifact_id, b.manifest.artifact_id);
  std::vector<uint32_t> first8(doc.begin(), doc.begin() + 8);
  m = store_->Lookup(pd, first8);
  EXPECT_EQ(m.matched_tokens, 8u);
  EXPECT_EQ(m.artifact_id, "");

  // Misses: other tokens, other profile, nothing.
  const uint64_t misses = store_->Metrics().misses;
  EXPECT_EQ(store_->Lookup(pd, Tokens(10, 3)).matched_tokens, 0u);
  EXPECT_EQ(store_->Lookup(artifact::ProfileDigest(SmallProfile(8)), doc).matched_tokens, 0u);
  EXPECT_EQ(store_->Lookup(pd, {}).matched_tokens, 0u);
  EXPECT_EQ(store_->Metrics().misses, misses + 3);

  // Removing a keeps b intact (shared blocks are refcounted).
  ASSERT_TRUE(store_->Remove(id).ok());
  EXPECT_EQ(store_->Remove(id).code(), Status::Code::kNotFound);
  EXPECT_EQ(store_->Metrics().blocks, 5u);
  auto loaded = LoadAll(*store_, b.manifest.artifact_id);
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(*loaded, Payloads(p, doc2));
  EXPECT_EQ(store_->Lookup(pd, doc).matched_tokens, 8u);
  EXPECT_EQ(store_->Stat(id).status().code(), Status::Code::kNotFound);
}

TEST_P(StoreContract, LookupPrefersTheLongestExactArtifact) {
  const Profile p = SmallProfile();
  const Digest256 pd = artifact::ProfileDigest(p);
  auto doc = Tokens(12);
  std::vector<uint32_t> d8(doc.begin(), doc.begin() + 8), d6(doc.begin(), doc.begin() + 6);
  for (const auto& t : {d8, d6, doc}) ASSERT_TRUE(store_->Put(MakeArtifact(p, t)).ok());
  auto req = doc;
  req.push_back(1);
  PrefixMatch m = store_->Lookup(pd, req);
  EXPECT_EQ(m.matched_tokens, 12u);
  EXPECT_EQ(m.artifact_tokens, 12u);
  std::vector<uint32_t> r7(doc.begin(), doc.begin() + 7);
  m = store_->Lookup(pd, r7);
  EXPECT_EQ(m.artifact_tokens, 6u);
  EXPECT_EQ(m.matched_tokens, 6u);
  ASSERT_EQ(m.block_hashes.size(), 2u);
  size_t n = 0;
  ASSERT_TRUE(store_->LoadPrefix(m, [&](const LoadedBlock& b) {
    EXPECT_EQ(std::vector<uint8_t>(b.bytes.begin(), b.bytes.end()), PayloadFor(p, d6, n));
    ++n;
    return Status::Ok();
  }).ok());
  EXPECT_EQ(n, 2u);
}

// A filter (the server's: artifacts the caller may see) limits which artifact
// a match names; the longest eligible one wins, and none eligible is no match.
TEST_P(StoreContract, LookupNamesOnlyEligibleArtifacts) {
  const Profile p = SmallProfile();
  const Digest256 pd = artifact::ProfileDigest(p);
  auto doc = Tokens(12);
  std::vector<uint32_t> d8(doc.begin(), doc.begin() + 8), d6(doc.begin(), doc.begin() + 6);
  std::vector<std::string> ids;
  for (const auto& t : {d8, d6, doc}) {
    Artifact a = MakeArtifact(p, t);
    ASSERT_TRUE(store_->Put(a).ok());
    ids.push_back(a.manifest.artifact_id);
  }
  auto req = doc;
  req.push_back(1);
  auto only = [](std::vector<std::string> allowed) {
    return [allowed](std::string_view id) { return std::find(allowed.begin(), allowed.end(), id) != allowed.end(); };
  };
  EXPECT_EQ(store_->Lookup(pd, req, only({ids[0], ids[1]})).artifact_id, ids[0]);  // d8, not the 12-token doc
  EXPECT_EQ(store_->Lookup(pd, req, only({ids[1]})).artifact_id, ids[1]);          // d6, partial last block
  EXPECT_EQ(store_->Lookup(pd, req, only({ids[1]})).artifact_tokens, 6u);
  EXPECT_EQ(store_->Lookup(pd, req, only({})).artifact_id, "");
  EXPECT_EQ(store_->Lookup(pd, req, Store::ArtifactFilter()).artifact_id, ids[2]);  // empty filter: all
}

TEST_P(StoreContract, PinTtlGcAndQuota) {
  const Profile p = SmallProfile();
  Artifact a = MakeArtifact(p, Tokens(8, 1)), b = MakeArtifact(p, Tokens(8, 2));
  ASSERT_TRUE(store_->Put(a).ok());
  ASSERT_TRUE(store_->Put(b).ok());
  ASSERT_TRUE(store_->SetTtl(a.manifest.artifact_id, std::chrono::seconds(0)).ok());
  ASSERT_TRUE(store_->SetTtl(b.manifest.artifact_id, std::chrono::seconds(0)).ok());
  ASSERT_TRUE(store_->Pin(b.manifest.artifact_id, true).ok());
  EXPECT_TRUE(store_->Stat(a.manifest.artifact_id)->expires_at_unix.has_value());
  EXPECT_EQ(store_->Lookup(artifact::ProfileDigest(p), Tokens(8, 1)).artifact_id, "");  // expired
  EXPECT_EQ(store_->Lookup(artifact::ProfileDigest(p), Tokens(8, 2)).artifact_id, b.manifest.artifact_id);  // pinned
  auto r = store_->Gc();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->expired_artifacts, 1u);
  EXPECT_EQ(r->blocks_removed, 2u);
  EXPECT_EQ(r->bytes_freed, a.manifest.TotalStoredBytes());
  EXPECT_EQ(store_->Stat(a.manifest.artifact_id).status().code(), Status::Code::kNotFound);
  EXPECT_TRUE(store_->Stat(b.manifest.artifact_id).ok());
  ASSERT_TRUE(store_->SetTtl(b.manifest.artifact_id, std::nullopt).ok());
  EXPECT_FALSE(store_->Stat(b.manifest.artifact_id)->expires_at_unix.has_value());
  EXPECT_EQ(store_->Pin("kv1-nope", true).code(), Status::Code::kNotFound);
  EXPECT_EQ(store_->SetTtl("kv1-nope", std::nullopt).code(), Status::Code::kNotFound);

  // Quota: b's publisher may store b plus 10 bytes.
  const std::string pub = ToHex(b.manifest.publisher.data(), 32);
  EXPECT_EQ(store_->SetPublisherQuota("zz", 1).code(), Status::Code::kInvalidArgument);
  ASSERT_TRUE(store_->SetPublisherQuota(pub, b.manifest.TotalStoredBytes() + 10).ok());
  EXPECT_EQ(store_->Put(a).code(), Status::Code::kResourceExhausted);
  EXPECT_EQ(store_->List().size(), 1u);
  // Another publisher is not limited; lifting the quota lets a in.
  SigningKey other = artifact::testing::TestKey(9);
  EXPECT_TRUE(store_->Put(MakeArtifact(p, Tokens(8, 5), Codec::kRaw, &other)).ok());
  ASSERT_TRUE(store_->SetPublisherQuota(pub, 0).ok());
  EXPECT_TRUE(store_->Put(a).ok());
}

TEST_P(StoreContract, RefusesAConflictingPayloadForAStoredChainHash) {
  const Profile p = SmallProfile();
  auto tokens = Tokens(8);
  ASSERT_TRUE(store_->Put(MakeArtifact(p, tokens)).ok());
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
  EXPECT_EQ(store_->Put(*liar).code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(store_->List().size(), 1u);
}

TEST_P(StoreContract, ConsumerErrorStopsTheLoad) {
  Artifact a = MakeArtifact(SmallProfile(), Tokens(40));
  ASSERT_TRUE(store_->Put(a).ok());
  int calls = 0;
  Status st = store_->Load(a.manifest.artifact_id, {}, [&](const LoadedBlock&) {
    return ++calls == 3 ? Status::Aborted("enough") : Status::Ok();
  });
  EXPECT_EQ(st.code(), Status::Code::kAborted);
  EXPECT_EQ(calls, 3);
}

TEST_P(StoreContract, VerifyChecksEveryBlock) {
  const Profile p = SmallProfile();
  Artifact a = MakeArtifact(p, Tokens(10), Codec::kLossless);
  ASSERT_TRUE(store_->Put(a).ok());
  auto all = store_->Verify("");
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->blocks_checked, 3u);
  EXPECT_EQ(all->blocks_bad, 0u);
  auto one = store_->Verify(a.manifest.artifact_id);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->blocks_checked, 3u);
  EXPECT_EQ(store_->Verify("kv1-nope").status().code(), Status::Code::kNotFound);
}

// Every method may be called from any thread; a publish that shares blocks
// with an artifact being read is safe. A small cache keeps the embedded
// store's memory tier evicting and promoting throughout.
TEST_P(StoreContract, ConcurrentReadersAndASharingPublisher) {
  store_.reset();
  store_ = GetParam().open(tmp_.Sub("small-cache"), 8 * 1024, &db_);
  ASSERT_NE(store_, nullptr);
  const Profile p = SmallProfile();
  auto doc = Tokens(64);
  Artifact a = MakeArtifact(p, doc, Codec::kLossless);
  ASSERT_TRUE(store_->Put(a).ok());
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
        auto got = LoadAll(*store_, a.manifest.artifact_id);
        if (!got.ok() || *got != expected) ++failures;
        if (store_->Lookup(artifact::ProfileDigest(p), doc).matched_tokens != 64) ++failures;
      }
    });
  }
  threads.emplace_back([&] {
    for (const auto& e : extensions)
      if (!store_->Put(e).ok()) ++failures;
    for (size_t i = 0; i < extensions.size(); i += 2)
      if (!store_->Remove(extensions[i].manifest.artifact_id).ok()) ++failures;
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store_->List().size(), 5u);
  if (GetParam().name != "memory") {
    EXPECT_GT(store_->Metrics().evictions, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Implementations, StoreContract, ::testing::ValuesIn(Implementations()),
                         [](const auto& i) { return i.param.name; });

}  // namespace
}  // namespace kvmart::store
