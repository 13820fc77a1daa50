#include <gtest/gtest.h>

#include <limits>

#include "market/keys.h"
#include "market/money.h"
#include "market/pricing.h"

namespace kvmart::market {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

TEST(Money, ParseAndFormatAreExact) {
  Currency usd;
  auto m = Money::Parse("12.5", usd);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->micros(), 12'500'000);
  EXPECT_EQ(m->ToString(), "12.500000 USD");
  EXPECT_EQ(Money::Parse("-0.000001", usd)->micros(), -1);
  EXPECT_EQ(Money(-1, usd).DecimalString(), "-0.000001");
  EXPECT_EQ(Money(kMin, usd).DecimalString(), "-9223372036854.775808");
  EXPECT_FALSE(Money::Parse("1.0000001", usd).ok());
  EXPECT_FALSE(Money::Parse("1e3", usd).ok());
  EXPECT_FALSE(Money::Parse("", usd).ok());
  EXPECT_FALSE(Money::Parse(".", usd).ok());
  EXPECT_FALSE(Money::Parse("1.2.3", usd).ok());
  EXPECT_EQ(Money::Parse("9223372036854.775808", usd).status().code(), Status::Code::kOutOfRange);
  EXPECT_EQ(Money::Parse("99999999999999999999999", usd).status().code(), Status::Code::kOutOfRange);
  EXPECT_EQ(Money::Parse("9223372036854.775807", usd)->micros(), kMax);
}

TEST(Money, CheckedArithmeticRefusesOverflowAndMixedCurrencies) {
  Currency usd, eur = *Currency::Parse("eur");
  EXPECT_EQ(eur.str(), "EUR");
  EXPECT_FALSE(Currency::Parse("EURO").ok());
  EXPECT_FALSE(Currency::Parse("E1R").ok());
  EXPECT_EQ(CheckedAdd(Money(kMax, usd), Money(1, usd)).status().code(), Status::Code::kOutOfRange);
  EXPECT_EQ(CheckedSub(Money(kMin, usd), Money(1, usd)).status().code(), Status::Code::kOutOfRange);
  EXPECT_EQ(CheckedNeg(Money(kMin, usd)).status().code(), Status::Code::kOutOfRange);
  EXPECT_EQ(CheckedMul(Money(kMax / 2 + 1, usd), 2).status().code(), Status::Code::kOutOfRange);
  EXPECT_EQ(CheckedAdd(Money(1, usd), Money(1, eur)).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(CheckedAdd(Money(2, usd), Money(3, usd))->micros(), 5);
  EXPECT_EQ(MulBasisPointsFloor(Money(kMax, usd), 10'000)->micros(), kMax);
  EXPECT_EQ(MulBasisPointsFloor(Money(999, usd), 1'000)->micros(), 99);  // floor
  EXPECT_FALSE(MulBasisPointsFloor(Money(1, usd), 10'001).ok());
}

TEST(Pricing, DefaultPriceIsAFractionOfPrefillRoundedUp) {
  CostModel m;  // 3,000 micros per 1k tokens, 10%
  EXPECT_EQ(DefaultLoadPrice(m, 1000, Currency())->micros(), 300);
  EXPECT_EQ(DefaultLoadPrice(m, 1, Currency())->micros(), 1);  // 0.3 rounds up
  EXPECT_EQ(DefaultLoadPrice(m, 0, Currency())->micros(), 0);
  EXPECT_EQ(FreshPrefillCost(m, 1000, Currency())->micros(), 3000);
  m.default_price_bps = 2'500;
  m.prefill_micros_per_1k_tokens = 10'000;
  EXPECT_EQ(DefaultLoadPrice(m, 4096, Currency())->micros(), 10'240);
  EXPECT_FALSE(DefaultLoadPrice(m, -1, Currency()).ok());
  m.prefill_micros_per_1k_tokens = kMax;
  EXPECT_EQ(DefaultLoadPrice(m, kMax, Currency()).status().code(), Status::Code::kOutOfRange);
}

TEST(Pricing, FeeSplitRoundsTowardThePublisherAndNeverExceedsPrice) {
  FeeSchedule f;  // 10%
  auto s = SplitCharge(f, Money(999, Currency()));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->provider.micros(), 99);
  EXPECT_EQ(s->publisher.micros(), 900);
  f.fee_per_charge_micros = 50;
  EXPECT_EQ(SplitCharge(f, Money(1000, Currency()))->provider.micros(), 150);
  EXPECT_EQ(SplitCharge(f, Money(10, Currency()))->provider.micros(), 10);  // capped
  EXPECT_EQ(SplitCharge(f, Money(10, Currency()))->publisher.micros(), 0);
  f.fee_per_charge_micros = kMax;
  EXPECT_EQ(SplitCharge(f, Money(kMax, Currency()))->provider.micros(), kMax);
  EXPECT_FALSE(SplitCharge(f, Money(-1, Currency())).ok());
}

TEST(Pricing, StorageIsBilledPerGigabyteHourRoundedUp) {
  FeeSchedule f;  // 100 micros per GB-hour
  EXPECT_EQ(StorageCharge(f, 1'000'000'000, 3600, Currency())->micros(), 100);
  EXPECT_EQ(StorageCharge(f, 2'000'000'000, 1800, Currency())->micros(), 100);
  EXPECT_EQ(StorageCharge(f, 1, 1, Currency())->micros(), 1);
  EXPECT_EQ(StorageCharge(f, 0, 3600, Currency())->micros(), 0);
  f.storage_micros_per_gb_hour = kMax;
  EXPECT_EQ(StorageCharge(f, kMax, kMax, Currency()).status().code(), Status::Code::kOutOfRange);
}

TEST(Keys, ScopesAndHashing) {
  EXPECT_EQ(*ParseScopes("publish,buy"), kScopePublish | kScopeBuy);
  EXPECT_EQ(ScopesToString(kAllScopes), "publish,buy,admin");
  EXPECT_FALSE(ParseScopes("root").ok());
  EXPECT_FALSE(ParseScopes("").ok());
  NewApiKey a = GenerateApiKey(), b = GenerateApiKey();
  EXPECT_NE(a.secret, b.secret);
  EXPECT_EQ(a.secret.size(), 68u);
  EXPECT_TRUE(DigestEquals(*HashApiKey(a.secret), a.hash));
  EXPECT_FALSE(DigestEquals(*HashApiKey(b.secret), a.hash));
  EXPECT_EQ(HashApiKey("kvm_zz").status().code(), Status::Code::kUnauthenticated);
  EXPECT_EQ(HashApiKey(a.secret.substr(0, 67) + "g").status().code(), Status::Code::kUnauthenticated);
}

}  // namespace
}  // namespace kvmart::market
