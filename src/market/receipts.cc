#include "market/receipts.h"

#include <sodium.h>

#include <cstdlib>

#include "base/sha256.h"

namespace kvmart::market {

namespace {
void EnsureSodium() {
  if (sodium_init() < 0) std::abort();
}
}  // namespace

std::string CanonicalJson(const nlohmann::json& j) {
  // nlohmann::json objects are std::map-backed: keys are already sorted by byte
  // value. dump() with indent -1 emits no whitespace; ensure_ascii escapes all
  // non-ASCII so the bytes do not depend on Unicode normalisation of transports.
  return j.dump(-1, ' ', /*ensure_ascii=*/true);
}

nlohmann::json Receipt::ToJson() const {
  return nlohmann::json{{"v", kReceiptVersion},     {"receipt_id", receipt_id},
                        {"kind", kind},             {"account", account},
                        {"artifact_id", artifact_id}, {"tokens_reused", tokens_reused},
                        {"price_micros", price_micros}, {"currency", currency},
                        {"ledger_txn", ledger_txn}, {"entitlement", entitlement},
                        {"load", load},             {"time", time},
                        {"provider_key", provider_key}};
}

StatusOr<Receipt> Receipt::FromJson(const nlohmann::json& j) {
  try {
    if (!j.is_object() || j.at("v").get<std::string>() != kReceiptVersion) {
      return Status::Corruption("receipt: unknown version");
    }
    Receipt r;
    r.receipt_id = j.at("receipt_id").get<std::string>();
    r.kind = j.at("kind").get<std::string>();
    r.account = j.at("account").get<int64_t>();
    r.artifact_id = j.at("artifact_id").get<std::string>();
    r.tokens_reused = j.at("tokens_reused").get<int64_t>();
    r.price_micros = j.at("price_micros").get<int64_t>();
    r.currency = j.at("currency").get<std::string>();
    r.ledger_txn = j.at("ledger_txn").get<int64_t>();
    r.entitlement = j.at("entitlement").get<int64_t>();
    r.load = j.at("load").get<int64_t>();
    r.time = j.at("time").get<int64_t>();
    r.provider_key = j.at("provider_key").get<std::string>();
    return r;
  } catch (const nlohmann::json::exception& e) {
    return Status::Corruption(std::string("receipt: ") + e.what());
  }
}

ProviderKey ProviderKey::Generate() {
  EnsureSodium();
  ProviderKey k;
  k.sk_.resize(crypto_sign_SECRETKEYBYTES);
  k.pk_.resize(crypto_sign_PUBLICKEYBYTES);
  crypto_sign_keypair(reinterpret_cast<unsigned char*>(k.pk_.data()), reinterpret_cast<unsigned char*>(k.sk_.data()));
  return k;
}

StatusOr<ProviderKey> ProviderKey::FromSecretHex(std::string_view hex) {
  EnsureSodium();
  ProviderKey k;
  if (!FromHex(hex, &k.sk_) || k.sk_.size() != crypto_sign_SECRETKEYBYTES) {
    return Status::InvalidArgument("provider key: expected 128 hex characters");
  }
  k.pk_.resize(crypto_sign_PUBLICKEYBYTES);
  crypto_sign_ed25519_sk_to_pk(reinterpret_cast<unsigned char*>(k.pk_.data()), reinterpret_cast<const unsigned char*>(k.sk_.data()));
  return k;
}

std::string ProviderKey::SecretHex() const { return ToHex(sk_.data(), sk_.size()); }
std::string ProviderKey::PublicKeyHex() const { return ToHex(pk_.data(), pk_.size()); }

std::string ProviderKey::Sign(const Receipt& r) const {
  nlohmann::json j = r.ToJson();
  std::string msg = CanonicalJson(j);
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                       reinterpret_cast<const unsigned char*>(sk_.data()));
  j["sig"] = ToHex(sig, sizeof sig);
  return CanonicalJson(j);
}

std::string ProviderKey::SignMessageHex(std::string_view msg) const {
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                       reinterpret_cast<const unsigned char*>(sk_.data()));
  return ToHex(sig, sizeof sig);
}

bool VerifyMessageHex(std::string_view msg, std::string_view sig_hex, std::string_view public_key_hex) {
  EnsureSodium();
  std::string pk, sig;
  if (!FromHex(public_key_hex, &pk) || pk.size() != crypto_sign_PUBLICKEYBYTES) return false;
  if (!FromHex(sig_hex, &sig) || sig.size() != crypto_sign_BYTES) return false;
  return crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(sig.data()),
                                     reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                                     reinterpret_cast<const unsigned char*>(pk.data())) == 0;
}

StatusOr<Receipt> VerifyReceipt(std::string_view signed_json, std::string_view public_key_hex) {
  EnsureSodium();
  std::string pk;
  if (!FromHex(public_key_hex, &pk) || pk.size() != crypto_sign_PUBLICKEYBYTES) {
    return Status::InvalidArgument("public key: expected 64 hex characters");
  }
  nlohmann::json j = nlohmann::json::parse(signed_json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption("receipt: not a JSON object");
  auto it = j.find("sig");
  if (it == j.end() || !it->is_string()) return Status::Corruption("receipt: no signature");
  std::string sig;
  if (!FromHex(it->get<std::string>(), &sig) || sig.size() != crypto_sign_BYTES) {
    return Status::Corruption("receipt: malformed signature");
  }
  j.erase(it);
  std::string msg = CanonicalJson(j);
  if (crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(sig.data()),
                                  reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                                  reinterpret_cast<const unsigned char*>(pk.data())) != 0) {
    return Status::Corruption("receipt: bad signature");
  }
  KVMART_ASSIGN_OR_RETURN(Receipt r, Receipt::FromJson(j));
  if (r.provider_key != ToHex(pk.data(), pk.size())) return Status::Corruption("receipt: signed by a different key");
  return r;
}

}  // namespace kvmart::market
