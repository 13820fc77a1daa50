// Signed receipts: proof, checkable offline with only the provider's public key,
// that a purchase, load, refund, deposit or storage charge happened.
//
// Wire form: one JSON object, canonical (keys sorted, no whitespace, ASCII only),
// whose "sig" member is the hex Ed25519 signature over the canonical JSON of all
// the other members. Canonical form makes the signed bytes reproducible by any
// verifier in any language; a changed field, added field or dropped field fails.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace kvmart::market {

inline constexpr std::string_view kReceiptVersion = "kvmart-receipt-v1";

struct Receipt {
  std::string receipt_id;    // "rcpt-<ledger txn id>-<kind>"
  std::string kind;          // purchase | load | refund | deposit | storage | egress
  int64_t account = 0;       // who paid (or received, for a deposit)
  std::string artifact_id;   // "" for deposits
  int64_t tokens_reused = 0; // tokens a load spared from prefill (0 for purchases)
  int64_t price_micros = 0;  // money moved for this event (0 for prepaid loads)
  std::string currency;
  int64_t ledger_txn = 0;    // ledger transaction id (0 when no money moved)
  int64_t entitlement = 0;
  int64_t load = 0;
  int64_t time = 0;          // unix seconds
  std::string provider_key;  // hex public key that signed it

  nlohmann::json ToJson() const;  // without "sig"
  static StatusOr<Receipt> FromJson(const nlohmann::json& j);
};

// Canonical JSON text of a value: sorted keys, no whitespace, ASCII escapes.
std::string CanonicalJson(const nlohmann::json& j);

// The provider's Ed25519 signing key.
class ProviderKey {
 public:
  static ProviderKey Generate();
  // 64-byte libsodium secret key (seed ‖ public key) as 128 hex characters.
  static StatusOr<ProviderKey> FromSecretHex(std::string_view hex);
  std::string SecretHex() const;
  std::string PublicKeyHex() const;

  // Signs the receipt: returns its canonical JSON with "sig" added.
  std::string Sign(const Receipt& r) const;
  // Detached Ed25519 signature of arbitrary bytes, as 128 hex characters
  // (payment quotes).
  std::string SignMessageHex(std::string_view msg) const;

 private:
  std::string sk_;  // 64 bytes
  std::string pk_;  // 32 bytes
};

// Verifies a signed receipt offline. Returns the receipt if the signature is good
// under public_key_hex and the text is well-formed; Corruption otherwise.
// True when sig_hex is a valid Ed25519 signature of msg under public_key_hex.
bool VerifyMessageHex(std::string_view msg, std::string_view sig_hex, std::string_view public_key_hex);

StatusOr<Receipt> VerifyReceipt(std::string_view signed_json, std::string_view public_key_hex);

}  // namespace kvmart::market
