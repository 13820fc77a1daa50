// Internal: HTTP 402 pay-per-load with the x402 v2 header names.
//
//   402 + PAYMENT-REQUIRED: base64(JSON) of the quote for one load of the
//     artifact: {"x402Version": 2, "accepts": [{"scheme": "kvmart-ledger",
//     "resource": "kv1-…", "amount": "<micros>", "asset": "USD", "payTo": <provider
//     key>, "maxTimeoutSeconds", "extra": {"nonce", "expires_at",
//     "quote_signature"}}]} (plus "error" when a payment was refused).
//   PAYMENT-SIGNATURE: base64(JSON) {"x402Version": 2, "scheme": "kvmart-ledger",
//     "payload": {"resource", "amount", "currency", "nonce", "expires_at",
//     "quote_signature", "payer", "signature"}} — the agent's Ed25519 signature
//     (key registered with POST /v1/payment-keys) over
//     market::PaymentAuthorizationMessage.
//   PAYMENT-RESPONSE: base64(JSON) {"success", "scheme", "transaction" (receipt
//     id), "payer", "load", "receipt"}.
//
// The scheme is verified and settled by the market's own ledger. A real x402
// facilitator would sit behind the same two steps: Verify (here
// PaymentFromHeader + the signature checks inside Market::PayAndReserve) maps to
// the facilitator's POST /verify, and Settle (Market::PostPaidLoad when the
// answer is complete) to POST /settle; docs/MARKET.md describes the mapping.
#pragma once

#include <optional>
#include <string>

#include "market/market.h"
#include "server/http_util.h"

namespace kvmart::server {

std::string Base64Encode(std::string_view bytes);
StatusOr<std::string> Base64Decode(std::string_view text);

// The PAYMENT-REQUIRED value for a quote (error: why a payment was refused, or "").
std::string PaymentRequiredHeader(const market::PaymentQuote& q, const std::string& provider_key,
                                  const std::string& error);
// Parses a PAYMENT-SIGNATURE value; InvalidArgument with a precise message.
StatusOr<market::PaymentAuthorization> PaymentFromHeader(std::string_view header);
// The PAYMENT-RESPONSE value.
std::string PaymentResponseHeader(const json& fields);

}  // namespace kvmart::server
