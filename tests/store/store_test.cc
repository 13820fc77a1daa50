// The embedded store beyond the contract (store_contract_test.cc runs that over
// every implementation): its memory and disk tiers, persistence and locking,
// block files, damaged files on disk. Crash and disk-full tests: crash_test.cc.
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
  return BlockFiles(PosixFileSystem(), dir + "/blocks", false).PathFor({b.chain_hash, b.xxh3_128});
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

  // promote = false (the server keeps the KV itself): disk reads leave the
  // memory tier as it was, so the next load reads the disk again.
  store->DropMemoryTier();
  LoadOptions once;
  once.promote = false;
  for (int round = 0; round < 2; ++round) {
    tiers.clear();
    auto got = LoadAll(*store, a.manifest.artifact_id, once, &tiers);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, expected);
    EXPECT_EQ(tiers, std::vector<Tier>(3, Tier::kDisk)) << round;
    EXPECT_EQ(store->Metrics().memory_bytes, 0u) << round;
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

// What the contract tests cannot see: the disk tier's files. A rejected publish
// writes none; shared blocks are one file; removal and Gc delete exactly the
// files no artifact references any more.
TEST(Store, BlockFilesFollowTheCatalog) {
  TempDir tmp;
  auto store = OpenOrDie(Options(tmp.path()));
  const Profile p = SmallProfile();
  Artifact a = MakeArtifact(p, Tokens(10));
  Artifact bad_block = a;
  bad_block.stored_blocks[1][5] ^= 0x10;
  EXPECT_FALSE(store->Put(bad_block).ok());
  EXPECT_EQ(CountFiles(tmp.path() + "/blocks"), 0u);

  ASSERT_TRUE(store->Put(a).ok());
  auto doc2 = Tokens(10);
  doc2.resize(8);
  for (uint32_t t = 0; t < 9; ++t) doc2.push_back(1000 + t);  // shares a's two full blocks
  Artifact b = MakeArtifact(p, doc2);
  ASSERT_TRUE(store->Put(b).ok());
  EXPECT_EQ(CountFiles(tmp.path() + "/blocks"), 6u);
  ASSERT_TRUE(store->Remove(a.manifest.artifact_id).ok());
  EXPECT_EQ(CountFiles(tmp.path() + "/blocks"), 5u);
  ASSERT_TRUE(store->SetTtl(b.manifest.artifact_id, std::chrono::seconds(0)).ok());
  ASSERT_TRUE(store->Gc().ok());
  EXPECT_EQ(CountFiles(tmp.path() + "/blocks"), 0u);
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
