// One resident copy of a hot prefix: sessions attach its pages by reference
// and continue bit-identically to a prefill of the same tokens; only their own
// tokens take new pages.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "engine/engine.h"
#include "engine/random_tokens.h"
#include "../testing/synthetic_model.h"

namespace kvmart {
namespace {

testing::SyntheticModels& Models() {
  static testing::SyntheticModels models;
  return models;
}

std::unique_ptr<Engine> MakeEngine() {
  EngineOptions o;
  o.kernels = SupportedKernelPaths().back();
  o.threads = 2;
  auto e = Engine::Create(Models().Load("small"), o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return std::move(e).value();
}

std::string Bits(Session& s) {
  auto l = s.logits();
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return l.ok() ? std::string(reinterpret_cast<const char*>(l->data()), l->size() * sizeof(float)) : "";
}

// Logits after the question and after each of `steps` greedy tokens.
std::vector<std::string> Continue(Session& s, const std::vector<int32_t>& question, size_t steps) {
  std::vector<std::string> out;
  EXPECT_TRUE(s.Prefill(question).ok());
  out.push_back(Bits(s));
  for (size_t i = 0; i < steps; ++i) {
    EXPECT_TRUE(s.DecodeStep().ok());
    out.push_back(Bits(s));
  }
  return out;
}

TEST(SharedPrefix, AttachedSessionsMatchAPrefillOfTheSameTokens) {
  auto engine = MakeEngine();
  // 150 tokens: two whole pages shared, 22 rows in the tail.
  const auto doc = RandomTextTokens(150, 1, 151936);
  auto pub = engine->NewSession();
  ASSERT_TRUE(pub->Prefill(doc, 64).ok());
  auto prefix = pub->ShareAsPrefix();
  ASSERT_TRUE(prefix.ok()) << prefix.status().ToString();
  EXPECT_EQ((*prefix)->pages->tokens(), 2 * kKvPageTokens);
  EXPECT_EQ((*prefix)->tail.token_ids.size(), 150 - 2 * kKvPageTokens);
  EXPECT_EQ(pub->ShareAsPrefix().status().code(), Status::Code::kFailedPrecondition);

  for (size_t q = 0; q < 3; ++q) {
    const auto question = RandomTextTokens(5 + 11 * q, 10 + q, 151936);
    std::vector<int32_t> all = doc;
    all.insert(all.end(), question.begin(), question.end());
    auto cold = engine->NewSession();
    ASSERT_TRUE(cold->Prefill(all).ok());
    std::vector<std::string> want = {Bits(*cold)};
    for (size_t i = 0; i < 4; ++i) {
      ASSERT_TRUE(cold->DecodeStep().ok());
      want.push_back(Bits(*cold));
    }
    auto hit = engine->NewSession();
    ASSERT_TRUE(hit->Attach(**prefix).ok());
    EXPECT_EQ(hit->size(), doc.size());
    EXPECT_EQ(hit->stats().tokens_attached, 2 * kKvPageTokens);
    EXPECT_TRUE(Continue(*hit, question, 4) == want) << "question " << q;
    EXPECT_EQ(hit->Attach(**prefix).code(), Status::Code::kFailedPrecondition);
  }
  // The publishing session itself still continues exactly.
  const auto question = RandomTextTokens(9, 99, 151936);
  std::vector<int32_t> all = doc;
  all.insert(all.end(), question.begin(), question.end());
  auto cold = engine->NewSession();
  ASSERT_TRUE(cold->Prefill(all).ok());
  const std::string want = Bits(*cold);
  ASSERT_TRUE(pub->Prefill(question).ok());
  EXPECT_TRUE(Bits(*pub) == want);
}

TEST(SharedPrefix, SixteenConcurrentBuyersHoldOneCopyPlusTheirOwnPages) {
  auto engine = MakeEngine();
  const auto doc = RandomTextTokens(5 * kKvPageTokens + 3, 2, 151936);
  auto pub = engine->NewSession();
  ASSERT_TRUE(pub->Prefill(doc, 128).ok());
  auto prefix = pub->ShareAsPrefix();
  ASSERT_TRUE(prefix.ok());
  pub.reset();  // the prefix alone keeps the shared pages alive
  const size_t base = engine->kv_pages().pages_in_use();
  EXPECT_EQ(base, 5u);

  constexpr size_t kBuyers = 16;
  std::vector<std::unique_ptr<Session>> buyers;
  std::vector<std::vector<int32_t>> questions;
  for (size_t i = 0; i < kBuyers; ++i) {
    buyers.push_back(engine->NewSession());
    ASSERT_TRUE(buyers.back()->Attach(**prefix).ok());
    questions.push_back(RandomTextTokens(18, 200 + i, 151936));
  }
  std::vector<std::vector<std::string>> got(kBuyers);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < kBuyers; ++i) {
    threads.emplace_back([&, i] { got[i] = Continue(*buyers[i], questions[i], 3); });
  }
  for (auto& t : threads) t.join();
  // One shared copy, and one private page per buyer (3 + 18 + 3 positions).
  EXPECT_EQ(engine->kv_pages().pages_in_use(), base + kBuyers);
  for (size_t i = 0; i < kBuyers; ++i) {
    std::vector<int32_t> all = doc;
    all.insert(all.end(), questions[i].begin(), questions[i].end());
    auto cold = engine->NewSession();
    ASSERT_TRUE(cold->Prefill(all).ok());
    std::vector<std::string> want = {Bits(*cold)};
    for (size_t s = 0; s < 3; ++s) {
      ASSERT_TRUE(cold->DecodeStep().ok());
      want.push_back(Bits(*cold));
    }
    EXPECT_TRUE(got[i] == want) << "buyer " << i;
  }
  buyers.clear();
  prefix = Status::Aborted("released");
  EXPECT_EQ(engine->kv_pages().pages_in_use(), 0u);
}

// A bounded pool: beyond its pages a session gets KvPagesExhausted (nothing
// half-written), the reclaimer is asked first, and freed pages serve again.
TEST(SharedPrefix, ABoundedPoolRefusesCleanlyAndAsksTheReclaimerFirst) {
  EngineOptions o;
  o.kernels = SupportedKernelPaths().back();
  o.threads = 2;
  auto model = Models().Load("small");
  const size_t page = KvCache::PageElements(model->config().num_hidden_layers, model->config().num_key_value_heads,
                                            model->config().head_dim) * 2;
  o.kv_limit_bytes = 3 * page;
  auto engine = std::move(Engine::Create(model, o)).value();
  auto a = engine->NewSession();
  ASSERT_TRUE(a->Prefill(RandomTextTokens(2 * kKvPageTokens, 3, 151936)).ok());
  auto b = engine->NewSession();
  int asked = 0;
  engine->SetKvReclaimer([&] {
    ++asked;
    return false;
  });
  Status st = b->Prefill(RandomTextTokens(2 * kKvPageTokens, 4, 151936));
  EXPECT_EQ(st.code(), Status::Code::kResourceExhausted);
  EXPECT_TRUE(st.IsKvPagesExhausted()) << st.ToString();
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(b->size(), 0u);  // nothing was appended
  // A reclaimer that frees the first session's pages lets the second proceed.
  engine->SetKvReclaimer([&] {
    if (!a) return false;
    a.reset();
    return true;
  });
  ASSERT_TRUE(b->Prefill(RandomTextTokens(2 * kKvPageTokens, 4, 151936)).ok());
  EXPECT_EQ(engine->kv_pages().pages_in_use(), 2u);
}

}  // namespace
}  // namespace kvmart
