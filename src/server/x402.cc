#include "server/x402.h"

#include <sodium.h>

namespace kvmart::server {

std::string Base64Encode(std::string_view bytes) {
  const int variant = sodium_base64_VARIANT_ORIGINAL;
  std::string out(sodium_base64_encoded_len(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), variant);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

StatusOr<std::string> Base64Decode(std::string_view text) {
  if (text.size() > 16 * 1024) return Status::InvalidArgument("payment header too large");
  std::string out(text.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(), text.size(), " \t",
                        &len, nullptr, sodium_base64_VARIANT_ORIGINAL) != 0) {
    return Status::InvalidArgument("payment header is not base64");
  }
  out.resize(len);
  return out;
}

std::string PaymentRequiredHeader(const market::PaymentQuote& q, const std::string& provider_key,
                                  const std::string& error) {
  json accept = {{"scheme", std::string(market::kPaymentScheme)},
                 {"network", "kvmart-ledger"},
                 {"resource", q.artifact_id},
                 {"amount", std::to_string(q.amount.micros())},
                 {"asset", q.amount.currency().str()},
                 {"payTo", provider_key},
                 {"maxTimeoutSeconds", 0},
                 {"extra", {{"unit", "micros"}, {"nonce", q.nonce}, {"expires_at", q.expires_at},
                            {"quote_signature", q.provider_signature}}}};
  json j = {{"x402Version", 2}, {"resource", q.artifact_id}, {"accepts", json::array({accept})}};
  if (!error.empty()) j["error"] = error;
  return Base64Encode(j.dump());
}

StatusOr<market::PaymentAuthorization> PaymentFromHeader(std::string_view header) {
  KVMART_ASSIGN_OR_RETURN(std::string raw, Base64Decode(header));
  json j = json::parse(raw, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::InvalidArgument("PAYMENT-SIGNATURE is not base64 JSON");
  if (j.value("scheme", std::string()) != market::kPaymentScheme) {
    return Status::InvalidArgument("PAYMENT-SIGNATURE: scheme must be '" + std::string(market::kPaymentScheme) + "'");
  }
  auto p = j.find("payload");
  if (p == j.end() || !p->is_object()) return Status::InvalidArgument("PAYMENT-SIGNATURE: 'payload' object missing");
  market::PaymentAuthorization a;
  for (const char* f : {"resource", "amount", "currency", "nonce", "quote_signature", "payer", "signature"}) {
    if (!p->contains(f) || !(*p)[f].is_string()) {
      return Status::InvalidArgument(std::string("PAYMENT-SIGNATURE: payload.") + f + " must be a string");
    }
  }
  if (!p->contains("expires_at") || !(*p)["expires_at"].is_number_integer()) {
    return Status::InvalidArgument("PAYMENT-SIGNATURE: payload.expires_at must be an integer");
  }
  const std::string amount = (*p)["amount"];
  if (amount.empty() || amount.size() > 18 || amount.find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("PAYMENT-SIGNATURE: payload.amount must be integer micros as a string");
  }
  auto cur = market::Currency::Parse((*p)["currency"].get<std::string>());
  if (!cur.ok()) return Status::InvalidArgument("PAYMENT-SIGNATURE: " + cur.status().message());
  a.artifact_id = (*p)["resource"];
  a.amount = market::Money(std::stoll(amount), *cur);
  a.nonce = (*p)["nonce"];
  a.expires_at = (*p)["expires_at"];
  a.quote_signature = (*p)["quote_signature"];
  a.payer_public_key = (*p)["payer"];
  a.signature = (*p)["signature"];
  return a;
}

std::string PaymentResponseHeader(const json& fields) { return Base64Encode(fields.dump()); }

}  // namespace kvmart::server
