// Small HTTP helpers shared by the route files: JSON bodies, errors in the
// OpenAI shape {"error": {"type", "message", "code"}}, Status → HTTP status,
// bearer tokens and idempotency keys.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "market/money.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace kvmart::server {

using nlohmann::json;

// Largest accepted request body; bigger ones get 413 before they are read.
inline constexpr size_t kDefaultMaxBodyBytes = 8u << 20;

struct HttpStatus {
  int code;
  const char* type;
};
HttpStatus HttpStatusFor(const Status& s);

void SendJson(httplib::Response& res, const json& body, int code = 200);
void SendError(httplib::Response& res, int code, std::string_view type, std::string_view message);
void SendStatus(httplib::Response& res, const Status& s);

// The request body as a JSON object (an empty body is {}); InvalidArgument
// for anything else.
StatusOr<json> ParseJsonObject(const httplib::Request& req);

// "Authorization: Bearer <key>" (or "x-api-key"); "" when absent.
std::string ApiKey(const httplib::Request& req);
// The Idempotency-Key header, or a fresh random key when absent (the call is
// then not safely retryable, as with the CLI).
StatusOr<std::string> IdempotencyKey(const httplib::Request& req);
std::string RandomHex(size_t bytes);

// Typed field access with precise InvalidArgument messages.
StatusOr<std::optional<std::string>> OptString(const json& j, const char* key);
StatusOr<std::optional<int64_t>> OptInt(const json& j, const char* key, int64_t min, int64_t max);
StatusOr<std::optional<double>> OptNumber(const json& j, const char* key, double min, double max);
StatusOr<std::optional<bool>> OptBool(const json& j, const char* key);

// A money amount given as a decimal string ("0.0015") in units of
// `currency`. JSON numbers are refused (InvalidArgument saying to send a
// string): they reach us as doubles.
StatusOr<market::Money> ParseMoneyField(const json& v, market::Currency currency, const char* what);
json MoneyJson(const market::Money& m);

}  // namespace kvmart::server
