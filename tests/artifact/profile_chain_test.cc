#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>

#include "artifact/canonical_json.h"
#include "artifact/chain_hash.h"
#include "artifact/profile.h"
#include "synthetic_kv.h"

namespace kvmart::artifact {
namespace {

using testing::TestProfile;

std::vector<uint32_t> Tokens(size_t n, uint32_t seed = 1) {
  std::vector<uint32_t> t(n);
  testing::SplitMix64 r(seed);
  for (auto& x : t) x = static_cast<uint32_t>(r.Next() % 151936);
  return t;
}

TEST(Profile, CanonicalJsonIsSortedAndCompact) {
  Profile p = TestProfile();
  std::string j = CanonicalProfileJson(p);
  EXPECT_EQ(j,
            "{\"block_size\":4,\"config_digest\":\"" + std::string(64, 'b') +
                "\",\"kv_dtype\":\"bf16\",\"kv_shape\":{\"head_dim\":16,\"num_kv_heads\":2,\"num_layers\":2},"
                "\"numerics\":\"cpu-fma-seq-v1\",\"tokenizer_digest\":\"" +
                std::string(64, 'c') + "\",\"weights_digest\":\"" + std::string(64, 'a') + "\"}");
  EXPECT_EQ(ProfileDigest(p), Sha256Of(j));
  auto parsed = ParseCanonicalJson(j);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  auto back = ProfileFromJson(*parsed);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, p);
}

TEST(Profile, RejectsNonCanonicalAndBadFields) {
  EXPECT_FALSE(ParseCanonicalJson("{\"b\":1,\"a\":2}").ok());
  EXPECT_FALSE(ParseCanonicalJson("{\"a\": 1}").ok());
  EXPECT_FALSE(ParseCanonicalJson("{\"a\":1.5}").ok());
  EXPECT_FALSE(ParseCanonicalJson("{\"a\":-1}").ok());
  EXPECT_FALSE(ParseCanonicalJson("{\"a\":true}").ok());
  EXPECT_FALSE(ParseCanonicalJson(std::string(100000, '[')).ok());
  EXPECT_TRUE(ParseCanonicalJson("{\"a\":[1,2],\"b\":\"x\"}").ok());
  Profile p = TestProfile();
  p.weights_digest = "ABC";
  EXPECT_FALSE(p.Validate().ok());
  p = TestProfile();
  p.block_size = 0;
  EXPECT_FALSE(p.Validate().ok());
  p = TestProfile({0, 1, 1, KvDtype::kBf16});
  EXPECT_FALSE(p.Validate().ok());
  p = TestProfile({65536, 65536, 65536, KvDtype::kBf16});
  EXPECT_FALSE(p.Validate().ok());
}

TEST(Profile, MismatchNamesTheField) {
  Profile a = TestProfile(), b = TestProfile();
  EXPECT_TRUE(CheckProfileMatches(a, b).ok());
  b.weights_digest[0] = 'f';
  Status s = CheckProfileMatches(a, b);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("weights_digest"), std::string::npos) << s.message();
  b = TestProfile();
  b.shape.dtype = KvDtype::kF16;
  EXPECT_NE(CheckProfileMatches(a, b).message().find("kv_dtype"), std::string::npos);
  b = TestProfile();
  b.shape.head_dim = 8;
  EXPECT_NE(CheckProfileMatches(a, b).message().find("head_dim"), std::string::npos);
}

TEST(ChainHash, MatchesTheDefinition) {
  Profile p = TestProfile();
  std::vector<uint32_t> t = {1, 2, 0x01020304, 4, 5};
  Digest256 pd = ProfileDigest(p);
  std::string seed_in = "kvmart/v1" + std::string(pd.begin(), pd.end());
  Digest256 h0 = Sha256Of(seed_in);
  std::string b1(h0.begin(), h0.end());
  b1 += std::string("\x01\0\0\0\x02\0\0\0\x04\x03\x02\x01\x04\0\0\0", 16);
  Digest256 h1 = Sha256Of(b1);
  std::string b2(h1.begin(), h1.end());
  b2 += std::string("\x05\0\0\0", 4);
  Digest256 h2 = Sha256Of(b2);
  auto chain = ChainHashes(pd, t, 4);
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(chain[0], h1);
  EXPECT_EQ(chain[1], h2);
  EXPECT_EQ(ArtifactId(p, t), "kv1-" + ToHex(h2));
  EXPECT_EQ(ArtifactId(p, {}), "");
}

TEST(ChainHash, SameInputsSameIdInAnotherProcess) {
  Profile p = TestProfile({28, 8, 128, KvDtype::kBf16}, 256);
  auto t = Tokens(1000);
  std::string here = ArtifactId(p, t);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // A fresh computation in the child: nothing shared but the inputs.
    Profile q = TestProfile({28, 8, 128, KvDtype::kBf16}, 256);
    std::string id = ArtifactId(q, Tokens(1000));
    ssize_t w = write(fds[1], id.data(), id.size());
    _exit(w == static_cast<ssize_t>(id.size()) ? 0 : 1);
  }
  close(fds[1]);
  char buf[128];
  ssize_t n = read(fds[0], buf, sizeof(buf));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), here);
  EXPECT_EQ(here.size(), 4u + 64u);
}

TEST(ChainHash, AnyChangeChangesTheId) {
  Profile p = TestProfile({2, 2, 16, KvDtype::kBf16}, 8);
  auto t = Tokens(37);
  std::set<std::string> ids{ArtifactId(p, t)};
  for (size_t i = 0; i < t.size(); ++i) {
    auto u = t;
    u[i] ^= 1;
    EXPECT_TRUE(ids.insert(ArtifactId(p, u)).second) << "token " << i;
  }
  for (uint32_t bs : {1u, 2u, 7u, 9u, 16u, 256u}) {
    Profile q = p;
    q.block_size = bs;
    EXPECT_TRUE(ids.insert(ArtifactId(q, t)).second) << "block size " << bs;
  }
  Profile q = p;
  q.shape.dtype = KvDtype::kF16;
  EXPECT_TRUE(ids.insert(ArtifactId(q, t)).second);
  for (size_t i = 0; i < 64; ++i) {  // one "weight byte" changes the weights digest
    q = p;
    q.weights_digest[i] = q.weights_digest[i] == 'a' ? '0' : 'a';
    EXPECT_TRUE(ids.insert(ArtifactId(q, t)).second) << "weights digest char " << i;
  }
  q = p;
  q.tokenizer_digest[5] = 'd';
  EXPECT_TRUE(ids.insert(ArtifactId(q, t)).second);
  q = p;
  q.numerics = "other";
  EXPECT_TRUE(ids.insert(ArtifactId(q, t)).second);
  // Dropping or appending a token changes it too.
  EXPECT_TRUE(ids.insert(ArtifactId(p, std::span(t).first(36))).second);
  auto longer = t;
  longer.push_back(0);
  EXPECT_TRUE(ids.insert(ArtifactId(p, longer)).second);
}

TEST(ChainHash, ExtensionSharesFullBlockHashes) {
  Profile p = TestProfile({2, 2, 16, KvDtype::kBf16}, 8);
  auto doc = Tokens(8 * 5 + 3);
  auto ext = doc;
  for (uint32_t x : Tokens(20, 7)) ext.push_back(x);
  Digest256 pd = ProfileDigest(p);
  auto a = ChainHashes(pd, doc, 8), b = ChainHashes(pd, ext, 8);
  ASSERT_EQ(a.size(), 6u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(a[i], b[i]) << i;
  EXPECT_NE(a[5], b[5]);  // the partial block differs from the extension's full one
}

}  // namespace
}  // namespace kvmart::artifact
