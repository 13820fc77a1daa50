// Accounts, keys, deposits, entitlements, receipts and the provider key.
#include <httplib.h>

#include "market/receipts.h"
#include "server/context.h"

namespace kvmart::server {
namespace {

namespace mk = kvmart::market;

StatusOr<int64_t> PathId(const httplib::Request& req, size_t i) {
  const std::string& s = req.matches[i];
  if (s.empty() || s.size() > 18) return Status::InvalidArgument("bad id '" + s + "'");
  return std::stoll(s);  // the route pattern admits digits only
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

}  // namespace

void AddMarketRoutes(httplib::Server& http, Context& ctx) {
  AddRoute(http, ctx, "GET", "/v1/provider/key", "/v1/provider/key",
           [&ctx](const httplib::Request&, httplib::Response& res) {
             SendJson(res, {{"algorithm", "ed25519"},
                            {"receipt_public_key", ctx.parts.market->ProviderPublicKey()},
                            {"artifact_public_key", ctx.parts.signing_key->public_key_hex()},
                            {"profile_digest", ctx.profile_digest_hex}});
           });

  AddRoute(http, ctx, "GET", "/v1/accounts/me", "/v1/accounts/me",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto acct = ctx.parts.market->GetAccount(ApiKey(req), who->first);
             if (!acct.ok()) return SendStatus(res, acct.status());
             SendJson(res, AccountJson(*acct, who->second));
           });

  // Admin: create an account and its first API key in one call.
  AddRoute(http, ctx, "POST", "/v1/accounts", "/v1/accounts",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto body = ParseJsonObject(req);
             if (!body.ok()) return SendStatus(res, body.status());
             auto name = OptString(*body, "name");
             auto cur = OptString(*body, "currency");
             auto scopes_s = OptString(*body, "scopes");
             auto limit = OptInt(*body, "credit_limit_micros", 0, INT64_MAX / 4);
             for (const Status& s : {name.status(), cur.status(), scopes_s.status(), limit.status()}) {
               if (!s.ok()) return SendStatus(res, s);
             }
             if (!*name || (*name)->empty()) return SendError(res, 400, "invalid_request_error", "'name' is required");
             auto currency = mk::Currency::Parse(cur->value_or("USD"));
             if (!currency.ok()) return SendStatus(res, Status::InvalidArgument(currency.status().message()));
             auto scopes = mk::ParseScopes(scopes_s->value_or("publish,buy"));
             if (!scopes.ok()) return SendStatus(res, Status::InvalidArgument(scopes.status().message()));
             auto idem = IdempotencyKey(req);
             if (!idem.ok()) return SendStatus(res, idem.status());
             const std::string key = ApiKey(req);
             auto id = ctx.parts.market->CreateAccount(key, *idem + "/account",
                                                       {**name, *currency, limit->value_or(0)});
             if (!id.ok()) return SendStatus(res, id.status());
             auto k = ctx.parts.market->CreateKey(key, *idem + "/key", *id, *scopes);
             if (!k.ok()) return SendStatus(res, k.status());
             json out = {{"account_id", *id}, {"key_id", k->key_id}, {"scopes", mk::ScopesToString(*scopes)}};
             // A replayed request cannot show the secret again (only its hash was kept).
             out["api_key"] = k->secret.empty() ? json(nullptr) : json(k->secret);
             SendJson(res, out, 201);
           });

  AddRoute(http, ctx, "POST", R"(/v1/accounts/(\d+)/keys)", "/v1/accounts/{id}/keys",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto account = PathId(req, 1);
             if (!account.ok()) return SendStatus(res, account.status());
             auto body = ParseJsonObject(req);
             if (!body.ok()) return SendStatus(res, body.status());
             auto scopes_s = OptString(*body, "scopes");
             if (!scopes_s.ok()) return SendStatus(res, scopes_s.status());
             auto scopes = mk::ParseScopes(scopes_s->value_or("buy"));
             if (!scopes.ok()) return SendStatus(res, Status::InvalidArgument(scopes.status().message()));
             auto idem = IdempotencyKey(req);
             if (!idem.ok()) return SendStatus(res, idem.status());
             auto k = ctx.parts.market->CreateKey(ApiKey(req), *idem, *account, *scopes);
             if (!k.ok()) return SendStatus(res, k.status());
             json out = {{"account_id", k->account}, {"key_id", k->key_id}, {"scopes", mk::ScopesToString(k->scopes)}};
             out["api_key"] = k->secret.empty() ? json(nullptr) : json(k->secret);
             SendJson(res, out, 201);
           });

  AddRoute(http, ctx, "DELETE", R"(/v1/keys/(\d+))", "/v1/keys/{id}",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto key_id = PathId(req, 1);
             if (!key_id.ok()) return SendStatus(res, key_id.status());
             auto idem = IdempotencyKey(req);
             if (!idem.ok()) return SendStatus(res, idem.status());
             if (Status s = ctx.parts.market->RevokeKey(ApiKey(req), *idem, *key_id); !s.ok()) {
               return SendStatus(res, s);
             }
             SendJson(res, {{"key_id", *key_id}, {"revoked", true}});
           });

  AddRoute(http, ctx, "POST", R"(/v1/accounts/(\d+)/deposits)", "/v1/accounts/{id}/deposits",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto account = PathId(req, 1);
             if (!account.ok()) return SendStatus(res, account.status());
             auto body = ParseJsonObject(req);
             if (!body.ok()) return SendStatus(res, body.status());
             if (!body->contains("amount")) return SendError(res, 400, "invalid_request_error", "'amount' is required");
             auto cur = OptString(*body, "currency");
             if (!cur.ok()) return SendStatus(res, cur.status());
             auto currency = mk::Currency::Parse(cur->value_or("USD"));
             if (!currency.ok()) return SendStatus(res, Status::InvalidArgument(currency.status().message()));
             auto amount = ParseMoneyField((*body)["amount"], *currency, "amount");
             if (!amount.ok()) return SendStatus(res, amount.status());
             if (amount->micros() <= 0) return SendError(res, 400, "invalid_request_error", "'amount' must be positive");
             auto idem = IdempotencyKey(req);
             if (!idem.ok()) return SendStatus(res, idem.status());
             auto receipt = ctx.parts.market->Deposit(ApiKey(req), *idem, *account, *amount);
             if (!receipt.ok()) return SendStatus(res, receipt.status());
             KeepReceipt(ctx, *receipt, "deposit");
             SendJson(res, {{"account_id", *account}, {"amount", MoneyJson(*amount)},
                            {"receipt", json::parse(*receipt)}}, 201);
           });

  AddRoute(http, ctx, "GET", "/v1/entitlements", "/v1/entitlements",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto ents = ctx.parts.market->Entitlements(ApiKey(req), who->first);
             if (!ents.ok()) return SendStatus(res, ents.status());
             json data = json::array();
             for (const auto& e : *ents) data.push_back(EntitlementJson(e));
             SendJson(res, {{"object", "list"}, {"data", data}});
           });

  AddRoute(http, ctx, "GET", R"(/v1/receipts/([A-Za-z0-9_\-]{1,100}))", "/v1/receipts/{id}",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto r = ctx.parts.db->GetReceipt(req.matches[1]);
             // Another account's receipt reads exactly like a missing one.
             const bool admin = (who->second & mk::kScopeAdmin) != 0;
             if (!r || (r->account != who->first && !admin)) {
               return SendError(res, 404, "not_found_error", "no such receipt");
             }
             SendJson(res, {{"receipt", json::parse(r->json)},
                            {"provider_key", ctx.parts.market->ProviderPublicKey()}});
           });
}

}  // namespace kvmart::server
