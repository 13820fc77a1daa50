// Private listings through the market's public interface, on both back ends:
// to a caller who may not see one, every call answers exactly as for an id
// nobody listed.
#include <gtest/gtest.h>

#include <algorithm>

#include "market/keys.h"
#include "test_util.h"

namespace kvmart::market::testing {
namespace {

class VisibilityTest : public MarketFixture {
 protected:
  void ListPrivate(const std::string& artifact, int64_t per_load) {
    PriceSpec p;
    p.artifact_id = artifact;
    p.tokens = 1000;
    p.per_load_micros = per_load;
    p.visibility = Visibility::kPrivate;
    auto l = market_->SetPrice(publisher_key_, "list-private-" + artifact, p);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    EXPECT_EQ(l->visibility, Visibility::kPrivate);
  }
  static bool Has(const std::vector<Listing>& ls, const std::string& id) {
    return std::any_of(ls.begin(), ls.end(), [&](const Listing& l) { return l.spec.artifact_id == id; });
  }
};

// Every answer an outsider gets about a private id, as (code, message) — the
// same list for an id nobody published.
std::vector<std::pair<Status::Code, std::string>> OutsiderView(Market& m, const std::string& key, const std::string& id,
                                                               int n) {
  std::vector<std::pair<Status::Code, std::string>> out;
  auto add = [&](const Status& s) { out.emplace_back(s.code(), s.message()); };
  add(m.VisibleListing(key, id).status());
  add(m.GetQuote(key, {id, PurchaseKind::kMetered, 1}).status());
  add(m.Buy(key, "outsider-buy-" + std::to_string(n), {id, PurchaseKind::kMetered, 1}).status());
  add(m.ReserveLoad(key, "outsider-reserve-" + std::to_string(n), id).status());
  add(m.Load(key, "outsider-load-" + std::to_string(n), id).status());
  add(m.PublicListing(id).status());
  add(m.IssuePaymentQuote(id).status());
  return out;
}

std::vector<std::pair<Status::Code, std::string>> WithId(std::vector<std::pair<Status::Code, std::string>> v,
                                                        const std::string& from, const std::string& to) {
  for (auto& [code, msg] : v) {
    for (size_t p = msg.find(from); p != std::string::npos; p = msg.find(from, p + to.size())) msg.replace(p, from.size(), to);
  }
  return v;
}

TEST_F(VisibilityTest, APrivateListingReadsAsNeverListedToEveryoneElse) {
  const std::string secret = ArtifactId(1), nothing = ArtifactId(2), open = ArtifactId(3);
  ListPrivate(secret, 500);
  List(open, 700);
  ASSERT_OK(market_->Deposit(admin_, "d1", buyer_, Usd(100'000)));
  const auto before = Snapshot();
  const auto seen = OutsiderView(*market_, buyer_key_, secret, 1);
  const auto never = OutsiderView(*market_, buyer_key_, nothing, 2);
  EXPECT_EQ(WithId(seen, secret, nothing), never);
  EXPECT_EQ(seen[0].first, Status::Code::kNotFound);
  EXPECT_EQ(Snapshot(), before);  // nothing bought, held or charged

  auto visible = market_->VisibleListings(buyer_key_);
  ASSERT_OK(visible);
  EXPECT_FALSE(Has(*visible, secret));
  EXPECT_TRUE(Has(*visible, open));
  // Its publisher and an admin see it.
  auto own = market_->VisibleListings(publisher_key_);
  ASSERT_OK(own);
  EXPECT_TRUE(Has(*own, secret));
  auto all = market_->VisibleListings(admin_);
  ASSERT_OK(all);
  EXPECT_TRUE(Has(*all, secret));
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(VisibilityTest, AGranteeSeesQuotesAndBuysARevokedOneStillLoadsWhatItBought) {
  const std::string secret = ArtifactId(1);
  ListPrivate(secret, 500);
  ASSERT_OK(market_->Deposit(admin_, "d1", buyer_, Usd(100'000)));
  MakeAccount("other", kScopeBuy);
  const std::string other_key = last_key_;

  ASSERT_OK(market_->GrantAccess(publisher_key_, "g1", secret, buyer_));
  ASSERT_OK(market_->GrantAccess(publisher_key_, "g1", secret, buyer_));      // replay
  ASSERT_OK(market_->GrantAccess(publisher_key_, "g1-again", secret, buyer_));  // granting twice is one grant
  auto grantees = market_->Grantees(publisher_key_, secret);
  ASSERT_OK(grantees);
  EXPECT_EQ(*grantees, std::vector<AccountId>{buyer_});

  auto q = market_->GetQuote(buyer_key_, {secret, PurchaseKind::kMetered, 2});
  ASSERT_OK(q);
  EXPECT_EQ(q->per_load.micros(), 500);
  ASSERT_OK(market_->Buy(buyer_key_, "b1", {secret, PurchaseKind::kMetered, 2}));
  auto visible = market_->VisibleListings(buyer_key_);
  ASSERT_OK(visible);
  EXPECT_TRUE(Has(*visible, secret));
  // A grant to one account shows nothing to another.
  EXPECT_CODE(market_->GetQuote(other_key, {secret, PurchaseKind::kMetered, 1}), kNotFound);
  // Keyless 402 quotes never sell a private listing.
  EXPECT_CODE(market_->IssuePaymentQuote(secret), kNotFound);

  ASSERT_OK(market_->RevokeAccess(publisher_key_, "r1", secret, buyer_));
  EXPECT_CODE(market_->GetQuote(buyer_key_, {secret, PurchaseKind::kMetered, 1}), kNotFound);
  EXPECT_CODE(market_->Buy(buyer_key_, "b2", {secret, PurchaseKind::kMetered, 1}), kNotFound);
  // What was bought before the revocation still loads, and is charged.
  auto load = market_->Load(buyer_key_, "l1", secret);
  ASSERT_OK(load);
  EXPECT_EQ(load->charged.micros(), 500);
  grantees = market_->Grantees(publisher_key_, secret);
  ASSERT_OK(grantees);
  EXPECT_TRUE(grantees->empty());
  ASSERT_OK(market_->CheckInvariants());
}

TEST_F(VisibilityTest, OnlyThePublisherGrantsAndAskingAboutAnotherOnesListingRevealsNothing) {
  const std::string secret = ArtifactId(1), nothing = ArtifactId(2);
  ListPrivate(secret, 500);
  const AccountId rival = MakeAccount("rival", kScopePublish | kScopeBuy);
  const std::string rival_key = last_key_;
  const Status on_secret = market_->GrantAccess(rival_key, "rg1", secret, rival);
  const Status on_nothing = market_->GrantAccess(rival_key, "rg2", nothing, rival);
  EXPECT_EQ(on_secret.code(), Status::Code::kNotFound);
  EXPECT_EQ(on_secret.code(), on_nothing.code());
  EXPECT_EQ(WithId({{on_secret.code(), on_secret.message()}}, secret, nothing),
            (std::vector<std::pair<Status::Code, std::string>>{{on_nothing.code(), on_nothing.message()}}));
  EXPECT_CODE(market_->Grantees(rival_key, secret), kNotFound);
  EXPECT_CODE(market_->RevokeAccess(rival_key, "rr1", secret, rival), kNotFound);
  // A buyer-only key cannot grant at all; an unknown grantee is refused.
  EXPECT_CODE(market_->GrantAccess(buyer_key_, "bg1", secret, buyer_), kPermissionDenied);
  EXPECT_CODE(market_->GrantAccess(publisher_key_, "pg1", secret, 999'999), kNotFound);
  // The admin may grant on any listing.
  ASSERT_OK(market_->GrantAccess(admin_, "ag1", secret, rival));
  ASSERT_OK(market_->GetQuote(rival_key, {secret, PurchaseKind::kMetered, 1}));
}

TEST_F(VisibilityTest, ARepricingKeepsTheVisibilityUnlessItNamesOne) {
  const std::string art = ArtifactId(1);
  ListPrivate(art, 500);
  List(art, 600);  // the fixture's List names no visibility
  auto l = market_->VisibleListing(publisher_key_, art);
  ASSERT_OK(l);
  EXPECT_EQ(l->visibility, Visibility::kPrivate);
  EXPECT_EQ(l->per_load.micros(), 600);
  EXPECT_CODE(market_->GetQuote(buyer_key_, {art, PurchaseKind::kMetered, 1}), kNotFound);

  PriceSpec p = l->spec;
  p.visibility = Visibility::kPublic;
  ASSERT_OK(market_->SetPrice(publisher_key_, "make-public", p));
  auto q = market_->GetQuote(buyer_key_, {art, PurchaseKind::kMetered, 1});
  ASSERT_OK(q);
  EXPECT_EQ(q->per_load.micros(), 600);
  // The same idempotency key with another visibility is another request.
  p.visibility = Visibility::kPrivate;
  EXPECT_CODE(market_->SetPrice(publisher_key_, "make-public", p), kFailedPrecondition);
}

}  // namespace
}  // namespace kvmart::market::testing
