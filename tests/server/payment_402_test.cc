// Pay-per-load over HTTP 402 end to end, with a real HTTP client on loopback:
// an agent without an API key is quoted (PAYMENT-REQUIRED), pays with an
// Ed25519 authorisation (PAYMENT-SIGNATURE) and gets the answer and the receipt
// (PAYMENT-RESPONSE) in one round trip; every forged, replayed, expired or
// unfunded payment is a clear 402 and charges nothing.
#include <gtest/gtest.h>
#include <sodium.h>

#include <atomic>

#include "base/sha256.h"
#include "market/receipts.h"
#include "server/market_scheduler.h"
#include "server/x402.h"
#include "test_server.h"

namespace kvmart::testing {
namespace {

class Payment402 : public ::testing::Test {
 protected:
  void SetUp() override {
    now_->store(static_cast<int64_t>(std::time(nullptr)));
    auto now = now_;
    srv_ = std::make_unique<TestServer>(Models(), server::ServerOptions{}, nullptr, "", [now](market::MarketOptions& o) {
      o.clock = [now] { return now->load(); };
    });
    pub_ = srv_->NewAccount("publisher", "publish");
    agent_ = srv_->NewAccount("agent", "buy", "0.015");
    std::vector<int> doc(40);
    for (int i = 0; i < 40; ++i) doc[i] = 1000 + i;
    Reply p = srv_->Post("/v1/artifacts", {{"tokens", doc}, {"price", {{"per_load", "0.01"}}}}, pub_.key);
    ASSERT_EQ(p.status, 201) << p.text;
    id_ = p.body["artifact_id"];
    ASSERT_GE(sodium_init(), 0);
    crypto_sign_keypair(pk_, sk_);
    Reply k = srv_->Post("/v1/payment-keys", {{"public_key", ToHex(pk_, sizeof pk_)}}, agent_.key);
    ASSERT_EQ(k.status, 201) << k.text;
  }

  json Ask() const {
    return {{"prompt", {7, 8, 9}}, {"max_tokens", 3}, {"temperature", 0}, {"kv", {{"artifact", id_}}}};
  }

  static json Decode(const std::string& header) {
    auto raw = server::Base64Decode(header);
    EXPECT_TRUE(raw.ok());
    return json::parse(raw.ok() ? *raw : "null", nullptr, false);
  }

  // Asks without a key: the 402 and its quote.
  json Quote() {
    Reply r = srv_->Post("/v1/completions", Ask(), "");
    EXPECT_EQ(r.status, 402) << r.text;
    EXPECT_EQ(r.body["error"]["type"], "payment_required");
    auto it = r.headers.find("PAYMENT-REQUIRED");
    EXPECT_NE(it, r.headers.end());
    json q = Decode(it == r.headers.end() ? "" : it->second);
    EXPECT_EQ(q["x402Version"], 2);
    EXPECT_EQ(q["accepts"][0]["scheme"], "kvmart-ledger");
    EXPECT_EQ(q["accepts"][0]["resource"], id_);
    EXPECT_EQ(q["accepts"][0]["amount"], "10000");
    return q["accepts"][0];
  }

  // The agent's side: sign exactly the quote (optionally tampered afterwards).
  std::string Pay(const json& accept, const std::function<void(json&)>& tamper = nullptr) {
    market::PaymentAuthorization a;
    a.artifact_id = accept["resource"];
    a.amount = market::Money(std::stoll(accept["amount"].get<std::string>()), market::Currency());
    a.nonce = accept["extra"]["nonce"];
    a.expires_at = accept["extra"]["expires_at"];
    a.quote_signature = accept["extra"]["quote_signature"];
    a.payer_public_key = ToHex(pk_, sizeof pk_);
    const std::string msg = market::PaymentAuthorizationMessage(a);
    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), sk_);
    json payload = {{"resource", a.artifact_id}, {"amount", accept["amount"]}, {"currency", "USD"},
                    {"nonce", a.nonce}, {"expires_at", a.expires_at}, {"quote_signature", a.quote_signature},
                    {"payer", a.payer_public_key}, {"signature", ToHex(sig, sizeof sig)}};
    if (tamper) tamper(payload);
    return server::Base64Encode(json{{"x402Version", 2}, {"scheme", "kvmart-ledger"}, {"payload", payload}}.dump());
  }

  Reply Send(const std::string& payment) {
    return srv_->Post("/v1/completions", Ask(), "", {{"PAYMENT-SIGNATURE", payment}});
  }

  void ExpectRefused(const Reply& r, const std::string& why, int64_t balance) {
    EXPECT_EQ(r.status, 402) << r.text;
    EXPECT_NE(r.body["error"]["message"].get<std::string>().find(why), std::string::npos) << r.text;
    EXPECT_TRUE(r.headers.count("PAYMENT-REQUIRED"));  // a fresh quote to try again
    EXPECT_EQ(srv_->BalanceMicros(agent_.key), balance);
    EXPECT_TRUE(srv_->server().market().CheckInvariants().ok());
  }

  std::shared_ptr<std::atomic<int64_t>> now_ = std::make_shared<std::atomic<int64_t>>(0);
  std::unique_ptr<TestServer> srv_;
  TestServer::Account pub_, agent_;
  std::string id_;
  unsigned char pk_[crypto_sign_PUBLICKEYBYTES];
  unsigned char sk_[crypto_sign_SECRETKEYBYTES];
};

TEST_F(Payment402, AnAgentPaysForALoadInTheRequestThatUsesIt) {
  const json q = Quote();
  const int64_t before = srv_->BalanceMicros(agent_.key);
  ASSERT_EQ(before, 15'000);

  // Wrong signature, wrong amount, a quote for another artifact, garbage.
  ExpectRefused(Send(Pay(q, [](json& p) { p["signature"] = std::string(128, '0'); })), "signature", before);
  ExpectRefused(Send(Pay(q, [](json& p) { p["amount"] = "1"; })), "not one this provider issued", before);
  ExpectRefused(Send(Pay(q, [](json& p) { p["resource"] = "kv1-" + std::string(64, 'c'); })), "authorization is for", before);
  ExpectRefused(Send("not base64!"), "base64", before);

  // The real payment: one round trip, the answer, the receipt.
  const std::string good = Pay(q);
  Reply r = Send(good);
  ASSERT_EQ(r.status, 200) << r.text;
  EXPECT_GT(r.body["kv_usage"]["tokens_reused"].get<int64_t>(), 0);
  auto it = r.headers.find("PAYMENT-RESPONSE");
  ASSERT_NE(it, r.headers.end());
  json pr = Decode(it->second);
  EXPECT_EQ(pr["success"], true);
  EXPECT_EQ(pr["account_id"], agent_.id);
  auto rc = market::VerifyReceipt(pr["receipt"].dump(), srv_->provider_key());
  ASSERT_TRUE(rc.ok()) << rc.status().ToString();
  EXPECT_EQ(rc->kind, "load");
  EXPECT_EQ(rc->price_micros, 10'000);
  EXPECT_EQ(pr["transaction"], rc->receipt_id);
  EXPECT_EQ(srv_->BalanceMicros(agent_.key), 5'000);

  // Replayed: the nonce is spent.
  ExpectRefused(Send(good), "nonce was already used", 5'000);
  // Insufficient funds: 5,000 left, a load costs 10,000.
  ExpectRefused(Send(Pay(Quote())), "insufficient funds", 5'000);
  // Expired: a fresh quote, paid after its expiry.
  Reply d = srv_->Post("/v1/accounts/" + std::to_string(agent_.id) + "/deposits", {{"amount", "1"}}, srv_->admin_key());
  ASSERT_EQ(d.status, 201);
  const json late = Quote();
  now_->fetch_add(121);
  ExpectRefused(Send(Pay(late)), "expired", 1'005'000);
  // Paying with an API key of the same account also works; with the payment
  // key of another account it is refused and charges nothing.
  auto other = srv_->NewAccount("other", "buy", "1");
  Reply mixed = srv_->Post("/v1/completions", Ask(), other.key, {{"PAYMENT-SIGNATURE", Pay(Quote())}});
  EXPECT_EQ(mixed.status, 403) << mixed.text;
  EXPECT_EQ(srv_->BalanceMicros(agent_.key), 1'005'000);
  EXPECT_EQ(srv_->BalanceMicros(other.key), 1'000'000);
  EXPECT_TRUE(srv_->server().market().CheckInvariants().ok());
}

TEST_F(Payment402, AStreamedPaidLoadIsPostedWhenTheStreamCompletes) {
  const json q = Quote();
  json ask = Ask();
  ask["stream"] = true;
  Reply r = srv_->Post("/v1/completions", ask, "", {{"PAYMENT-SIGNATURE", Pay(q)}});
  ASSERT_EQ(r.status, 200) << r.text;
  auto it = r.headers.find("PAYMENT-RESPONSE");
  ASSERT_NE(it, r.headers.end());
  EXPECT_EQ(Decode(it->second)["status"], "reserved");
  // The settlement comes in the last chunk's kv_usage.
  json receipt;
  for (size_t p = r.text.find("data: {"); p != std::string::npos; p = r.text.find("data: {", p + 1)) {
    json chunk = json::parse(r.text.substr(p + 6, r.text.find("\n", p) - p - 6), nullptr, false);
    if (chunk.is_object() && chunk.contains("kv_usage")) receipt = chunk["kv_usage"]["receipt"];
  }
  ASSERT_TRUE(receipt.is_object()) << r.text;
  ASSERT_TRUE(market::VerifyReceipt(receipt.dump(), srv_->provider_key()).ok());
  EXPECT_EQ(srv_->BalanceMicros(agent_.key), 5'000);
  EXPECT_TRUE(srv_->server().market().CheckInvariants().ok());
}

}  // namespace
}  // namespace kvmart::testing

namespace kvmart::testing {
namespace {

// Storage is billed by the server itself, with no operator: a maintenance run
// every second over one-second billing periods.
TEST(ServerStorageBilling, TheServerBillsStorageOnItsOwn) {
  EXPECT_EQ(server::LastCompletedPeriodStart(7200, 3600), 3600);
  EXPECT_EQ(server::LastCompletedPeriodStart(7199, 3600), 0);
  server::ServerOptions o;
  o.market_maintenance_interval_s = 1;
  o.storage_billing_period_s = 1;
  TestServer srv(Models(), o);
  auto pub = srv.NewAccount("publisher", "publish", "1");
  std::vector<int> doc(40);
  for (int i = 0; i < 40; ++i) doc[i] = 1000 + i;
  Reply p = srv.Post("/v1/artifacts", {{"tokens", doc}}, pub.key);
  ASSERT_EQ(p.status, 201) << p.text;
  bool billed = false;
  for (int i = 0; i < 50 && !billed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    Reply st = srv.Get("/v1/statements", pub.key);
    ASSERT_EQ(st.status, 200) << st.text;
    for (const auto& l : st.body["lines"]) billed = billed || (l["kind"] == "storage" && l["receipt_id"].is_string());
  }
  EXPECT_TRUE(billed) << "no storage charge within 5 s";
  EXPECT_LT(srv.BalanceMicros(pub.key), 1'000'000);
  EXPECT_TRUE(srv.server().market().CheckInvariants().ok());
}

}  // namespace
}  // namespace kvmart::testing

namespace kvmart::testing {
namespace {

// Payouts and statements over HTTP: bad input is a clear error and moves
// nothing; a retry replays; the statement balances from opening to closing.
TEST(ServerPayouts, PayoutsAndStatementsOverHttp) {
  TestServer srv(Models(), server::ServerOptions{}, nullptr, "", [](market::MarketOptions& o) {
    o.payout_hold_seconds = 0;
    o.min_payout_micros = 100'000;
  });
  auto pub = srv.NewAccount("publisher", "publish", "1");
  auto buyer = srv.NewAccount("buyer", "buy", "1");
  const std::string pay = "/v1/payouts";
  auto balance = [&] { return srv.BalanceMicros(pub.key); };
  Reply e = srv.Get("/v1/earnings", pub.key);
  ASSERT_EQ(e.status, 200) << e.text;
  EXPECT_EQ(e.body["available"]["micros"], 1'000'000);
  EXPECT_EQ(srv.Post(pay, {{"amount", "0.25"}}, pub.key).status, 400);                                      // no destination
  EXPECT_EQ(srv.Post(pay, {{"destination", "bank"}}, pub.key).status, 400);                                 // no amount
  EXPECT_EQ(srv.Post(pay, {{"amount", "0.05"}, {"destination", "bank"}}, pub.key).status, 400);             // below minimum
  EXPECT_EQ(srv.Post(pay, {{"amount", "-1"}, {"destination", "bank"}}, pub.key).status, 400);
  EXPECT_EQ(srv.Post(pay, {{"amount", "2.00"}, {"destination", "bank"}}, pub.key).status, 402);             // over available
  EXPECT_EQ(srv.Post(pay, {{"amount", "0.25"}, {"destination", "bank"}}, buyer.key).status, 403);           // buy scope
  EXPECT_EQ(srv.Post(pay, {{"amount", "0.25"}, {"destination", "bank"}}, "").status, 401);
  EXPECT_EQ(balance(), 1'000'000);
  Reply ok = srv.Post(pay, {{"amount", "0.25"}, {"destination", "bank"}}, pub.key, {{"Idempotency-Key", "po-1"}});
  ASSERT_EQ(ok.status, 201) << ok.text;
  ASSERT_TRUE(market::VerifyReceipt(ok.body["receipt"].dump(), srv.provider_key()).ok());
  Reply again = srv.Post(pay, {{"amount", "0.25"}, {"destination", "bank"}}, pub.key, {{"Idempotency-Key", "po-1"}});
  ASSERT_EQ(again.status, 201);
  EXPECT_EQ(again.body["receipt"], ok.body["receipt"]);
  EXPECT_EQ(srv.Post(pay, {{"amount", "0.30"}, {"destination", "bank"}}, pub.key, {{"Idempotency-Key", "po-1"}}).status, 409);
  EXPECT_EQ(balance(), 750'000);

  Reply st = srv.Get("/v1/statements?from=0", pub.key);
  ASSERT_EQ(st.status, 200) << st.text;
  EXPECT_EQ(st.body["opening_balance"]["micros"], 0);
  EXPECT_EQ(st.body["closing_balance"]["micros"], 750'000);
  ASSERT_EQ(st.body["lines"].size(), 2u);  // deposit, payout
  EXPECT_EQ(st.body["lines"][1]["kind"], "payout");
  EXPECT_EQ(st.body["lines"][1]["receipt_id"], ok.body["receipt"]["receipt_id"]);
  Reply csv = srv.Get("/v1/statements?format=csv", pub.key);
  ASSERT_EQ(csv.status, 200);
  EXPECT_EQ(csv.text.rfind("record,txn,time,kind", 0), 0u) << csv.text;
  EXPECT_NE(csv.text.find("closing,,"), std::string::npos);
  EXPECT_EQ(srv.Get("/v1/statements?from=x", pub.key).status, 400);
  EXPECT_EQ(srv.Get("/v1/statements?format=xml", pub.key).status, 400);
  EXPECT_EQ(srv.Get("/v1/statements?account_id=" + std::to_string(buyer.id), pub.key).status, 403);
  EXPECT_TRUE(srv.server().market().CheckInvariants().ok());
}

}  // namespace
}  // namespace kvmart::testing
