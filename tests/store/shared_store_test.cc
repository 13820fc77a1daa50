// Two nodes' stores over one PostgreSQL catalog and one Redis Cluster block
// tier, as `kvmart serve --db postgresql://… --blocks redis://…` runs them
// (docs/STORE.md, "Many nodes"): what one node publishes the other lists and
// loads bit-exactly; whatever the shared tier hands back is checked, and a
// block it lost or garbled is a reported miss, never wrong bytes. Real servers:
// the suite's PostgreSQL (the `postgres` fixture) and 3-master Redis Cluster
// (the `redis` fixture).
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "base/redis_cluster.h"
#include "store/redis_tier.h"
#include "store_test_util.h"
#include "testing/test_database.h"

namespace kvmart::store {
namespace {

using namespace testing;
using kvmart::testing::TempDir;

std::string RedisUrl() {
  const std::string file = std::string(KVMART_BINARY_DIR) + "/testing/redis/url";
  std::ifstream in(file);
  std::string url;
  in >> url;
  return url;
}

// A profile whose blocks (256 tokens × 8 layers × 4 KV heads × 128 × bf16 × K,V
// = 4 MiB) span several of the tier's 1 MiB values.
Profile BigProfile() { return artifact::testing::TestProfile({8, 4, 128, artifact::KvDtype::kBf16}, 256); }

class SharedStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto db = kvmart::testing::TestDatabase::Create(tmp_, kvmart::testing::Backend::kPostgres);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    db_ = std::move(db).value();
    const std::string url = RedisUrl();
    ASSERT_FALSE(url.empty()) << "no test Redis Cluster: " << KVMART_BINARY_DIR
                              << "/testing/redis/url is missing (ctest starts one through tests/testing/redis_cluster.sh)";
    auto seeds = redis::ParseClusterUrl(url);
    ASSERT_TRUE(seeds.ok()) << seeds.status().ToString();
    auto raw = redis::ClusterClient::Open(*seeds);
    ASSERT_TRUE(raw.ok()) << raw.status().ToString();
    raw_ = std::move(raw).value();
    a_ = Open("a", /*tier=*/true);
    b_ = Open("b", /*tier=*/true);
    ASSERT_NE(a_, nullptr);
    ASSERT_NE(b_, nullptr);
  }

  std::unique_ptr<Store> Open(const std::string& node, bool tier) {
    StoreOptions o = Options(tmp_.Sub(node));
    o.durable = false;
    o.catalog = db_->location();
    o.catalog_refresh = std::chrono::milliseconds(0);  // every read checks the generation
    if (tier) {
      auto t = RedisBlockTier::Open(RedisUrl());
      EXPECT_TRUE(t.ok()) << t.status().ToString();
      if (!t.ok()) return nullptr;
      o.shared_blocks = std::move(t).value();
    }
    auto s = Store::Open(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  // The stored bytes of block i, as the tier holds them.
  std::string TierBytes(const Artifact& a, size_t i) {
    const BlockKey k{a.manifest.blocks[i].chain_hash, a.manifest.blocks[i].xxh3_128};
    std::string out;
    for (uint64_t c = 0; c * kRedisChunkBytes < a.manifest.blocks[i].stored_bytes; ++c) {
      auto v = raw_->Get(RedisBlockTier::ChunkKey(k, c));
      EXPECT_TRUE(v.ok());
      if (!v.ok() || !v->has_value()) return "";
      out += **v;
    }
    return out;
  }

  TempDir tmp_;
  std::unique_ptr<kvmart::testing::TestDatabase> db_;
  std::unique_ptr<redis::ClusterClient> raw_;
  std::unique_ptr<Store> a_, b_;
};

TEST_F(SharedStoreTest, PublishedOnOneNodeLoadsBitExactlyOnTheOther) {
  const Profile p = BigProfile();
  const auto tokens = Tokens(600, 1);  // 3 blocks, the last partial
  const Artifact art = MakeArtifact(p, tokens, Codec::kRaw);
  const std::string& id = art.manifest.artifact_id;
  ASSERT_TRUE(a_->Put(art).ok());

  // B learns of it from the catalog, and of its prefix for lookups.
  auto info = b_->Stat(id);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->token_count, 600u);
  EXPECT_EQ(b_->Lookup(artifact::ProfileDigest(p), tokens).artifact_id, id);
  EXPECT_GT(b_->Metrics().catalog_refreshes, 0u);

  // Its bytes come from the tier, checked, and stay on B's disk.
  std::vector<Tier> tiers;
  auto got = LoadAll(*b_, id, {}, &tiers);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, Payloads(p, tokens));
  EXPECT_EQ(b_->Metrics().hits_shared, 3u);
  b_->DropMemoryTier();
  got = LoadAll(*b_, id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, Payloads(p, tokens));
  EXPECT_EQ(b_->Metrics().hits_shared, 3u);  // the second load read B's own disk

  // Committed blocks do not expire.
  const BlockKey k0{art.manifest.blocks[0].chain_hash, art.manifest.blocks[0].xxh3_128};
  auto ttl = raw_->Command({"TTL", RedisBlockTier::ChunkKey(k0, 0)});
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(ttl->integer, -1);
}

TEST_F(SharedStoreTest, RemovalOnOneNodeIsSeenByTheOther) {
  const Profile p = SmallProfile();
  const Artifact art = MakeArtifact(p, Tokens(10, 2));
  const std::string& id = art.manifest.artifact_id;
  ASSERT_TRUE(a_->Put(art).ok());
  ASSERT_TRUE(b_->Stat(id).ok());
  ASSERT_TRUE(b_->Pin(id, true).ok());  // a change made on B …
  auto pinned = a_->Stat(id);
  ASSERT_TRUE(pinned.ok());
  EXPECT_TRUE(pinned->pinned);  // … seen on A
  ASSERT_TRUE(a_->Remove(id).ok());
  EXPECT_EQ(b_->Stat(id).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(b_->List().size(), 0u);
  EXPECT_EQ(b_->Lookup(artifact::ProfileDigest(p), Tokens(10, 2)).matched_tokens, 0u);
  // Its blocks left the tier with the last reference.
  EXPECT_EQ(TierBytes(art, 0), "");
}

TEST_F(SharedStoreTest, AGarbledOrLostBlockInTheTierIsAMissNeverWrongBytes) {
  const Profile p = BigProfile();
  const auto tokens = Tokens(512, 3);  // 2 full blocks
  const Artifact art = MakeArtifact(p, tokens, Codec::kRaw);
  const std::string& id = art.manifest.artifact_id;
  ASSERT_TRUE(a_->Put(art).ok());
  const BlockKey k1{art.manifest.blocks[1].chain_hash, art.manifest.blocks[1].xxh3_128};

  // Same length, other bytes (a stray writer, a bug elsewhere).
  const std::string key = RedisBlockTier::ChunkKey(k1, 2);
  auto chunk = raw_->Get(key);
  ASSERT_TRUE(chunk.ok() && chunk->has_value());
  std::string bad = **chunk;
  bad[100] ^= 1;
  ASSERT_TRUE(raw_->Del(key).ok());
  ASSERT_TRUE(raw_->Set(key, bad, false).ok());
  auto got = LoadAll(*b_, id);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.status().IsDataLoss()) << got.status().ToString();
  EXPECT_EQ(b_->Metrics().shared_rejected, 1u);
  EXPECT_EQ(TierBytes(art, 1), "") << "the garbled block was not deleted from the tier";

  // A republish on the node that has the bytes puts them back; B recovers.
  ASSERT_TRUE(a_->Put(art).ok());
  auto c = Open("c", true);  // a node that never saw the damage
  ASSERT_NE(c, nullptr);
  got = LoadAll(*c, id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, Payloads(p, tokens));

  // A lost value (a failover dropped an acknowledged write): a miss, counted.
  ASSERT_TRUE(raw_->Del(RedisBlockTier::ChunkKey(k1, 0)).ok());
  auto d = Open("d", true);
  ASSERT_NE(d, nullptr);
  got = LoadAll(*d, id);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.status().IsDataLoss()) << got.status().ToString();
  EXPECT_EQ(d->Metrics().shared_misses, 1u);
}

TEST_F(SharedStoreTest, VerifyOnAnotherNodeChecksTheSharedCopies) {
  const Profile p = SmallProfile();
  const Artifact art = MakeArtifact(p, Tokens(30, 6));
  ASSERT_TRUE(a_->Put(art).ok());
  auto r = b_->Verify("");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_checked, art.manifest.blocks.size());
  EXPECT_EQ(r->blocks_bad, 0u) << (r->problems.empty() ? "" : r->problems[0]);
  EXPECT_EQ(b_->Metrics().hits_shared, art.manifest.blocks.size());
}

TEST_F(SharedStoreTest, WithoutTheTierAnotherNodesBlocksAreDataLossNotWrongBytes) {
  auto lone = Open("lone", /*tier=*/false);
  ASSERT_NE(lone, nullptr);
  const Profile p = SmallProfile();
  const Artifact art = MakeArtifact(p, Tokens(10, 4));
  ASSERT_TRUE(a_->Put(art).ok());
  ASSERT_TRUE(lone->Stat(art.manifest.artifact_id).ok());  // listed through the catalog
  auto got = LoadAll(*lone, art.manifest.artifact_id);
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.status().IsDataLoss()) << got.status().ToString();
}

TEST_F(SharedStoreTest, BothNodesPublishingOneArtifactAtOnceStoreItOnce) {
  const Profile p = SmallProfile();
  const Artifact art = MakeArtifact(p, Tokens(40, 5));
  Status sa, sb;
  std::thread ta([&] { sa = a_->Put(art); });
  std::thread tb([&] { sb = b_->Put(art); });
  ta.join();
  tb.join();
  EXPECT_TRUE(sa.ok()) << sa.ToString();
  EXPECT_TRUE(sb.ok()) << sb.ToString();
  EXPECT_EQ(a_->List().size(), 1u);
  EXPECT_EQ(b_->List().size(), 1u);
  auto got = LoadAll(*b_, art.manifest.artifact_id);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, Payloads(p, Tokens(40, 5)));
}

TEST_F(SharedStoreTest, AnUncommittedBlockCarriesAnExpiryAndAnUnreachableTierIsUnavailable) {
  auto tier = RedisBlockTier::Open(RedisUrl(), RedisTierOptions{{}, std::chrono::seconds(30)});
  ASSERT_TRUE(tier.ok());
  BlockKey k;
  k.chain.fill(0xab);
  k.xxh3.fill(0xcd);
  const std::vector<uint8_t> bytes(3 * kRedisChunkBytes / 2, 7);
  ASSERT_TRUE((*tier)->Put(k, bytes).ok());
  auto ttl = raw_->Command({"TTL", RedisBlockTier::ChunkKey(k, 1)});
  ASSERT_TRUE(ttl.ok());
  EXPECT_GT(ttl->integer, 0);
  EXPECT_LE(ttl->integer, 30);
  auto back = (*tier)->Get(k, bytes.size());
  ASSERT_TRUE(back.ok() && back->has_value());
  EXPECT_EQ(**back, bytes);
  ASSERT_TRUE((*tier)->Remove(k, bytes.size()).ok());

  redis::ClusterOptions quick;
  quick.connect_timeout = std::chrono::milliseconds(200);
  quick.retry_budget = std::chrono::milliseconds(300);
  auto dead = RedisBlockTier::Open("redis://127.0.0.1:1", RedisTierOptions{quick, std::chrono::seconds(30)});
  ASSERT_FALSE(dead.ok());
  EXPECT_EQ(dead.status().code(), Status::Code::kUnavailable) << dead.status().ToString();
}

}  // namespace
}  // namespace kvmart::store
