// Property tests: seeded random sequences of deposits, purchases, loads, failed
// loads, storage charges, retries and conflicting retries. After every step the
// ledger audit (CheckInvariants) must pass; failed calls and retries must leave
// everything observable unchanged; a retry must return the first result.
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "test_util.h"

namespace kvmart::market::testing {
namespace {

class PropertyTest : public MarketFixture, public ::testing::WithParamInterface<uint64_t> {};

struct Call {
  std::function<StatusOr<std::string>()> run;
  std::function<StatusOr<std::string>()> conflicting;  // same idem key, other body
};

TEST_P(PropertyTest, RandomSequencesKeepEveryInvariant) {
  std::mt19937_64 rng(GetParam());
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };

  std::vector<std::pair<AccountId, std::string>> buyers = {{buyer_, buyer_key_}};
  buyers.emplace_back(MakeAccount("b2", kScopeBuy), last_key_);
  buyers.emplace_back(MakeAccount("b3-credit", kScopeBuy | kScopePublish, 700), last_key_);
  std::vector<std::string> arts = {ArtifactId(1), ArtifactId(2), ArtifactId(3)};
  List(arts[0], 130, 2048);
  List(arts[1], 1, 16);
  List(arts[2], 999, 100'000);
  std::vector<std::pair<int64_t, std::string>> loads;  // load id, buyer key
  std::vector<Call> done;
  int idem = 0;
  int ok_ops = 0, failed_ops = 0, replays = 0;

  for (int step = 0; step < 160; ++step) {
    auto& [acct, key] = buyers[pick(0, buyers.size() - 1)];
    const std::string art = arts[pick(0, arts.size() - 1)];
    const std::string k = "op-" + std::to_string(idem++);
    Call call;
    switch (pick(0, 9)) {
      case 0: {  // deposit, sometimes nonsense
        int64_t amount = pick(0, 5) == 0 ? pick(-1000, 0) : pick(1, 3000);
        AccountId a = acct;
        call.run = [=, this] { return market_->Deposit(admin_, k, a, Usd(amount)); };
        call.conflicting = [=, this] { return market_->Deposit(admin_, k, a, Usd(amount + 1)); };
        break;
      }
      case 1:
      case 2: {
        PurchaseKind kind = static_cast<PurchaseKind>(pick(0, 2));
        int64_t qty = pick(0, 3);
        std::string bk = key;
        call.run = [=, this]() -> StatusOr<std::string> {
          KVMART_ASSIGN_OR_RETURN(Purchase p, market_->Buy(bk, k, {art, kind, qty}));
          return p.receipt;
        };
        call.conflicting = [=, this]() -> StatusOr<std::string> {
          KVMART_ASSIGN_OR_RETURN(Purchase p, market_->Buy(bk, k, {art, kind, qty + 1}));
          return p.receipt;
        };
        break;
      }
      case 3:
      case 4:
      case 5: {
        std::string bk = key;
        call.run = [=, this, &loads]() -> StatusOr<std::string> {
          KVMART_ASSIGN_OR_RETURN(LoadResult l, market_->Load(bk, k, art));
          loads.emplace_back(l.load, bk);
          return l.receipt;
        };
        call.conflicting = [=, this]() -> StatusOr<std::string> {
          KVMART_ASSIGN_OR_RETURN(LoadResult l, market_->Load(bk, k, arts[(std::find(arts.begin(), arts.end(), art) - arts.begin() + 1) % arts.size()]));
          return l.receipt;
        };
        break;
      }
      case 6: {  // a load fails after being charged (or a bogus refund)
        if (loads.empty()) continue;
        auto [load, bk] = loads[pick(0, loads.size() - 1)];
        call.run = [=, this] { return market_->FailLoad(bk, k, load); };
        call.conflicting = [=, this] { return market_->FailLoad(bk, k, load + 1); };
        break;
      }
      case 7: {
        int64_t secs = pick(1, 36'000);
        call.run = [=, this] { return market_->ChargeStorage(admin_, k, art, secs); };
        call.conflicting = [=, this] { return market_->ChargeStorage(admin_, k, art, secs + 1); };
        break;
      }
      case 8: {  // retry a random earlier successful call: same result, no change
        if (done.empty()) continue;
        const Call& c = done[pick(0, done.size() - 1)];
        auto before = Snapshot();
        auto again = c.run();
        ASSERT_OK(again);
        EXPECT_EQ(Snapshot(), before) << "retry changed the ledger at step " << step;
        auto bad = c.conflicting();
        EXPECT_FALSE(bad.ok());
        EXPECT_EQ(bad.status().code(), Status::Code::kFailedPrecondition) << bad.status().ToString();
        EXPECT_EQ(Snapshot(), before) << "conflicting retry changed the ledger at step " << step;
        ++replays;
        continue;
      }
      case 9:
        clock_.now->fetch_add(pick(0, 1200));
        continue;
    }
    auto before = Snapshot();
    auto r = call.run();
    if (r.ok()) {
      ++ok_ops;
      ASSERT_OK(VerifyReceipt(*r, market_->ProviderPublicKey()));
      // Immediate retry returns the very same receipt and moves nothing.
      auto after = Snapshot();
      auto again = call.run();
      ASSERT_OK(again);
      EXPECT_EQ(*again, *r);
      EXPECT_EQ(Snapshot(), after);
      if (!loads.empty() && loads.size() >= 2 && loads.back().first == loads[loads.size() - 2].first) loads.pop_back();
      done.push_back(std::move(call));
    } else {
      ++failed_ops;
      EXPECT_EQ(Snapshot(), before) << "failed call changed the ledger at step " << step << ": " << r.status().ToString();
      EXPECT_NE(r.status().code(), Status::Code::kInternal) << r.status().ToString();
    }
    ASSERT_OK(market_->CheckInvariants());
    for (auto& [a, _] : buyers) {
      auto info = market_->GetAccount(admin_, a);
      ASSERT_OK(info);
      EXPECT_GE(info->balance.micros(), -info->credit_limit.micros());
    }
  }
  // The generator must actually exercise both outcomes.
  EXPECT_GT(ok_ops, 10);
  EXPECT_GT(failed_ops, 5);
  EXPECT_GT(replays, 3);
}

INSTANTIATE_TEST_SUITE_P(Seeds, PropertyTest, ::testing::Values(1u, 2u, 3u, 20240601u));

}  // namespace
}  // namespace kvmart::market::testing
