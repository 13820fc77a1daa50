// Golden files of the current format (tests/data/artifact-v1.0-*.kva). Together
// they use every E-plane method: raw; rANS and zstd (lossless); nibble (-nibble).
//
// Create missing ones (a new version's files; never rewrite released ones, they
// must stay readable and they pin encoder choices made at the time):
//   KVMART_WRITE_GOLDEN=1 build/artifact_test --gtest_filter='Golden.*'
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "artifact/chain_hash.h"
#include "artifact_test_util.h"

namespace kvmart::artifact {
namespace {

using testing::BuildTestArtifact;
using testing::TestKey;
using testing::TestProfile;

struct Golden {
  const char* file;
  Codec codec;
  Profile profile;
  size_t tokens;
  bool optional_fields;
  const char* artifact_id;
};

std::vector<Golden> Goldens() {
  return {
      // The worked example of docs/ARTIFACT.md §7: 1 layer, 1 head, head_dim 4, 3 tokens.
      {"artifact-v1.0-raw.kva", Codec::kRaw, TestProfile({1, 1, 4, KvDtype::kBf16}, 2), 3, false,
       "kv1-bb753656688a8cc09f89bb079f3d0dfeede8300f996164c5fdb639e134cfae88"},
      {"artifact-v1.0-lossless.kva", Codec::kLossless, TestProfile({2, 2, 16, KvDtype::kBf16}, 4), 10, true,
       "kv1-63bc252592bb2a529ec252075da9441ffd8e5a50180fc32e5a35f636951f3b7b"},
      // Blocks large enough for the nibble E-plane coder (the default on KV-like data).
      {"artifact-v1.0-lossless-nibble.kva", Codec::kLossless, TestProfile({2, 2, 32, KvDtype::kBf16}, 16), 20, true,
       "kv1-9f72afdd3a5a936952c93ffb203aebc09e5019f51f0f0dafa22f6bcf4c05bd7b"},
  };
}

std::string DataPath(const char* file) { return std::string(KVMART_SOURCE_DIR) + "/tests/data/" + file; }

TEST(Golden, CurrentVersionFilesAreReadable) {
  const bool write = std::getenv("KVMART_WRITE_GOLDEN") != nullptr;
  for (const Golden& g : Goldens()) {
    auto built = BuildTestArtifact(g.codec, g.profile, g.tokens, TestKey(), g.optional_fields);
    if (write && !std::filesystem::exists(DataPath(g.file))) {
      std::ofstream(DataPath(g.file), std::ios::binary)
          .write(reinterpret_cast<const char*>(built.bytes.data()), static_cast<std::streamsize>(built.bytes.size()));
      std::printf("wrote %s: %s\n", g.file, built.artifact.manifest.artifact_id.c_str());
    }
    auto r = ArtifactReader::OpenFile(DataPath(g.file));
    ASSERT_TRUE(r.ok()) << g.file << ": " << r.status().ToString();
    const Manifest& m = r->manifest();
    EXPECT_EQ(m.version, kCurrentFormat);
    EXPECT_EQ(m.artifact_id, ArtifactId(g.profile, testing::TestTokens(g.tokens)));
    if (std::string(g.artifact_id).size() > 4) {
      EXPECT_EQ(m.artifact_id, g.artifact_id) << g.file;
    }
    EXPECT_EQ(m.publisher, TestKey().public_key());
    EXPECT_TRUE(r->CheckProfile(g.profile).ok());
    auto blocks = r->ReadAllBlocks(2);
    ASSERT_TRUE(blocks.ok()) << blocks.status().ToString();
    EXPECT_EQ(*blocks, built.payloads) << g.file;
    // Raw artifacts depend on nothing but this code: a byte-identical rebuild
    // proves the writer still produces the documented format.
    if (g.codec == Codec::kRaw) {
      std::ifstream in(DataPath(g.file), std::ios::binary);
      std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      EXPECT_EQ(file, built.bytes) << g.file << " no longer matches what the writer produces";
    }
  }
}

}  // namespace
}  // namespace kvmart::artifact
