// The payment layer through the Market interface: two-phase loads, payouts,
// scheduled storage billing, statements and HTTP 402 payment authorisations.
#include <gtest/gtest.h>
#include <sodium.h>

#include "base/sha256.h"
#include "base/sqlite_db.h"
#include "test_util.h"

namespace kvmart::market::testing {
namespace {

class PaymentsTest : public MarketFixture {
 protected:
  void SetUp() override {
    options_.reservation_seconds = 60;
    options_.min_payout_micros = 1000;
    options_.payout_hold_seconds = 3600;
    options_.storage_grace_seconds = 7200;
    Reopen();
  }
  Money Available(AccountId a) {
    auto e = market_->GetEarnings(admin_, a);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? e->available : Money();
  }
};

TEST_F(PaymentsTest, ReserveHoldsThenPostChargesExactlyOnce) {
  const std::string art = ArtifactId(1);
  List(art, 1000);
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(1500)));
  ASSERT_OK(market_->Buy(buyer_key_, "b", {art, PurchaseKind::kMetered, 3}));
  auto h = market_->ReserveLoad(buyer_key_, "r1", art);
  ASSERT_OK(h);
  EXPECT_EQ(h->reserved.micros(), 1000);
  EXPECT_EQ(Balance(buyer_).micros(), 1500);  // held, not charged
  auto e = market_->GetEarnings(admin_, buyer_);
  ASSERT_OK(e);
  EXPECT_EQ(e->pending.micros(), 1000);
  // The hold counts against what the buyer can spend: a second reservation of
  // 1000 does not fit in the remaining 500.
  auto before = Snapshot();
  EXPECT_CODE(market_->ReserveLoad(buyer_key_, "r2", art), kResourceExhausted);
  EXPECT_EQ(Snapshot(), before);
  ASSERT_OK(market_->CheckInvariants());

  auto posted = market_->PostLoad(buyer_key_, "p1", h->load);
  ASSERT_OK(posted);
  EXPECT_EQ(posted->charged.micros(), 1000);
  auto rc = VerifyReceipt(posted->receipt, market_->ProviderPublicKey());
  ASSERT_OK(rc);
  EXPECT_EQ(rc->kind, "load");
  EXPECT_EQ(rc->load, h->load);
  EXPECT_EQ(Balance(buyer_).micros(), 500);
  EXPECT_EQ(Balance(publisher_).micros(), 900);
  // Retry of the same post: same receipt, no money.
  auto again = market_->PostLoad(buyer_key_, "p1", h->load);
  ASSERT_OK(again);
  EXPECT_EQ(again->receipt, posted->receipt);
  EXPECT_EQ(Balance(buyer_).micros(), 500);
  // A second resolution under another key is refused, both ways.
  EXPECT_CODE(market_->PostLoad(buyer_key_, "p1-other", h->load), kFailedPrecondition);
  EXPECT_CODE(market_->VoidLoad(buyer_key_, "v1-other", h->load, "late"), kFailedPrecondition);
  EXPECT_EQ(Balance(buyer_).micros(), 500);
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(PaymentsTest, VoidReleasesTheHoldAndTheLoadWithoutAReceipt) {
  const std::string art = ArtifactId(2);
  List(art, 1000);
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(1000)));
  ASSERT_OK(market_->Buy(buyer_key_, "b", {art, PurchaseKind::kMetered, 1}));
  auto h = market_->ReserveLoad(buyer_key_, "r1", art);
  ASSERT_OK(h);
  auto ents = market_->Entitlements(buyer_key_, buyer_);
  ASSERT_OK(ents);
  EXPECT_EQ((*ents)[0].loads_remaining, 0);
  auto st_before = market_->Statement(buyer_key_, buyer_, 0, INT64_MAX);
  ASSERT_OK(market_->VoidLoad(buyer_key_, "v1", h->load, "store failed"));
  ASSERT_OK(market_->VoidLoad(buyer_key_, "v1", h->load, "store failed"));  // idempotent retry
  EXPECT_EQ(Balance(buyer_).micros(), 1000);
  EXPECT_EQ(market_->GetEarnings(admin_, buyer_)->pending.micros(), 0);
  ents = market_->Entitlements(buyer_key_, buyer_);
  EXPECT_EQ((*ents)[0].loads_remaining, 1);  // the load is given back
  // No ledger line and no receipt for a voided load.
  EXPECT_EQ(market_->Statement(buyer_key_, buyer_, 0, INT64_MAX)->size(), st_before->size());
  EXPECT_CODE(market_->PostLoad(buyer_key_, "p-late", h->load), kFailedPrecondition);
  EXPECT_CODE(market_->FailLoad(buyer_key_, "f-voided", h->load), kFailedPrecondition);
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(PaymentsTest, ACrashedReservationExpiresAndIsVoidedAtTheNextOpen) {
  const std::string art = ArtifactId(3);
  List(art, 1000);
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(1000)));
  ASSERT_OK(market_->Buy(buyer_key_, "b", {art, PurchaseKind::kMetered, 1}));
  auto h = market_->ReserveLoad(buyer_key_, "r1", art);
  ASSERT_OK(h);
  Reopen(false);  // "crash": the process is gone before post or void
  EXPECT_EQ(market_->GetEarnings(admin_, buyer_)->pending.micros(), 1000);  // not expired yet: kept
  clock_.now->fetch_add(61);
  // Posting after expiry is refused even before the sweeper ran.
  EXPECT_CODE(market_->PostLoad(buyer_key_, "p", h->load), kFailedPrecondition);
  Reopen(false);
  EXPECT_EQ(market_->GetEarnings(admin_, buyer_)->pending.micros(), 0);
  EXPECT_EQ(Balance(buyer_).micros(), 1000);
  EXPECT_EQ(market_->Entitlements(buyer_key_, buyer_)->at(0).loads_remaining, 1);
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(PaymentsTest, TheSchemaRefusesASecondResolution) {
  const std::string art = ArtifactId(4);
  List(art, 0);
  ASSERT_OK(market_->Buy(buyer_key_, "b", {art, PurchaseKind::kMetered, 1}));
  auto h = market_->ReserveLoad(buyer_key_, "r", art);
  ASSERT_OK(h);
  ASSERT_OK(market_->PostLoad(buyer_key_, "p", h->load));
  // Bypass the C++ checks: the database itself refuses.
  auto db = db_->Raw();
  ASSERT_OK(db);
  EXPECT_FALSE((*db)->Exec("UPDATE loads SET state='voided' WHERE id=" + std::to_string(h->load)).ok());
  EXPECT_FALSE((*db)->Exec("INSERT INTO load_resolutions(load_id, outcome, resolved_at) VALUES(" +
                           std::to_string(h->load) + ", 'voided', 0)").ok());
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(PaymentsTest, PayoutsRespectHoldMinimumAndAvailability) {
  const std::string art = ArtifactId(5);
  List(art, 10'000);
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(100'000)));
  ASSERT_OK(market_->Buy(buyer_key_, "b", {art, PurchaseKind::kMetered, 5}));
  for (int i = 0; i < 3; ++i) {
    auto h = market_->ReserveLoad(buyer_key_, "r" + std::to_string(i), art);
    ASSERT_OK(h);
    ASSERT_OK(market_->PostLoad(buyer_key_, "p" + std::to_string(i), h->load));
  }
  EXPECT_EQ(Balance(publisher_).micros(), 27'000);
  // All of it is younger than the hold period.
  EXPECT_EQ(Available(publisher_).micros(), 0);
  auto before = Snapshot();
  EXPECT_CODE(market_->Payout(publisher_key_, "po0", {0, Usd(5000), "iban:DE00"}), kResourceExhausted);
  EXPECT_EQ(Snapshot(), before);
  clock_.now->fetch_add(3601);
  EXPECT_EQ(Available(publisher_).micros(), 27'000);
  EXPECT_CODE(market_->Payout(publisher_key_, "po1", {0, Usd(999), "iban:DE00"}), kInvalidArgument);   // below minimum
  EXPECT_CODE(market_->Payout(publisher_key_, "po2", {0, Usd(27'001), "iban:DE00"}), kResourceExhausted);
  EXPECT_CODE(market_->Payout(buyer_key_, "po3", {0, Usd(5000), "x"}), kPermissionDenied);  // buy scope only
  EXPECT_CODE(market_->Payout(publisher_key_, "po4", {buyer_, Usd(5000), "x"}), kPermissionDenied);  // another account
  EXPECT_EQ(Snapshot(), before);
  auto p = market_->Payout(publisher_key_, "po5", {0, Usd(20'000), "iban:DE00"});
  ASSERT_OK(p);
  auto rc = VerifyReceipt(p->receipt, market_->ProviderPublicKey());
  ASSERT_OK(rc);
  EXPECT_EQ(rc->kind, "payout");
  EXPECT_EQ(rc->price_micros, 20'000);
  EXPECT_EQ(Balance(publisher_).micros(), 7'000);
  // Idempotent: the same key replays the receipt; another request under it is refused.
  auto again = market_->Payout(publisher_key_, "po5", {0, Usd(20'000), "iban:DE00"});
  ASSERT_OK(again);
  EXPECT_EQ(again->receipt, p->receipt);
  EXPECT_CODE(market_->Payout(publisher_key_, "po5", {0, Usd(1000), "iban:DE00"}), kFailedPrecondition);
  EXPECT_EQ(Balance(publisher_).micros(), 7'000);
  // An operator (admin) may pay out any account.
  ASSERT_OK(market_->Payout(admin_, "po6", {publisher_, Usd(7'000), "iban:DE00"}));
  EXPECT_EQ(Balance(publisher_).micros(), 0);
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(PaymentsTest, StorageIsBilledOncePerPeriodAndUnpaidListingsAreUnlistedAfterGrace) {
  const std::string art = ArtifactId(6);
  List(art, 100);  // 1 GB stored at 100 micros per GB-hour
  ASSERT_OK(market_->Deposit(admin_, "d-pub", publisher_, Usd(150)));
  ASSERT_OK(market_->Deposit(admin_, "d-buy", buyer_, Usd(1000)));
  auto r1 = market_->BillStorage(0, 3600);
  ASSERT_OK(r1);
  EXPECT_EQ(r1->billed, 1);
  ASSERT_EQ(r1->receipts.size(), 1u);
  ASSERT_OK(VerifyReceipt(r1->receipts[0], market_->ProviderPublicKey()));
  EXPECT_EQ(Balance(publisher_).micros(), 50);
  auto again = market_->BillStorage(0, 3600);  // same period: nothing more
  ASSERT_OK(again);
  EXPECT_EQ(again->billed, 0);
  EXPECT_EQ(again->already_billed, 1);
  EXPECT_EQ(Balance(publisher_).micros(), 50);
  // The buyer holds a live entitlement before the publisher stops paying.
  ASSERT_OK(market_->Buy(buyer_key_, "b", {art, PurchaseKind::kMetered, 2}));
  auto r2 = market_->BillStorage(3600, 3600);  // 100 due, 50 there: arrears
  ASSERT_OK(r2);
  EXPECT_EQ(r2->unpaid, 1);
  EXPECT_EQ(r2->unlisted, 0);
  EXPECT_EQ(Balance(publisher_).micros(), 50);
  clock_.now->fetch_add(7200);
  auto r3 = market_->BillStorage(7200, 3600);
  ASSERT_OK(r3);
  EXPECT_EQ(r3->unlisted, 1);
  EXPECT_CODE(market_->GetQuote(buyer_key_, {art, PurchaseKind::kMetered, 1}), kNotFound);
  EXPECT_CODE(market_->Buy(buyer_key_, "b2", {art, PurchaseKind::kMetered, 1}), kNotFound);
  EXPECT_CODE(market_->PublicListing(art), kNotFound);
  // Unlisted, not deleted: the live entitlement still loads.
  ASSERT_OK(market_->Load(buyer_key_, "l-after-unlist", art));
  // Paying the arrears relists it.
  ASSERT_OK(market_->Deposit(admin_, "d-pub2", publisher_, Usd(1000)));
  auto r4 = market_->BillStorage(7200, 3600);
  ASSERT_OK(r4);
  EXPECT_EQ(r4->relisted, 1);
  ASSERT_OK(market_->GetQuote(buyer_key_, {art, PurchaseKind::kMetered, 1}));
  EXPECT_CODE(market_->BillStorage(0, 0), kInvalidArgument);
  ASSERT_OK(market_->CheckInvariants());
}

// An artifact removed from the store comes off the market: not shown, quoted
// or sold, no new storage bill (the periods it was stored stay billed and are
// still collected), never relisted by billing; a republish lists it again.
TEST_F(PaymentsTest, ARemovedArtifactIsUnlistedAndBilledNoFurtherStorage) {
  const std::string art = ArtifactId(7), other = ArtifactId(8);
  List(art, 100);
  ASSERT_OK(market_->Deposit(admin_, "d-pub", publisher_, Usd(50)));
  ASSERT_OK(market_->Deposit(admin_, "d-buy", buyer_, Usd(1000)));
  ASSERT_OK(market_->Buy(buyer_key_, "b", {art, PurchaseKind::kMetered, 2}));
  auto r1 = market_->BillStorage(0, 3600);  // 100 due, 50 there: arrears
  ASSERT_OK(r1);
  EXPECT_EQ(r1->unpaid, 1);
  // Only an admin removes; an unknown artifact was never listed.
  EXPECT_CODE(market_->RemoveListing(publisher_key_, "rm-pub", art), kPermissionDenied);
  EXPECT_CODE(market_->RemoveListing(admin_, "rm-none", other), kNotFound);
  ASSERT_OK(market_->RemoveListing(admin_, "rm", art));
  ASSERT_OK(market_->RemoveListing(admin_, "rm", art));        // a retry
  ASSERT_OK(market_->RemoveListing(admin_, "rm-again", art));  // and a second removal
  EXPECT_CODE(market_->GetQuote(buyer_key_, {art, PurchaseKind::kMetered, 1}), kNotFound);
  EXPECT_CODE(market_->Buy(buyer_key_, "b2", {art, PurchaseKind::kMetered, 1}), kNotFound);
  EXPECT_CODE(market_->VisibleListing(buyer_key_, art), kNotFound);
  auto listings = market_->VisibleListings(admin_);
  ASSERT_OK(listings);
  EXPECT_TRUE(listings->empty());
  // The next period bills nothing for it; paying the old bill does not relist it.
  ASSERT_OK(market_->Deposit(admin_, "d-pub2", publisher_, Usd(1000)));
  const int64_t before = Balance(publisher_).micros();
  auto r2 = market_->BillStorage(3600, 3600);
  ASSERT_OK(r2);
  EXPECT_EQ(r2->billed, 0);
  EXPECT_EQ(r2->relisted, 0);
  EXPECT_EQ(Balance(publisher_).micros(), before - 100);  // the arrears of period 0, collected
  auto r3 = market_->BillStorage(7200, 3600);
  ASSERT_OK(r3);
  EXPECT_EQ(r3->billed, 0);
  EXPECT_EQ(Balance(publisher_).micros(), before - 100);
  EXPECT_CODE(market_->GetQuote(buyer_key_, {art, PurchaseKind::kMetered, 1}), kNotFound);
  // A republish lists it again, and storage is billed again.
  List(art, 100);
  ASSERT_OK(market_->GetQuote(buyer_key_, {art, PurchaseKind::kMetered, 1}));
  auto r4 = market_->BillStorage(10800, 3600);
  ASSERT_OK(r4);
  EXPECT_EQ(r4->billed, 1);
  EXPECT_EQ(Balance(publisher_).micros(), before - 200);
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(PaymentsTest, StatementHasOpeningClosingReceiptsAndSales) {
  const std::string art = ArtifactId(7);
  List(art, 1000);
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(10'000)));
  clock_.now->fetch_add(100);
  const int64_t from = clock_.now->load();
  ASSERT_OK(market_->Buy(buyer_key_, "b", {art, PurchaseKind::kMetered, 3}));
  for (int i = 0; i < 2; ++i) {
    auto h = market_->ReserveLoad(buyer_key_, "r" + std::to_string(i), art);
    ASSERT_OK(h);
    ASSERT_OK(market_->PostLoad(buyer_key_, "p" + std::to_string(i), h->load));
  }
  auto buyer = market_->GetStatement(buyer_key_, buyer_, from, INT64_MAX);
  ASSERT_OK(buyer);
  EXPECT_EQ(buyer->opening.micros(), 10'000);
  EXPECT_EQ(buyer->closing.micros(), 8'000);
  ASSERT_EQ(buyer->lines.size(), 2u);
  for (const auto& l : buyer->lines) EXPECT_FALSE(l.receipt_id.empty());
  auto pub = market_->GetStatement(publisher_key_, publisher_, 0, INT64_MAX);
  ASSERT_OK(pub);
  ASSERT_EQ(pub->sales.size(), 1u);
  EXPECT_EQ(pub->sales[0].loads, 2);
  EXPECT_EQ(pub->sales[0].gross.micros(), 2000);
  EXPECT_EQ(pub->sales[0].provider_fee.micros(), 200);
  EXPECT_EQ(pub->sales[0].net.micros(), 1800);
  EXPECT_CODE(market_->GetStatement(buyer_key_, publisher_, 0, INT64_MAX), kPermissionDenied);
  EXPECT_CODE(market_->GetStatement(buyer_key_, buyer_, 10, 5), kInvalidArgument);
}

struct PayerKey {
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
  PayerKey() { crypto_sign_keypair(pk, sk); }
  std::string hex() const { return ToHex(pk, sizeof pk); }
  void Sign(PaymentAuthorization* a) const {
    std::string m = PaymentAuthorizationMessage(*a);
    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(m.data()), m.size(), sk);
    a->signature = ToHex(sig, sizeof sig);
  }
};

PaymentAuthorization Authorize(const PaymentQuote& q, const PayerKey& k) {
  PaymentAuthorization a{q.provider_signature, k.hex(), q.artifact_id, q.amount, q.nonce, q.expires_at, ""};
  k.Sign(&a);
  return a;
}

TEST_F(PaymentsTest, PaymentAuthorizationBuysAndReservesOnceAndRejectsEveryForgery) {
  const std::string art = ArtifactId(8);
  List(art, 1000);
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(1500)));
  PayerKey k, stranger;
  ASSERT_OK(market_->RegisterPaymentKey(buyer_key_, "pk", k.hex()));
  EXPECT_CODE(market_->RegisterPaymentKey(buyer_key_, "pk-bad", "zz"), kInvalidArgument);
  auto q = market_->IssuePaymentQuote(art);
  ASSERT_OK(q);
  EXPECT_EQ(q->amount.micros(), 1000);
  auto before = Snapshot();
  // Wrong signature (payer), unregistered key, wrong amount, forged quote.
  PaymentAuthorization bad = Authorize(*q, k);
  bad.signature[0] = bad.signature[0] == '0' ? '1' : '0';
  EXPECT_CODE(market_->PayAndReserve(bad), kUnauthenticated);
  EXPECT_CODE(market_->PayAndReserve(Authorize(*q, stranger)), kUnauthenticated);
  PaymentQuote cheap = *q;
  cheap.amount = Usd(1);
  EXPECT_CODE(market_->PayAndReserve(Authorize(cheap, k)), kInvalidArgument);
  EXPECT_EQ(Snapshot(), before);
  // Good: bought and reserved; posting charges it.
  auto paid = market_->PayAndReserve(Authorize(*q, k));
  ASSERT_OK(paid);
  EXPECT_EQ(paid->account, buyer_);
  EXPECT_EQ(paid->hold.reserved.micros(), 1000);
  // Replayed nonce.
  EXPECT_CODE(market_->PayAndReserve(Authorize(*q, k)), kFailedPrecondition);
  auto posted = market_->PostPaidLoad(buyer_, paid->hold.load);
  ASSERT_OK(posted);
  EXPECT_EQ(Balance(buyer_).micros(), 500);
  // Insufficient funds for the next quote: nothing charged, nonce not burnt.
  auto q2 = market_->IssuePaymentQuote(art);
  ASSERT_OK(q2);
  before = Snapshot();
  EXPECT_CODE(market_->PayAndReserve(Authorize(*q2, k)), kResourceExhausted);
  EXPECT_EQ(Snapshot(), before);
  // Expired quote.
  ASSERT_OK(market_->Deposit(admin_, "d2", buyer_, Usd(5000)));
  clock_.now->fetch_add(options_.payment_quote_seconds + 1);
  before = Snapshot();
  EXPECT_CODE(market_->PayAndReserve(Authorize(*q2, k)), kFailedPrecondition);
  EXPECT_EQ(Snapshot(), before);
  ASSERT_OK(market_->CheckInvariants());
}

}  // namespace
}  // namespace kvmart::market::testing
