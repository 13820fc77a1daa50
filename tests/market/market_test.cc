// Behaviour of the market through its public interface (SQLite back end).
#include <gtest/gtest.h>

#include <map>

#include "market/keys.h"
#include "test_util.h"

namespace kvmart::market::testing {
namespace {

class MarketTest : public MarketFixture {};

TEST_F(MarketTest, MeteredPurchaseAndLoadsMoveMoneyAndReceiptsVerify) {
  const std::string art = ArtifactId(1);
  List(art, 1000, 4096);
  ASSERT_OK(market_->Deposit(admin_, "d1", buyer_, Usd(2500)));
  auto q = market_->GetQuote(buyer_key_, {art, PurchaseKind::kMetered, 5});
  ASSERT_OK(q);
  EXPECT_EQ(q->per_load.micros(), 1000);
  EXPECT_EQ(q->provider_fee.micros(), 100);
  EXPECT_EQ(q->tokens, 4096);
  auto p = market_->Buy(buyer_key_, "b1", {art, PurchaseKind::kMetered, 5});
  ASSERT_OK(p);
  ASSERT_OK(VerifyReceipt(p->receipt, market_->ProviderPublicKey()));
  EXPECT_EQ(Balance(buyer_).micros(), 2500);  // metered: nothing charged yet

  auto l1 = market_->Load(buyer_key_, "l1", art);
  ASSERT_OK(l1);
  EXPECT_EQ(l1->charged.micros(), 1000);
  EXPECT_EQ(l1->tokens_reused, 4096);
  auto r = VerifyReceipt(l1->receipt, market_->ProviderPublicKey());
  ASSERT_OK(r);
  EXPECT_EQ(r->kind, "load");
  EXPECT_EQ(r->account, buyer_);
  EXPECT_EQ(r->artifact_id, art);
  EXPECT_EQ(r->tokens_reused, 4096);
  EXPECT_EQ(r->price_micros, 1000);
  EXPECT_NE(r->ledger_txn, 0);
  EXPECT_EQ(Balance(buyer_).micros(), 1500);
  EXPECT_EQ(Balance(publisher_).micros(), 900);
  EXPECT_EQ(Balance(provider_).micros(), 100);

  ASSERT_OK(market_->Load(buyer_key_, "l2", art));
  // Third load: 500 left, price 1000 → insufficient funds, nothing changes.
  auto before = Snapshot();
  {
    auto refused = market_->Load(buyer_key_, "l3", art);
    EXPECT_CODE(refused, kResourceExhausted);
    // The server answers 402 on this subcode, not on the message text.
    EXPECT_TRUE(refused.status().IsInsufficientFunds()) << refused.status().ToString();
  }
  EXPECT_EQ(Snapshot(), before);
  ASSERT_OK(market_->CheckInvariants());

  auto earn = market_->PublisherEarnings(publisher_key_, publisher_);
  ASSERT_OK(earn);
  ASSERT_EQ(earn->size(), 1u);
  EXPECT_EQ((*earn)[0].earned.micros(), 1800);
  EXPECT_EQ((*earn)[0].loads, 2);
  auto rev = market_->ProviderRevenueFor(admin_, Currency());
  ASSERT_OK(rev);
  EXPECT_EQ(rev->fees.micros(), 200);
  auto st = market_->Statement(buyer_key_, buyer_, 0, INT64_MAX);
  ASSERT_OK(st);
  ASSERT_EQ(st->size(), 3u);  // deposit, load, load
  EXPECT_EQ((*st)[0].kind, "deposit");
  EXPECT_EQ((*st)[2].amount.micros(), -1000);
  EXPECT_TRUE(market_->Statement(buyer_key_, buyer_, 0, 1)->empty());
}

TEST_F(MarketTest, BundleAndUnlimitedArePrepaidAndExpire) {
  const std::string art = ArtifactId(2);
  List(art, 100);
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(100'000)));
  auto b = market_->Buy(buyer_key_, "bundle", {art, PurchaseKind::kBundle, 1});
  ASSERT_OK(b);
  EXPECT_EQ(b->quote.upfront.micros(), 800);
  EXPECT_EQ(b->quote.loads, 10);
  EXPECT_EQ(Balance(buyer_).micros(), 100'000 - 800);
  for (int i = 0; i < 10; ++i) {
    auto l = market_->Load(buyer_key_, "bl" + std::to_string(i), art);
    ASSERT_OK(l);
    EXPECT_EQ(l->charged.micros(), 0);
    EXPECT_EQ(l->entitlement, b->entitlement);
  }
  EXPECT_CODE(market_->Load(buyer_key_, "bl-exhausted", art), kPermissionDenied);
  auto u = market_->Buy(buyer_key_, "unl", {art, PurchaseKind::kUnlimited, 1});
  ASSERT_OK(u);
  EXPECT_EQ(u->quote.expires_at, clock_.now->load() + 3600);
  for (int i = 0; i < 20; ++i) ASSERT_OK(market_->Load(buyer_key_, "ul" + std::to_string(i), art));
  clock_.now->fetch_add(3600);
  auto before = Snapshot();
  EXPECT_CODE(market_->Load(buyer_key_, "ul-expired", art), kPermissionDenied);
  EXPECT_EQ(Snapshot(), before);
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(MarketTest, DefaultPriceComesFromTheCostModel) {
  PriceSpec p;
  p.artifact_id = ArtifactId(3);
  p.tokens = 10'000;
  auto l = market_->SetPrice(publisher_key_, "p", p);
  ASSERT_OK(l);
  EXPECT_TRUE(l->per_load_is_default);
  EXPECT_EQ(l->per_load.micros(), 3000);  // 10% of 10k tokens at 3,000 micros/1k
  auto q = market_->GetQuote(buyer_key_, {p.artifact_id, PurchaseKind::kMetered, 1});
  ASSERT_OK(q);
  EXPECT_EQ(q->fresh_prefill_cost.micros(), 30'000);
  EXPECT_CODE(market_->GetQuote(buyer_key_, {p.artifact_id, PurchaseKind::kBundle, 1}), kFailedPrecondition);
}

TEST_F(MarketTest, EgressIsChargedOnceRoundedUpToTheProvider) {
  const std::string art = ArtifactId(9);
  List(art, 500);
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(1000)));
  // 1.5 GB at 90,000 micros/GB is 135,001 micros (rounded up), more than the
  // 1000-micro balance: refused, nothing moves.
  EXPECT_CODE(market_->ChargeEgress(buyer_key_, "e0", art, 1'500'000'001, 90'000), kResourceExhausted);
  EXPECT_EQ(Balance(buyer_).micros(), 1000);
  // 5,000,001 bytes at 90,000 micros/GB = 450.00009 -> 451 micros, all to the provider.
  auto r = market_->ChargeEgress(buyer_key_, "e1", art, 5'000'001, 90'000);
  ASSERT_OK(r);
  EXPECT_EQ(Balance(buyer_).micros(), 1000 - 451);
  EXPECT_EQ(Balance(provider_).micros(), 451);
  EXPECT_EQ(Balance(publisher_).micros(), 0);
  auto rr = VerifyReceipt(*r, market_->ProviderPublicKey());
  ASSERT_OK(rr);
  EXPECT_EQ(rr->kind, "egress");
  EXPECT_EQ(rr->price_micros, 451);
  // A retry replays the receipt and moves no money; the key with another body is refused.
  auto replay = market_->ChargeEgress(buyer_key_, "e1", art, 5'000'001, 90'000);
  ASSERT_OK(replay);
  EXPECT_EQ(*replay, *r);
  EXPECT_EQ(Balance(buyer_).micros(), 1000 - 451);
  EXPECT_FALSE(market_->ChargeEgress(buyer_key_, "e1", art, 7, 90'000).ok());
  EXPECT_CODE(market_->ChargeEgress(buyer_key_, "e2", art, -1, 90'000), kInvalidArgument);
  EXPECT_CODE(market_->ChargeEgress(buyer_key_, "e3", ArtifactId(10), 10, 90'000), kNotFound);
  EXPECT_CODE(market_->ChargeEgress(publisher_key_, "e4", art, 10, 90'000), kPermissionDenied);  // no buy scope
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(MarketTest, FailedLoadIsRefundedOnceAndRestoresTheEntitlement) {
  const std::string art = ArtifactId(4);
  List(art, 500);
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(1000)));
  ASSERT_OK(market_->Buy(buyer_key_, "b", {art, PurchaseKind::kMetered, 1}));
  auto l = market_->Load(buyer_key_, "l", art);
  ASSERT_OK(l);
  EXPECT_EQ(Balance(buyer_).micros(), 500);
  EXPECT_CODE(market_->Load(buyer_key_, "l-again", art), kPermissionDenied);  // 1 load bought
  auto r = market_->FailLoad(buyer_key_, "f", l->load);
  ASSERT_OK(r);
  auto rr = VerifyReceipt(*r, market_->ProviderPublicKey());
  ASSERT_OK(rr);
  EXPECT_EQ(rr->kind, "refund");
  EXPECT_EQ(Balance(buyer_).micros(), 1000);
  EXPECT_EQ(Balance(publisher_).micros(), 0);
  EXPECT_EQ(Balance(provider_).micros(), 0);
  // Retry with same key replays; a second refund under a new key is refused.
  auto replay = market_->FailLoad(buyer_key_, "f", l->load);
  ASSERT_OK(replay);
  EXPECT_EQ(*replay, *r);
  EXPECT_CODE(market_->FailLoad(buyer_key_, "f2", l->load), kFailedPrecondition);
  // The entitlement is usable again.
  ASSERT_OK(market_->Load(buyer_key_, "l2", art));
  // Another account cannot refund my load.
  AccountId other = MakeAccount("other", kScopeBuy);
  (void)other;
  EXPECT_CODE(market_->FailLoad(last_key_, "x", l->load), kNotFound);
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(MarketTest, IdempotentRetryMovesNoMoneyAndConflictingReuseIsRejected) {
  const std::string art = ArtifactId(5);
  List(art, 100);
  auto d1 = market_->Deposit(admin_, "dep", buyer_, Usd(1000));
  ASSERT_OK(d1);
  auto d2 = market_->Deposit(admin_, "dep", buyer_, Usd(1000));
  ASSERT_OK(d2);
  EXPECT_EQ(*d1, *d2);
  EXPECT_EQ(Balance(buyer_).micros(), 1000);
  auto before = Snapshot();
  auto bad = market_->Deposit(admin_, "dep", buyer_, Usd(2000));
  EXPECT_CODE(bad, kFailedPrecondition);
  EXPECT_NE(bad.status().message().find("already used for a different request"), std::string::npos);
  EXPECT_EQ(Snapshot(), before);

  ASSERT_OK(market_->Buy(buyer_key_, "buy", {art, PurchaseKind::kMetered, 10}));
  auto l1 = market_->Load(buyer_key_, "load-1", art);
  ASSERT_OK(l1);
  before = Snapshot();
  auto l1b = market_->Load(buyer_key_, "load-1", art);
  ASSERT_OK(l1b);
  EXPECT_EQ(l1b->load, l1->load);
  EXPECT_EQ(l1b->receipt, l1->receipt);
  EXPECT_EQ(Snapshot(), before);
  // Same key, different operation.
  EXPECT_CODE(market_->Buy(buyer_key_, "load-1", {art, PurchaseKind::kMetered, 1}), kFailedPrecondition);
  EXPECT_EQ(Snapshot(), before);
  // Key creation replays without the secret (only the hash was stored).
  auto k1 = market_->CreateKey(admin_, "k", buyer_, kScopeBuy);
  auto k2 = market_->CreateKey(admin_, "k", buyer_, kScopeBuy);
  ASSERT_OK(k1);
  ASSERT_OK(k2);
  EXPECT_FALSE(k1->secret.empty());
  EXPECT_TRUE(k2->secret.empty());
  EXPECT_EQ(k1->key_id, k2->key_id);
  EXPECT_CODE(market_->Deposit(admin_, "", buyer_, Usd(1)), kInvalidArgument);
}

TEST_F(MarketTest, BadInputLeavesTheLedgerUnchanged) {
  const std::string art = ArtifactId(6);
  List(art, 100);
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(1000)));
  ASSERT_OK(market_->Buy(buyer_key_, "b", {art, PurchaseKind::kMetered, 1}));
  MakeAccount("rival", kScopePublish);
  const std::string rival = last_key_;
  const int64_t rival_key_id = last_key_id_;
  auto before = Snapshot();
  // Unknown artifact: same error as no entitlement (learns nothing).
  auto unknown = market_->Load(buyer_key_, "u", ArtifactId(999));
  auto unbought = market_->Load(publisher_key_, "u", art);
  EXPECT_CODE(unknown, kPermissionDenied);
  EXPECT_CODE(market_->Buy(buyer_key_, "u2", {ArtifactId(999), PurchaseKind::kMetered, 1}), kNotFound);
  // Wrong scope: the publisher's key cannot buy or load; buyer cannot publish or deposit.
  EXPECT_CODE(unbought, kPermissionDenied);
  EXPECT_CODE(market_->Buy(publisher_key_, "s1", {art, PurchaseKind::kMetered, 1}), kPermissionDenied);
  EXPECT_CODE(market_->Deposit(buyer_key_, "s2", buyer_, Usd(1)), kPermissionDenied);
  PriceSpec p;
  p.artifact_id = ArtifactId(7);
  EXPECT_CODE(market_->SetPrice(buyer_key_, "s3", p), kPermissionDenied);
  // Another publisher cannot reprice my artifact.
  p.artifact_id = art;
  EXPECT_CODE(market_->SetPrice(rival, "s4", p), kPermissionDenied);
  // Negative or overflowing amounts.
  EXPECT_CODE(market_->Deposit(admin_, "n1", buyer_, Usd(-5)), kInvalidArgument);
  EXPECT_CODE(market_->Deposit(admin_, "n2", buyer_, Usd(0)), kInvalidArgument);
  EXPECT_CODE(market_->Deposit(admin_, "n3", buyer_, Usd(INT64_MAX)), kOutOfRange);
  p.artifact_id = ArtifactId(8);
  p.per_load_micros = -1;
  EXPECT_CODE(market_->SetPrice(publisher_key_, "n4", p), kInvalidArgument);
  p.artifact_id = "kv1-nothex";
  p.per_load_micros = 1;
  EXPECT_CODE(market_->SetPrice(publisher_key_, "n5", p), kInvalidArgument);
  EXPECT_CODE(market_->Buy(buyer_key_, "n6", {art, PurchaseKind::kMetered, 0}), kInvalidArgument);
  EXPECT_CODE(market_->Buy(buyer_key_, "n7", {art, PurchaseKind::kBundle, INT64_MAX}), kOutOfRange);
  EXPECT_CODE(market_->Deposit(admin_, "n8", buyer_, Money(5, *Currency::Parse("EUR"))), kInvalidArgument);
  EXPECT_CODE(market_->Deposit(admin_, "n9", 12345, Usd(5)), kNotFound);
  EXPECT_CODE(market_->Deposit(admin_, "n10", provider_, Usd(5)), kInvalidArgument);
  // Bad and revoked keys.
  EXPECT_CODE(market_->Load("kvm_nonsense", "k1", art), kUnauthenticated);
  EXPECT_CODE(market_->Load(GenerateApiKey().secret, "k2", art), kUnauthenticated);
  EXPECT_EQ(Snapshot(), before);
  ASSERT_OK(market_->RevokeKey(admin_, "rv", rival_key_id));
  before = Snapshot();
  EXPECT_CODE(market_->Authenticate(rival), kUnauthenticated);
  p.artifact_id = ArtifactId(8);
  EXPECT_CODE(market_->SetPrice(rival, "r1", p), kUnauthenticated);
  EXPECT_CODE(market_->RevokeKey(admin_, "rv2", rival_key_id), kNotFound);
  EXPECT_EQ(Snapshot(), before);
  // Reading someone else's account.
  EXPECT_CODE(market_->GetAccount(buyer_key_, publisher_), kPermissionDenied);
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(MarketTest, StorageIsBilledToThePublisherAndCannotOverdraw) {
  const std::string art = ArtifactId(9);
  List(art, 100);  // 1 GB stored
  auto before = Snapshot();
  EXPECT_CODE(market_->ChargeStorage(admin_, "s0", art, 3600), kResourceExhausted);
  EXPECT_EQ(Snapshot(), before);
  ASSERT_OK(market_->Deposit(admin_, "d", publisher_, Usd(1000)));
  auto r = market_->ChargeStorage(admin_, "s1", art, 7200);
  ASSERT_OK(r);
  EXPECT_EQ(VerifyReceipt(*r, market_->ProviderPublicKey())->price_micros, 200);
  EXPECT_EQ(Balance(publisher_).micros(), 800);
  EXPECT_EQ(market_->ProviderRevenueFor(admin_, Currency())->storage.micros(), 200);
  EXPECT_CODE(market_->ChargeStorage(publisher_key_, "s2", art, 1), kPermissionDenied);
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(MarketTest, CreditLimitAllowsABoundedNegativeBalance) {
  const std::string art = ArtifactId(10);
  List(art, 300);
  MakeAccount("credit", kScopeBuy, /*credit=*/500);
  std::string key = last_key_;
  ASSERT_OK(market_->Buy(key, "b", {art, PurchaseKind::kMetered, 5}));
  ASSERT_OK(market_->Load(key, "l1", art));
  EXPECT_CODE(market_->Load(key, "l2", art), kResourceExhausted);  // -600 < -500
  ASSERT_OK(market_->CheckInvariants());
}

// The admin key exists only in Initialize's result: if keeping it fails, the
// market must stay uninitialised so that a second Initialize can hand out
// (and keep) a new one, instead of a market nobody can administer.
TEST(MarketInitialize, AFailedKeepLeavesTheMarketUninitialised) {
  TempDir dir;
  auto db = TestDatabase::Create(dir, TestBackend());
  ASSERT_OK(db);
  MarketOptions opt;
  opt.provider_key = ProviderKey::Generate();
  opt.synchronous_full = false;
  auto m = SqlMarket::Open((*db)->location(), opt);
  ASSERT_OK(m);
  std::string seen;
  auto failed = (*m)->Initialize(Currency(), [&](const Bootstrap& b) {
    seen = b.admin_key;
    return Status::IOError("disk gone");
  });
  EXPECT_CODE(failed, kIOError);
  EXPECT_FALSE(seen.empty());
  // The key handed to the failed keep was never committed.
  EXPECT_CODE((*m)->GetAccount(seen, 1), kUnauthenticated);

  std::string kept;
  auto ok = (*m)->Initialize(Currency(), [&](const Bootstrap& b) {
    kept = b.admin_key;
    return Status::Ok();
  });
  ASSERT_OK(ok);
  EXPECT_EQ(kept, ok->admin_key);
  ASSERT_OK((*m)->GetAccount(kept, ok->provider_account));
  EXPECT_CODE((*m)->Initialize(Currency()), kAlreadyExists);
}

TEST_F(MarketTest, StatePersistsAcrossReopenAndInitializeRunsOnce) {
  const std::string art = ArtifactId(11);
  List(art, 100);
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(1000)));
  EXPECT_CODE(market_->Initialize(Currency()), kAlreadyExists);
  Reopen(/*fresh=*/false);
  EXPECT_EQ(Balance(buyer_).micros(), 1000);
  // Same idempotency key after reopen: still a replay.
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(1000)));
  EXPECT_EQ(Balance(buyer_).micros(), 1000);
  // A different provider key is refused for this file.
  MarketOptions opt;
  EXPECT_CODE(SqlMarket::Open(Location(), opt), kFailedPrecondition);
}

// EntitledArtifacts reports exactly the entitlements a load could be
// reserved on now, and a reservation says what it left of its entitlement.
TEST_F(MarketTest, EntitledArtifactsAreThoseWithALiveEntitlement) {
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(1'000'000)));
  const int64_t t0 = clock_.now->load();
  const std::string metered = ArtifactId(1), bundle = ArtifactId(2), unlimited = ArtifactId(3), unbought = ArtifactId(4),
                    last = ArtifactId(5), mixed = ArtifactId(6), unknown = ArtifactId(99);
  for (const auto& a : {metered, bundle, unlimited, unbought, last, mixed}) List(a, 100);
  ASSERT_OK(market_->Buy(buyer_key_, "m", {metered, PurchaseKind::kMetered, 2}));
  ASSERT_OK(market_->Buy(buyer_key_, "b", {bundle, PurchaseKind::kBundle, 1}));
  ASSERT_OK(market_->Buy(buyer_key_, "u", {unlimited, PurchaseKind::kUnlimited, 1}));
  ASSERT_OK(market_->Buy(buyer_key_, "l", {last, PurchaseKind::kMetered, 1}));
  ASSERT_OK(market_->Buy(buyer_key_, "x1", {mixed, PurchaseKind::kUnlimited, 1}));
  // More ids than one statement takes (16), all entitled.
  std::vector<std::string> ids = {metered, bundle, unlimited, unbought, last, mixed, unknown};
  for (int i = 10; i < 30; ++i) {
    ids.push_back(ArtifactId(i));
    List(ids.back(), 100);
    ASSERT_OK(market_->Buy(buyer_key_, "many" + std::to_string(i), {ids.back(), PurchaseKind::kMetered, 1}));
  }
  auto entitled = [&]() {
    std::map<std::string, int64_t> out;
    auto r = market_->EntitledArtifacts(ids);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    for (const auto& e : r.ok() ? *r : std::vector<EntitledArtifact>{}) {
      EXPECT_TRUE(out.emplace(e.artifact_id, e.until).second) << "reported twice: " << e.artifact_id;
    }
    return out;
  };
  auto want = [&](std::map<std::string, int64_t> m) {
    for (int i = 10; i < 30; ++i) m[ArtifactId(i)] = 0;
    return m;
  };
  EXPECT_EQ(entitled(), want({{metered, 0}, {bundle, 0}, {unlimited, t0 + 3600}, {last, 0}, {mixed, t0 + 3600}}));
  EXPECT_TRUE(market_->EntitledArtifacts({})->empty());

  // A second unlimited entitlement that expires later extends `until`; a
  // metered one (never expires) makes it 0.
  clock_.now->fetch_add(100);
  ASSERT_OK(market_->Buy(buyer_key_, "u2", {unlimited, PurchaseKind::kUnlimited, 1}));
  ASSERT_OK(market_->Buy(buyer_key_, "x2", {mixed, PurchaseKind::kMetered, 1}));
  EXPECT_EQ(entitled()[unlimited], t0 + 3700);
  EXPECT_EQ(entitled()[mixed], 0);

  // Reservations: what is left of the drawn entitlement.
  auto h1 = market_->ReserveLoad(buyer_key_, "r1", metered);
  ASSERT_OK(h1);
  EXPECT_EQ(h1->entitlement_loads_left, std::optional<int64_t>(1));
  EXPECT_EQ(h1->entitlement_expires_at, 0);
  auto hu = market_->ReserveLoad(buyer_key_, "ru", unlimited);
  ASSERT_OK(hu);
  EXPECT_EQ(hu->entitlement_loads_left, std::nullopt);
  EXPECT_EQ(hu->entitlement_expires_at, t0 + 3600);  // the older one is drawn first
  auto hl = market_->ReserveLoad(buyer_key_, "rl", last);
  ASSERT_OK(hl);
  EXPECT_EQ(hl->entitlement_loads_left, std::optional<int64_t>(0));
  // A replay repeats what the first call said.
  auto hl_again = market_->ReserveLoad(buyer_key_, "rl", last);
  ASSERT_OK(hl_again);
  EXPECT_EQ(hl_again->load, hl->load);
  EXPECT_EQ(hl_again->entitlement_loads_left, std::optional<int64_t>(0));
  // The pending reservation holds the last load: not live while it does.
  EXPECT_FALSE(entitled().contains(last));
  EXPECT_TRUE(entitled().contains(metered));  // one of two left
  ASSERT_OK(market_->VoidLoad(buyer_key_, "vl", hl->load, "test"));
  EXPECT_TRUE(entitled().contains(last));  // the void gave it back
  auto hl2 = market_->ReserveLoad(buyer_key_, "rl2", last);
  ASSERT_OK(hl2);
  ASSERT_OK(market_->PostLoad(buyer_key_, "pl2", hl2->load));
  EXPECT_FALSE(entitled().contains(last));  // used up

  // Read-only: asking changes nothing.
  const auto before = Snapshot();
  ASSERT_OK(market_->EntitledArtifacts(ids));
  EXPECT_EQ(Snapshot(), before);

  // Expiry: the first unlimited entitlement lapses, the second 100 s later.
  clock_.now->store(t0 + 3600);
  EXPECT_EQ(entitled()[unlimited], t0 + 3700);
  EXPECT_EQ(entitled()[mixed], 0);  // its metered entitlement never expires
  clock_.now->store(t0 + 3700);
  EXPECT_FALSE(entitled().contains(unlimited));
  EXPECT_FALSE(entitled().contains(unbought));
  EXPECT_FALSE(entitled().contains(unknown));
  ASSERT_OK(market_->CheckInvariants());
}

}  // namespace
}  // namespace kvmart::market::testing
