// Spot checks (engine/spot_check.h): a block recomputed from the artifact's
// own prefix equals it bit for bit when honest, and every kind of tampering
// the check can see is seen.
#include "engine/spot_check.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "artifact_test_util.h"
#include "engine/artifact_io.h"
#include "engine/random_tokens.h"
#include "testing/synthetic_model.h"

namespace kvmart {
namespace {

class SpotCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions eo;
    eo.threads = 1;
    auto e = Engine::Create(models_.Load("tiny"), eo);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(e).value();
    art_ = Build(RandomTextTokens(100, 1, 151936));  // blocks of 16: six full, one of 4
    ASSERT_EQ(art_.manifest.blocks.size(), 7u);
  }
  artifact::Artifact Build(const std::vector<int32_t>& tokens) {
    BuildOptions bo;
    bo.block_size = 16;  // raw: the stored bytes are the payloads
    auto s = engine_->NewSession();
    auto a = BuildArtifact(*s, tokens, {}, artifact::testing::TestKey(), bo);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return std::move(a).value();
  }
  SpotCheckReport Check(const std::vector<std::vector<uint8_t>>& payloads, std::vector<uint32_t> blocks) {
    auto s = engine_->NewSession();
    auto r = SpotCheck(*s, art_.manifest, payloads, std::move(blocks), 5);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : SpotCheckReport{};
  }
  kvmart::testing::SyntheticModels models_;
  std::unique_ptr<Engine> engine_;
  artifact::Artifact art_;
};

TEST_F(SpotCheckTest, AnHonestArtifactPassesEveryChoiceOfBlocks) {
  for (std::vector<uint32_t> blocks : {std::vector<uint32_t>{}, {0}, {2, 5}, {0, 1, 2, 3, 4, 5}}) {
    SpotCheckReport r = Check(art_.stored_blocks, blocks);
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.checked.back(), 6u);  // the last block always, for the probe
    EXPECT_TRUE(r.probe_identical);
    EXPECT_LT(r.tokens_prefilled, r.tokens_total + 1);
  }
  EXPECT_EQ(Check(art_.stored_blocks, {2, 5}).tokens_prefilled, 16u + 16u + 4u);
}

TEST_F(SpotCheckTest, OneFlippedBitIsFoundWhereItIsAndAfterIt) {
  auto payloads = art_.stored_blocks;
  payloads[3][1000] ^= 0x10;
  // A checked block is recomputed in place, so the blocks after it are
  // checked against an honest prefix: only block 3 itself differs.
  SpotCheckReport r = Check(payloads, {1, 3, 4});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.differing, (std::vector<uint32_t>{3}));
  EXPECT_TRUE(r.probe_identical);
  // Unchecked, the damaged block is imported, and the last block computed
  // after it (with the probe) differs.
  r = Check(payloads, {0, 1, 2});
  EXPECT_EQ(r.differing, (std::vector<uint32_t>{6}));
  EXPECT_FALSE(r.probe_identical);
}

TEST_F(SpotCheckTest, ReorderedBlocksAndAnotherTextsKvAreFound) {
  auto swapped = art_.stored_blocks;
  std::swap(swapped[1], swapped[2]);
  EXPECT_FALSE(Check(swapped, {1}).kv_identical);
  auto other = Build(RandomTextTokens(100, 2, 151936));
  EXPECT_EQ(Check(other.stored_blocks, {0}).differing, (std::vector<uint32_t>{0, 6}));
}

TEST(SpotCheckChoice, DistinctSortedAndUniformOverAllButTheLastBlock) {
  std::mt19937 rng(7);
  auto uniform = [&](uint32_t u) { return std::uniform_int_distribution<uint32_t>(0, u - 1)(rng); };
  std::map<uint32_t, int> seen;
  const int draws = 30000;
  for (int i = 0; i < draws; ++i) {
    auto c = ChooseSpotCheckBlocks(10, 3, uniform);
    ASSERT_EQ(c.size(), 3u);
    ASSERT_TRUE(std::is_sorted(c.begin(), c.end()));
    ASSERT_EQ(std::adjacent_find(c.begin(), c.end()), c.end());
    for (uint32_t b : c) {
      ASSERT_LT(b, 9u);
      ++seen[b];
    }
  }
  ASSERT_EQ(seen.size(), 9u);
  for (const auto& [b, count] : seen) EXPECT_NEAR(count, draws * 3.0 / 9.0, draws * 0.02) << "block " << b;
  EXPECT_EQ(ChooseSpotCheckBlocks(4, 10, uniform).size(), 3u);
  EXPECT_TRUE(ChooseSpotCheckBlocks(1, 3, uniform).empty());
}

TEST(SpotCheckChoice, DetectionProbability) {
  EXPECT_NEAR(SpotCheckDetection(35, 3, 1), 4.0 / 35.0, 1e-12);
  EXPECT_DOUBLE_EQ(SpotCheckDetection(35, 34, 1), 1.0);
  EXPECT_DOUBLE_EQ(SpotCheckDetection(35, 3, 35), 1.0);
  EXPECT_DOUBLE_EQ(SpotCheckDetection(35, 3, 0), 0.0);
  // f = 2, k = 1, n = 4: miss only if the last is clean (2/4) and the one
  // checked of the other three is clean (1/3): 1 - 1/6.
  EXPECT_NEAR(SpotCheckDetection(4, 1, 2), 1.0 - 1.0 / 6.0, 1e-12);
}

}  // namespace
}  // namespace kvmart
