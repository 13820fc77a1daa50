#include <gtest/gtest.h>

#include "market/receipts.h"

namespace kvmart::market {
namespace {

Receipt Sample(const ProviderKey& k) {
  Receipt r;
  r.receipt_id = "rcpt-load-7-3-9";
  r.kind = "load";
  r.account = 42;
  r.artifact_id = "kv1-" + std::string(64, 'a');
  r.tokens_reused = 4096;
  r.price_micros = 1229;
  r.currency = "USD";
  r.ledger_txn = 7;
  r.entitlement = 3;
  r.load = 9;
  r.time = 1'700'000'000;
  r.provider_key = k.PublicKeyHex();
  return r;
}

TEST(Receipts, SignedReceiptVerifiesOfflineWithOnlyThePublicKey) {
  ProviderKey k = ProviderKey::Generate();
  std::string signed_json = k.Sign(Sample(k));
  // Canonical: sorted keys, no whitespace.
  EXPECT_EQ(signed_json.find(' '), std::string::npos);
  EXPECT_EQ(signed_json.rfind("{\"account\":42,", 0), 0u);
  auto r = VerifyReceipt(signed_json, k.PublicKeyHex());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->tokens_reused, 4096);
  EXPECT_EQ(r->price_micros, 1229);
  // Signing is deterministic (Ed25519) and canonical.
  EXPECT_EQ(k.Sign(Sample(k)), signed_json);
}

TEST(Receipts, TamperedReceiptFails) {
  ProviderKey k = ProviderKey::Generate();
  std::string s = k.Sign(Sample(k));
  std::string t = s;
  t.replace(t.find("\"price_micros\":1229"), 19, "\"price_micros\":1228");
  EXPECT_EQ(VerifyReceipt(t, k.PublicKeyHex()).status().code(), Status::Code::kCorruption);
  // Added field.
  auto j = nlohmann::json::parse(s);
  j["bonus"] = 1;
  EXPECT_FALSE(VerifyReceipt(j.dump(), k.PublicKeyHex()).ok());
  // Dropped signature, garbage, flipped signature bit.
  j = nlohmann::json::parse(s);
  j.erase("sig");
  EXPECT_FALSE(VerifyReceipt(j.dump(), k.PublicKeyHex()).ok());
  EXPECT_FALSE(VerifyReceipt("not json", k.PublicKeyHex()).ok());
  j = nlohmann::json::parse(s);
  std::string sig = j["sig"];
  sig[0] = sig[0] == '0' ? '1' : '0';
  j["sig"] = sig;
  EXPECT_FALSE(VerifyReceipt(j.dump(), k.PublicKeyHex()).ok());
  // Another key.
  ProviderKey other = ProviderKey::Generate();
  EXPECT_FALSE(VerifyReceipt(s, other.PublicKeyHex()).ok());
  EXPECT_FALSE(VerifyReceipt(s, "abcd").ok());
}

TEST(Receipts, SecretKeyRoundTrips) {
  ProviderKey k = ProviderKey::Generate();
  auto k2 = ProviderKey::FromSecretHex(k.SecretHex());
  ASSERT_TRUE(k2.ok());
  EXPECT_EQ(k2->PublicKeyHex(), k.PublicKeyHex());
  EXPECT_EQ(k2->Sign(Sample(k)), k.Sign(Sample(k)));
  EXPECT_FALSE(ProviderKey::FromSecretHex("00").ok());
}

}  // namespace
}  // namespace kvmart::market
