// The store in the exactness chain (docs/DESIGN.md §3): prefill → artifact → store →
// Lookup → Load/LoadPrefix → ImportBlockPayload → prefill the rest gives
// bit-identical logits to prefilling everything, through both tiers, for an
// exact-prefix artifact and for a request that diverges inside a document.
#include <gtest/gtest.h>

#include <bit>


#include "artifact/chain_hash.h"
#include "artifact_test_util.h"
#include "engine/artifact_io.h"
#include "engine/engine.h"
#include "engine/random_tokens.h"
#include "store/store.h"
#include "testing/synthetic_model.h"
#include "testing/temp_dir.h"

namespace kvmart::store {
namespace {

std::vector<int32_t> RandomTokens(size_t n, uint64_t seed) { return RandomTextTokens(n, seed, 151936); }

// The logits' bit patterns: "bit-identical" is compared on bits, not with
// float == (which equates -0 and +0 and never equates NaNs).
std::vector<uint32_t> Logits(Session& s) {
  auto l = s.logits();
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  std::vector<uint32_t> bits;
  if (!l.ok()) return bits;
  bits.reserve(l->size());
  for (float f : *l) bits.push_back(std::bit_cast<uint32_t>(f));
  return bits;
}

// Imports the store's blocks, prefills the remaining request tokens, returns
// the logits and which tiers served the blocks.
std::vector<uint32_t> ReuseAndPrefill(Engine& engine, Store& store, const PrefixMatch& match, bool whole_artifact,
                                      const std::vector<int32_t>& request, std::vector<Tier>* tiers) {
  auto s = engine.NewSession();
  std::vector<uint32_t> ids(request.begin(), request.end());
  auto import = [&](const LoadedBlock& b) {
    tiers->push_back(b.tier);
    return ImportBlockPayload(*s, b.token_begin,
                              std::span<const uint32_t>(ids.data() + b.token_begin, b.token_end - b.token_begin),
                              *b.payload);
  };
  Status st = whole_artifact ? store.Load(match.artifact_id, {}, import) : store.LoadPrefix(match, import);
  EXPECT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(s->size(), match.matched_tokens);
  std::vector<int32_t> rest(request.begin() + static_cast<ptrdiff_t>(match.matched_tokens), request.end());
  EXPECT_TRUE(s->Prefill(rest).ok());
  return Logits(*s);
}

TEST(StoreEngine, ReusedPrefixGivesBitIdenticalLogits) {
  kvmart::testing::SyntheticModels models;
  kvmart::testing::TempDir tmp;
  EngineOptions eo;
  eo.threads = 1;
  auto engine = Engine::Create(models.Load("tiny"), eo);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  StoreOptions so;
  so.data_dir = tmp.path();
  so.memory_budget_bytes = 64 << 20;
  auto store = Store::Open(so);
  ASSERT_TRUE(store.ok()) << store.status().ToString();

  // Publish a 70-token document (blocks of 16: four full, one of 6 tokens).
  const auto doc = RandomTokens(70, 1);
  BuildOptions bo;
  bo.codec = artifact::Codec::kLossless;
  bo.block_size = 16;
  auto publisher = (*engine)->NewSession();
  auto a = BuildArtifact(*publisher, doc, {}, artifact::testing::TestKey(), bo);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE((*store)->Put(*a).ok());
  const Digest256 pd = artifact::ProfileDigest(ArtifactProfile((*engine)->model(), 16));

  // 1. The document plus a question: the whole artifact is reused.
  auto request = doc;
  for (int32_t t : RandomTokens(9, 2)) request.push_back(t);
  auto full = (*engine)->NewSession();
  ASSERT_TRUE(full->Prefill(request).ok());
  const auto expected = Logits(*full);
  PrefixMatch m = (*store)->Lookup(pd, std::vector<uint32_t>(request.begin(), request.end()));
  EXPECT_EQ(m.artifact_id, a->manifest.artifact_id);
  EXPECT_EQ(m.matched_tokens, 70u);
  for (Tier want : {Tier::kDisk, Tier::kMemory}) {
    std::vector<Tier> tiers;
    EXPECT_EQ(ReuseAndPrefill(**engine, **store, m, /*whole_artifact=*/true, request, &tiers), expected);
    EXPECT_EQ(tiers, std::vector<Tier>(5, want));
  }

  // 2. A request that follows the document for 40 tokens, then diverges: two
  //    blocks (32 tokens) are reused through LoadPrefix.
  std::vector<int32_t> diverging(doc.begin(), doc.begin() + 40);
  for (int32_t t : RandomTokens(12, 3)) diverging.push_back(t);
  auto full2 = (*engine)->NewSession();
  ASSERT_TRUE(full2->Prefill(diverging).ok());
  m = (*store)->Lookup(pd, std::vector<uint32_t>(diverging.begin(), diverging.end()));
  EXPECT_EQ(m.matched_tokens, 32u);
  EXPECT_EQ(m.artifact_id, "");
  EXPECT_EQ(m.source_artifact_id, a->manifest.artifact_id);
  (*store)->DropMemoryTier();
  std::vector<Tier> tiers;
  EXPECT_EQ(ReuseAndPrefill(**engine, **store, m, /*whole_artifact=*/false, diverging, &tiers), Logits(*full2));
  EXPECT_EQ(tiers, std::vector<Tier>(2, Tier::kDisk));
}

}  // namespace
}  // namespace kvmart::store
