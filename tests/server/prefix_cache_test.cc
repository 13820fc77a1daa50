// Automatic prefix caching of plain prompts, per account: the cache itself on
// real engine prefixes, and over HTTP — a later prompt of the same account
// attaches the earlier prompt's KV and answers bit-identically to a server
// without the cache; another account never does.
#include <gtest/gtest.h>

#include "server/prefix_cache.h"
#include "test_server.h"

namespace kvmart::testing {
namespace {

using server::PrefixCache;

class PrefixCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions eo;
    eo.threads = 1;
    engine_ = Engine::Create(Models().Load("tiny"), eo).value();
  }
  std::shared_ptr<const KvPrefix> Prefix(std::vector<int32_t> tokens) {
    auto s = engine_->NewSession();
    EXPECT_TRUE(s->Prefill(tokens).ok());
    auto p = s->ShareAsPrefix();
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return *p;
  }
  static std::vector<int32_t> Tokens(size_t n, int32_t first = 1) {
    std::vector<int32_t> t(n);
    for (size_t i = 0; i < n; ++i) t[i] = first + static_cast<int32_t>(i % 500);
    return t;
  }
  std::unique_ptr<Engine> engine_;
};

TEST_F(PrefixCacheTest, LongestOfTheSameAccountLeavingATokenToPrefill) {
  PrefixCache cache(1 << 30, 16, 4);
  const auto t100 = Tokens(100);
  cache.Insert(7, Prefix(std::vector<int32_t>(t100.begin(), t100.begin() + 70)), 1000);
  cache.Insert(7, Prefix(t100), 1000);
  auto prompt = Tokens(120);
  auto hit = cache.Longest(7, prompt);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->tokens.size(), 100u);
  // The 100-token prompt itself: only the 70-token prefix leaves a token to prefill.
  hit = cache.Longest(7, t100);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->tokens.size(), 70u);
  EXPECT_EQ(cache.Longest(8, prompt), nullptr);  // another account: nothing
  auto diverging = prompt;
  diverging[3] += 1;
  EXPECT_EQ(cache.Longest(7, diverging), nullptr);
  EXPECT_TRUE(cache.Contains(7, t100));
  EXPECT_FALSE(cache.Contains(8, t100));
  const auto st = cache.stats();
  EXPECT_EQ(st.hits, 2u);
  EXPECT_EQ(st.misses, 2u);
  EXPECT_EQ(st.tokens_reused, 170u);
}

TEST_F(PrefixCacheTest, BoundedByBytesAndEntriesLeastRecentlyUsedFirst) {
  PrefixCache cache(2500, 16, 4);
  cache.Insert(1, Prefix(Tokens(10, 1)), 1000);
  cache.Insert(1, Prefix(Tokens(10, 100)), 1000);
  ASSERT_NE(cache.Longest(1, Tokens(20, 1)), nullptr);  // touches the first
  cache.Insert(1, Prefix(Tokens(10, 200)), 1000);       // over 2500: the second goes
  EXPECT_EQ(cache.stats().entries, 2u);
  EXPECT_EQ(cache.Longest(1, Tokens(20, 100)), nullptr);
  EXPECT_NE(cache.Longest(1, Tokens(20, 1)), nullptr);
  EXPECT_TRUE(cache.EvictOldest());
  EXPECT_TRUE(cache.EvictOldest());
  EXPECT_FALSE(cache.EvictOldest());
  PrefixCache off(0);
  off.Insert(1, Prefix(Tokens(10)), 1);
  EXPECT_EQ(off.stats().entries, 0u);
  PrefixCache few(1 << 30, 16, 64);
  few.Insert(1, Prefix(Tokens(10)), 1);  // shorter than min_tokens
  EXPECT_EQ(few.stats().entries, 0u);
}

std::string LongText(const char* topic) {
  std::string s;
  for (int i = 0; i < 12; ++i) s += std::string("The ") + topic + " report, section " + std::to_string(i) + ", lists the figures. ";
  return s;
}

struct Answer {
  int status = 0;
  json ids, sha;
  int64_t cached = -1;
};

Answer Ask(TestServer& srv, const std::string& key, const std::string& prompt, bool sampled) {
  json req = {{"prompt", prompt}, {"max_tokens", 6}, {"kvmart_debug", true}};
  if (sampled) {
    req["temperature"] = 0.9;
    req["seed"] = 17;
  } else {
    req["temperature"] = 0;
  }
  Reply r = srv.Post("/v1/completions", req, key);
  Answer a;
  a.status = r.status;
  if (r.status != 200) return a;
  a.ids = r.body["kvmart_debug"]["completion_token_ids"];
  a.sha = r.body["kvmart_debug"]["logits_sha256"];
  a.cached = r.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
  return a;
}

TEST(ServerPrefixCache, ASecondPromptOfTheSameAccountAttachesAndIsBitIdentical) {
  server::ServerOptions off;
  off.prefix_cache_bytes = 0;
  TestServer cold(Models(), off);
  TestServer srv(Models());  // the default: on
  TestServer::Account alice = srv.NewAccount("alice", "buy"), bob = srv.NewAccount("bob", "buy");
  TestServer::Account alice_cold = cold.NewAccount("alice", "buy");
  const std::string doc = LongText("harbour");
  for (bool sampled : {false, true}) {
    SCOPED_TRACE(sampled ? "sampled" : "greedy");
    // No trailing space: the second prompt's tokens must start with the first's.
    const std::string first = doc + (sampled ? "Sampled." : "Greedy.");
    Answer a1 = Ask(srv, alice.key, first, sampled);
    ASSERT_EQ(a1.status, 200);
    EXPECT_EQ(a1.cached, 0);
    const std::string second = first + " What does section 3 list?";
    Answer a2 = Ask(srv, alice.key, second, sampled);
    Answer ref = Ask(cold, alice_cold.key, second, sampled);
    ASSERT_EQ(a2.status, 200);
    ASSERT_EQ(ref.status, 200);
    EXPECT_GE(a2.cached, 64);  // the first prompt's tokens were attached
    EXPECT_EQ(ref.cached, 0);
    EXPECT_EQ(a2.ids, ref.ids);
    EXPECT_EQ(a2.sha, ref.sha);  // every logit bit
    // Bob sends the same prompt: Alice's prefix is not his.
    Answer b = Ask(srv, bob.key, second, sampled);
    ASSERT_EQ(b.status, 200);
    EXPECT_EQ(b.cached, 0);
    EXPECT_EQ(b.sha, ref.sha);
  }
  Reply m = srv.Get("/metrics");
  EXPECT_NE(m.text.find("kvmart_prefix_cache_hits_total 2"), std::string::npos);
}

}  // namespace
}  // namespace kvmart::testing
