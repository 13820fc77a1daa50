// Automatic prefix caching of plain prompts, per account: the cache itself on
// real engine prefixes, and over HTTP — a later prompt of the same account
// attaches the earlier prompt's KV and answers bit-identically to a server
// without the cache; another account never does.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

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

// A seeded random workload of inserts, lookups and evictions over three
// accounts and prefixes that share their first min_tokens tokens (one index
// bucket) or not, checked after every operation against a plain list kept in
// recency order: the index finds exactly what a scan of every entry finds.
TEST_F(PrefixCacheTest, IndexedLookupsAgreeWithAScanOfEveryEntry) {
  constexpr size_t kMinTokens = 8, kMaxEntries = 6;
  PrefixCache cache(1 << 30, kMaxEntries, kMinTokens);
  std::vector<std::vector<int32_t>> bases;
  for (int32_t k = 0; k < 3; ++k) {
    auto b = Tokens(48, 1);
    b[10] = 900 + k;  // same head, different past it
    bases.push_back(b);
  }
  bases.push_back(Tokens(48, 300));  // another head
  struct Kept {
    int64_t account;
    std::vector<int32_t> tokens;
  };
  std::vector<Kept> model;  // front: most recently used
  std::mt19937 rng(20261203);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const size_t lengths[] = {8, 12, 20, 31, 40, 48};
  for (int op = 0; op < 160; ++op) {
    const int64_t account = 1 + static_cast<int64_t>(pick(3));
    const auto& base = bases[pick(bases.size())];
    const size_t r = pick(10);
    if (r < 4) {  // insert, as the server does: only what is not kept yet
      const std::vector<int32_t> toks(base.begin(), base.begin() + static_cast<long>(lengths[pick(6)]));
      const bool kept = std::any_of(model.begin(), model.end(),
                                    [&](const Kept& k) { return k.account == account && k.tokens == toks; });
      ASSERT_EQ(cache.Contains(account, toks), kept) << "op " << op;
      if (kept) continue;
      cache.Insert(account, Prefix(toks), 1);
      if (model.size() >= kMaxEntries) model.pop_back();
      model.insert(model.begin(), Kept{account, toks});
    } else if (r < 9) {  // lookup of a prompt of 1..48 tokens of a base
      const std::vector<int32_t> prompt(base.begin(), base.begin() + 1 + static_cast<long>(pick(48)));
      auto best = model.end();
      for (auto it = model.begin(); it != model.end(); ++it) {
        if (it->account != account || it->tokens.size() >= prompt.size()) continue;
        if (!std::equal(it->tokens.begin(), it->tokens.end(), prompt.begin())) continue;
        if (best == model.end() || it->tokens.size() > best->tokens.size()) best = it;
      }
      auto hit = cache.Longest(account, prompt);
      if (best == model.end()) {
        ASSERT_EQ(hit, nullptr) << "op " << op;
      } else {
        ASSERT_NE(hit, nullptr) << "op " << op;
        ASSERT_EQ(hit->tokens, best->tokens) << "op " << op;
        std::rotate(model.begin(), best, best + 1);  // now the most recently used
      }
    } else {  // evict the least recently used
      ASSERT_EQ(cache.EvictOldest(), !model.empty());
      if (!model.empty()) model.pop_back();
    }
    ASSERT_EQ(cache.stats().entries, model.size()) << "op " << op;
  }
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
