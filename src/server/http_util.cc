#include "server/http_util.h"

#include <sodium.h>

#include <httplib.h>

#include "base/sha256.h"

namespace kvmart::server {

HttpStatus HttpStatusFor(const Status& s) {
  using C = Status::Code;
  switch (s.code()) {
    case C::kOk: return {200, "ok"};
    case C::kInvalidArgument:
    case C::kOutOfRange: return {400, "invalid_request_error"};
    case C::kUnauthenticated: return {401, "authentication_error"};
    case C::kPermissionDenied: return {403, "permission_error"};
    case C::kNotFound: return {404, "not_found_error"};
    case C::kAlreadyExists:
    case C::kFailedPrecondition: return {409, "conflict_error"};
    case C::kResourceExhausted:
      // A balance that cannot cover a charge is a payment problem (402), not a
      // rate limit; a full disk under the market or the store (the transaction
      // rolled back) is the server's storage, not the caller's rate.
      if (s.IsInsufficientFunds()) return {402, "insufficient_funds"};
      if (s.IsDiskFull()) return {507, "insufficient_storage"};
      // The engine's KV memory is full for now: the server is busy, not the caller.
      if (s.IsKvPagesExhausted()) return {503, "unavailable"};
      return {429, "rate_limit_error"};
    case C::kUnimplemented: return {501, "not_implemented"};
    case C::kAborted: return {503, "unavailable"};
    case C::kUnavailable: return {503, "unavailable"};
    default: return {500, "server_error"};
  }
}

void SendJson(httplib::Response& res, const json& body, int code) {
  res.status = code;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", "application/json");
}

void SendError(httplib::Response& res, int code, std::string_view type, std::string_view message) {
  SendJson(res, {{"error", {{"type", type}, {"message", message}, {"code", code}}}}, code);
}

void SendStatus(httplib::Response& res, const Status& s) {
  const HttpStatus h = HttpStatusFor(s);
  // Pages free as sessions finish, usually within seconds.
  if (s.IsKvPagesExhausted()) res.set_header("Retry-After", "1");
  SendError(res, h.code, h.type, s.message());
}

StatusOr<json> ParseJsonObject(const httplib::Request& req) {
  // No body (a bare `curl -X POST`) means no fields; each route then reports
  // the required ones by name.
  if (req.body.empty()) return json::object();
  json j = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument("request body is not valid JSON");
  if (!j.is_object()) return Status::InvalidArgument("request body must be a JSON object");
  return j;
}

std::string ApiKey(const httplib::Request& req) {
  std::string auth = req.get_header_value("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() > kBearer.size() && std::string_view(auth).substr(0, kBearer.size()) == kBearer) {
    return auth.substr(kBearer.size());
  }
  return req.get_header_value("x-api-key");
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  std::string hex(bytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  hex.pop_back();
  return hex;
}

StatusOr<std::string> IdempotencyKey(const httplib::Request& req) {
  std::string k = req.get_header_value("Idempotency-Key");
  if (k.empty()) return "auto-" + RandomHex(16);
  if (k.size() > 200) return Status::InvalidArgument("Idempotency-Key is longer than 200 bytes");
  return k;
}

StatusOr<std::optional<std::string>> OptString(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return Status::InvalidArgument(std::string("'") + key + "' must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

StatusOr<std::optional<int64_t>> OptInt(const json& j, const char* key, int64_t min, int64_t max) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<int64_t>();
  if (!it->is_number_integer()) return Status::InvalidArgument(std::string("'") + key + "' must be an integer");
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(max)) {
    return Status::InvalidArgument(std::string("'") + key + "' is out of range");
  }
  const int64_t v = it->get<int64_t>();
  if (v < min || v > max) {
    return Status::InvalidArgument(std::string("'") + key + "' must be in [" + std::to_string(min) + ", " +
                                   std::to_string(max) + "]");
  }
  return std::optional<int64_t>(v);
}

StatusOr<std::optional<double>> OptNumber(const json& j, const char* key, double min, double max) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<double>();
  if (!it->is_number()) return Status::InvalidArgument(std::string("'") + key + "' must be a number");
  const double v = it->get<double>();
  if (!(v >= min && v <= max)) {
    return Status::InvalidArgument(std::string("'") + key + "' must be in [" + json(min).dump() + ", " +
                                   json(max).dump() + "]");
  }
  return std::optional<double>(v);
}

StatusOr<std::optional<bool>> OptBool(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<bool>();
  if (!it->is_boolean()) return Status::InvalidArgument(std::string("'") + key + "' must be a boolean");
  return std::optional<bool>(it->get<bool>());
}

StatusOr<market::Money> ParseMoneyField(const json& v, market::Currency currency, const char* what) {
  // Money never passes through a double: a JSON number has already been read
  // as one (0.1 + 0.2 style drift, 2^53 limits) by the time it gets here, so
  // only the client's own decimal text is accepted.
  if (!v.is_string()) {
    return Status::InvalidArgument(std::string("'") + what + "' must be a decimal string such as \"0.0015\"" +
                                   (v.is_number() ? " (JSON numbers are not accepted for money)" : ""));
  }
  auto m = market::Money::Parse(v.get<std::string>(), currency);
  if (!m.ok()) return Status::InvalidArgument(std::string("'") + what + "': " + m.status().message());
  return m;
}

json MoneyJson(const market::Money& m) {
  return {{"amount", m.DecimalString()}, {"micros", m.micros()}, {"currency", m.currency().str()}};
}

}  // namespace kvmart::server
