// Accounts, keys, deposits, entitlements, receipts, the provider key, payouts,
// statements and HTTP 402 payment keys.
#include <httplib.h>

#include <climits>
#include <sstream>

#include "market/receipts.h"
#include "server/context.h"

namespace kvmart::server {
namespace {

namespace mk = kvmart::market;

// What every market route does first: authenticate the key, parse the JSON
// body (routes that take one) and take the idempotency key (routes that
// mutate). The handler then only speaks of its own fields; any Status it
// returns is the HTTP answer.
struct MarketCall {
  std::string key;
  mk::AccountId account = 0;
  uint32_t scopes = 0;
  json body = json::object();
  std::string idem;
  bool admin() const { return (scopes & mk::kScopeAdmin) != 0; }
};
enum CallNeeds : unsigned { kRead = 0, kBody = 1u << 0, kIdem = 1u << 1 };
using MarketHandler = std::function<Status(MarketCall&, const httplib::Request&, httplib::Response&)>;

void AddMarketRoute(httplib::Server& http, Context& ctx, const std::string& method, const std::string& pattern,
                    const std::string& route, unsigned needs, MarketHandler fn) {
  AddRoute(http, ctx, method, pattern, route, [&ctx, needs, fn](const httplib::Request& req, httplib::Response& res) {
    auto who = Authenticate(ctx, req);
    if (!who.ok()) return SendStatus(res, who.status());
    MarketCall call;
    call.key = ApiKey(req);
    call.account = who->first;
    call.scopes = who->second;
    if (needs & kBody) {
      auto body = ParseJsonObject(req);
      if (!body.ok()) return SendStatus(res, body.status());
      call.body = std::move(body).value();
    }
    if (needs & kIdem) {
      auto idem = IdempotencyKey(req);
      if (!idem.ok()) return SendStatus(res, idem.status());
      call.idem = std::move(idem).value();
    }
    if (Status s = fn(call, req, res); !s.ok()) SendStatus(res, s);
  });
}

StatusOr<int64_t> PathId(const httplib::Request& req, size_t i) {
  const std::string& s = req.matches[i];
  if (s.empty() || s.size() > 18) return Status::InvalidArgument("bad id '" + s + "'");
  return std::stoll(s);  // the route pattern admits digits only
}

// A non-negative integer query parameter (unix seconds, ids).
StatusOr<std::optional<int64_t>> QueryInt(const httplib::Request& req, const char* name) {
  if (!req.has_param(name)) return std::optional<int64_t>();
  const std::string v = req.get_param_value(name);
  if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument(std::string("query parameter '") + name + "' must be a non-negative integer");
  }
  return std::optional<int64_t>(std::stoll(v));
}

StatusOr<mk::Currency> CurrencyField(const json& body) {
  KVMART_ASSIGN_OR_RETURN(auto cur, OptString(body, "currency"));
  auto c = mk::Currency::Parse(cur.value_or("USD"));
  if (!c.ok()) return Status::InvalidArgument(c.status().message());
  return *c;
}

json AccountJson(const mk::AccountInfo& a, uint32_t scopes) {
  json j = {{"account_id", a.id}, {"name", a.name}, {"currency", a.currency.str()},
            {"balance", MoneyJson(a.balance)}, {"credit_limit", MoneyJson(a.credit_limit)}};
  if (scopes != 0) j["scopes"] = mk::ScopesToString(scopes);
  return j;
}

json EntitlementJson(const mk::Entitlement& e) {
  json j = {{"id", e.id}, {"artifact_id", e.artifact_id}, {"kind", mk::PurchaseKindName(e.kind)},
            {"expires_at", e.expires_at}};
  j["loads_remaining"] = e.loads_remaining ? json(*e.loads_remaining) : json(nullptr);
  return j;
}

json StatementJson(const mk::AccountStatement& s) {
  json lines = json::array();
  for (const auto& l : s.lines) {
    lines.push_back({{"txn", l.txn}, {"time", l.time}, {"kind", l.kind}, {"artifact_id", l.artifact_id},
                     {"amount", MoneyJson(l.amount)},
                     {"receipt_id", l.receipt_id.empty() ? json(nullptr) : json(l.receipt_id)}});
  }
  json sales = json::array();
  for (const auto& a : s.sales) {
    sales.push_back({{"artifact_id", a.artifact_id}, {"loads", a.loads}, {"gross", MoneyJson(a.gross)},
                     {"provider_fee", MoneyJson(a.provider_fee)}, {"net", MoneyJson(a.net)}});
  }
  return {{"object", "statement"}, {"account_id", s.account}, {"from", s.from}, {"to", s.to},
          {"opening_balance", MoneyJson(s.opening)}, {"closing_balance", MoneyJson(s.closing)},
          {"lines", lines}, {"sales", sales}};
}

// One record per row; `record` says which columns are filled.
std::string StatementCsv(const mk::AccountStatement& s) {
  std::ostringstream o;
  const std::string cur = s.opening.currency().str();
  o << "record,txn,time,kind,artifact_id,amount_micros,currency,receipt_id,loads,gross_micros,fee_micros,net_micros\n";
  o << "opening,," << s.from << ",,," << s.opening.micros() << "," << cur << ",,,,,\n";
  for (const auto& l : s.lines) {
    o << "line," << l.txn << "," << l.time << "," << l.kind << "," << l.artifact_id << "," << l.amount.micros() << ","
      << cur << "," << l.receipt_id << ",,,,\n";
  }
  o << "closing,," << s.to << ",,," << s.closing.micros() << "," << cur << ",,,,,\n";
  for (const auto& a : s.sales) {
    o << "sale,,,," << a.artifact_id << ",," << cur << ",," << a.loads << "," << a.gross.micros() << ","
      << a.provider_fee.micros() << "," << a.net.micros() << "\n";
  }
  return o.str();
}

}  // namespace

void AddMarketRoutes(httplib::Server& http, Context& ctx) {
  AddRoute(http, ctx, "GET", "/v1/provider/key", "/v1/provider/key",
           [&ctx](const httplib::Request&, httplib::Response& res) {
             SendJson(res, {{"algorithm", "ed25519"},
                            {"receipt_public_key", ctx.parts.market->ProviderPublicKey()},
                            {"artifact_public_key", ctx.parts.signing_key->public_key_hex()},
                            {"profile_digest", ctx.profile_digest_hex}});
           });

  AddMarketRoute(http, ctx, "GET", "/v1/accounts/me", "/v1/accounts/me", kRead,
                 [&ctx](MarketCall& c, const httplib::Request&, httplib::Response& res) -> Status {
                   KVMART_ASSIGN_OR_RETURN(auto acct, ctx.parts.market->GetAccount(c.key, c.account));
                   SendJson(res, AccountJson(acct, c.scopes));
                   return Status::Ok();
                 });

  // Admin: create an account and its first API key in one call.
  AddMarketRoute(http, ctx, "POST", "/v1/accounts", "/v1/accounts", kBody,
                 [&ctx](MarketCall& c, const httplib::Request& req, httplib::Response& res) -> Status {
                   KVMART_ASSIGN_OR_RETURN(auto name, OptString(c.body, "name"));
                   KVMART_ASSIGN_OR_RETURN(mk::Currency currency, CurrencyField(c.body));
                   KVMART_ASSIGN_OR_RETURN(auto scopes_s, OptString(c.body, "scopes"));
                   KVMART_ASSIGN_OR_RETURN(auto limit, OptInt(c.body, "credit_limit_micros", 0, INT64_MAX / 4));
                   if (!name || name->empty()) return Status::InvalidArgument("'name' is required");
                   auto scopes = mk::ParseScopes(scopes_s.value_or("publish,buy"));
                   if (!scopes.ok()) return Status::InvalidArgument(scopes.status().message());
                   KVMART_ASSIGN_OR_RETURN(std::string idem, IdempotencyKey(req));
                   KVMART_ASSIGN_OR_RETURN(mk::AccountId id, ctx.parts.market->CreateAccount(
                                                                 c.key, idem + "/account", {*name, currency, limit.value_or(0)}));
                   KVMART_ASSIGN_OR_RETURN(auto k, ctx.parts.market->CreateKey(c.key, idem + "/key", id, *scopes));
                   json out = {{"account_id", id}, {"key_id", k.key_id}, {"scopes", mk::ScopesToString(*scopes)}};
                   // A replayed request cannot show the secret again (only its hash was kept).
                   out["api_key"] = k.secret.empty() ? json(nullptr) : json(k.secret);
                   SendJson(res, out, 201);
                   return Status::Ok();
                 });

  AddMarketRoute(http, ctx, "POST", R"(/v1/accounts/(\d+)/keys)", "/v1/accounts/{id}/keys", kBody,
                 [&ctx](MarketCall& c, const httplib::Request& req, httplib::Response& res) -> Status {
                   KVMART_ASSIGN_OR_RETURN(int64_t account, PathId(req, 1));
                   KVMART_ASSIGN_OR_RETURN(auto scopes_s, OptString(c.body, "scopes"));
                   auto scopes = mk::ParseScopes(scopes_s.value_or("buy"));
                   if (!scopes.ok()) return Status::InvalidArgument(scopes.status().message());
                   KVMART_ASSIGN_OR_RETURN(std::string idem, IdempotencyKey(req));
                   KVMART_ASSIGN_OR_RETURN(auto k, ctx.parts.market->CreateKey(c.key, idem, account, *scopes));
                   json out = {{"account_id", k.account}, {"key_id", k.key_id}, {"scopes", mk::ScopesToString(k.scopes)}};
                   out["api_key"] = k.secret.empty() ? json(nullptr) : json(k.secret);
                   SendJson(res, out, 201);
                   return Status::Ok();
                 });

  AddMarketRoute(http, ctx, "DELETE", R"(/v1/keys/(\d+))", "/v1/keys/{id}", kIdem,
                 [&ctx](MarketCall& c, const httplib::Request& req, httplib::Response& res) -> Status {
                   KVMART_ASSIGN_OR_RETURN(int64_t key_id, PathId(req, 1));
                   KVMART_RETURN_IF_ERROR(ctx.parts.market->RevokeKey(c.key, c.idem, key_id));
                   SendJson(res, {{"key_id", key_id}, {"revoked", true}});
                   return Status::Ok();
                 });

  AddMarketRoute(http, ctx, "POST", R"(/v1/accounts/(\d+)/deposits)", "/v1/accounts/{id}/deposits", kBody,
                 [&ctx](MarketCall& c, const httplib::Request& req, httplib::Response& res) -> Status {
                   KVMART_ASSIGN_OR_RETURN(int64_t account, PathId(req, 1));
                   if (!c.body.contains("amount")) return Status::InvalidArgument("'amount' is required");
                   KVMART_ASSIGN_OR_RETURN(mk::Currency currency, CurrencyField(c.body));
                   KVMART_ASSIGN_OR_RETURN(mk::Money amount, ParseMoneyField(c.body["amount"], currency, "amount"));
                   if (amount.micros() <= 0) return Status::InvalidArgument("'amount' must be positive");
                   KVMART_ASSIGN_OR_RETURN(std::string idem, IdempotencyKey(req));
                   KVMART_ASSIGN_OR_RETURN(std::string receipt, ctx.parts.market->Deposit(c.key, idem, account, amount));
                   KeepReceipt(ctx, receipt, "deposit");
                   SendJson(res, {{"account_id", account}, {"amount", MoneyJson(amount)}, {"receipt", json::parse(receipt)}},
                            201);
                   return Status::Ok();
                 });

  AddMarketRoute(http, ctx, "GET", "/v1/entitlements", "/v1/entitlements", kRead,
                 [&ctx](MarketCall& c, const httplib::Request&, httplib::Response& res) -> Status {
                   KVMART_ASSIGN_OR_RETURN(auto ents, ctx.parts.market->Entitlements(c.key, c.account));
                   json data = json::array();
                   for (const auto& e : ents) data.push_back(EntitlementJson(e));
                   SendJson(res, {{"object", "list"}, {"data", data}});
                   return Status::Ok();
                 });

  AddMarketRoute(http, ctx, "GET", R"(/v1/receipts/([A-Za-z0-9_\-]{1,100}))", "/v1/receipts/{id}", kRead,
                 [&ctx](MarketCall& c, const httplib::Request& req, httplib::Response& res) -> Status {
                   auto r = ctx.parts.db->GetReceipt(req.matches[1]);
                   // Another account's receipt reads exactly like a missing one.
                   if (!r || (r->account != c.account && !c.admin())) return Status::NotFound("no such receipt");
                   SendJson(res, {{"receipt", json::parse(r->json)}, {"provider_key", ctx.parts.market->ProviderPublicKey()}});
                   return Status::Ok();
                 });

  // What a publisher may be paid out now (balance less held recent earnings).
  AddMarketRoute(http, ctx, "GET", "/v1/earnings", "/v1/earnings", kRead,
                 [&ctx](MarketCall& c, const httplib::Request& req, httplib::Response& res) -> Status {
                   KVMART_ASSIGN_OR_RETURN(auto acct, QueryInt(req, "account_id"));
                   const mk::AccountId account = acct.value_or(c.account);
                   KVMART_ASSIGN_OR_RETURN(mk::Earnings e, ctx.parts.market->GetEarnings(c.key, account));
                   SendJson(res, {{"account_id", account}, {"balance", MoneyJson(e.balance)},
                                  {"reserved", MoneyJson(e.pending)}, {"held", MoneyJson(e.held)},
                                  {"available", MoneyJson(e.available)}, {"min_payout", MoneyJson(e.min_payout)},
                                  {"hold_seconds", e.hold_seconds}});
                   return Status::Ok();
                 });

  // Publisher scope: money leaves for the publisher's external payout account.
  AddMarketRoute(http, ctx, "POST", "/v1/payouts", "/v1/payouts", kBody | kIdem,
                 [&ctx](MarketCall& c, const httplib::Request&, httplib::Response& res) -> Status {
                   if (!c.body.contains("amount")) return Status::InvalidArgument("'amount' is required");
                   KVMART_ASSIGN_OR_RETURN(mk::Currency currency, CurrencyField(c.body));
                   KVMART_ASSIGN_OR_RETURN(mk::Money amount, ParseMoneyField(c.body["amount"], currency, "amount"));
                   KVMART_ASSIGN_OR_RETURN(auto dest, OptString(c.body, "destination"));
                   KVMART_ASSIGN_OR_RETURN(auto account, OptInt(c.body, "account_id", 1, INT64_MAX));
                   if (!dest || dest->empty()) return Status::InvalidArgument("'destination' (the external payout account) is required");
                   KVMART_ASSIGN_OR_RETURN(mk::PayoutResult p, ctx.parts.market->Payout(
                                                                   c.key, c.idem, {account.value_or(0), amount, *dest}));
                   KeepReceipt(ctx, p.receipt, "payout");
                   SendJson(res, {{"payout_id", p.payout}, {"account_id", p.account}, {"amount", MoneyJson(p.amount)},
                                  {"destination", p.destination}, {"receipt", json::parse(p.receipt)}}, 201);
                   return Status::Ok();
                 });

  // Statement for [from, to): JSON by default, CSV with format=csv (or Accept: text/csv).
  AddMarketRoute(http, ctx, "GET", "/v1/statements", "/v1/statements", kRead,
                 [&ctx](MarketCall& c, const httplib::Request& req, httplib::Response& res) -> Status {
                   KVMART_ASSIGN_OR_RETURN(auto from, QueryInt(req, "from"));
                   KVMART_ASSIGN_OR_RETURN(auto to, QueryInt(req, "to"));
                   KVMART_ASSIGN_OR_RETURN(auto acct, QueryInt(req, "account_id"));
                   const std::string format = req.has_param("format") ? req.get_param_value("format")
                                              : req.get_header_value("Accept").find("text/csv") != std::string::npos ? "csv"
                                                                                                                     : "json";
                   if (format != "json" && format != "csv") return Status::InvalidArgument("'format' must be json or csv");
                   KVMART_ASSIGN_OR_RETURN(mk::AccountStatement s, ctx.parts.market->GetStatement(
                                                                       c.key, acct.value_or(c.account), from.value_or(0),
                                                                       to.value_or(INT64_MAX)));
                   if (format == "csv") {
                     res.status = 200;
                     res.set_content(StatementCsv(s), "text/csv");
                   } else {
                     SendJson(res, StatementJson(s));
                   }
                   return Status::Ok();
                 });

  // HTTP 402: register the Ed25519 key an agent signs payment authorisations with.
  AddMarketRoute(http, ctx, "POST", "/v1/payment-keys", "/v1/payment-keys", kBody | kIdem,
                 [&ctx](MarketCall& c, const httplib::Request&, httplib::Response& res) -> Status {
                   KVMART_ASSIGN_OR_RETURN(auto pk, OptString(c.body, "public_key"));
                   if (!pk) return Status::InvalidArgument("'public_key' (64 hex characters) is required");
                   KVMART_RETURN_IF_ERROR(ctx.parts.market->RegisterPaymentKey(c.key, c.idem, *pk));
                   SendJson(res, {{"account_id", c.account}, {"public_key", *pk}, {"scheme", mk::kPaymentScheme}}, 201);
                   return Status::Ok();
                 });
}

}  // namespace kvmart::server
