// Store administration (admin scope): DELETE /v1/artifacts/{id} removes an
// artifact from the store; PUT /v1/publishers/{key}/quota caps the bytes one
// publisher (the Ed25519 key that signed the manifests) may keep stored.
//
// The market is not touched: a removed artifact's listing and entitlements
// stay, and a load of it fails before any charge sticks (the load is refunded,
// as for any store failure), so removing content never takes money.
#include <httplib.h>

#include "market/keys.h"
#include "server/context.h"

namespace kvmart::server {
namespace {

namespace mk = kvmart::market;
constexpr const char* kIdPattern = "(kv1-[0-9a-f]{64})";
constexpr const char* kPublisherPattern = "([0-9a-f]{64})";

// The caller's key must carry the admin scope.
Status RequireAdmin(Context& ctx, const httplib::Request& req) {
  KVMART_ASSIGN_OR_RETURN(auto who, Authenticate(ctx, req));
  if ((who.second & mk::kScopeAdmin) == 0) return Status::PermissionDenied("this route needs the admin scope");
  return Status::Ok();
}

}  // namespace

void AddAdminRoutes(httplib::Server& http, Context& ctx) {
  AddRoute(http, ctx, "DELETE", std::string("/v1/artifacts/") + kIdPattern, "/v1/artifacts/{id}",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             if (Status st = RequireAdmin(ctx, req); !st.ok()) return SendStatus(res, st);
             const std::string id = req.matches[1];
             auto idem = IdempotencyKey(req);
             if (!idem.ok()) return SendStatus(res, idem.status());
             if (Status st = ctx.parts.store->Remove(id); !st.ok()) return SendStatus(res, st);
             ctx.resident.Erase(id);  // its shared pages go once the last session using them ends
             // Off the market too: nothing sold that cannot load, no storage
             // billed for bytes no longer kept. An artifact held but never
             // listed has no listing to take down.
             Status unlisted = ctx.parts.market->RemoveListing(ApiKey(req), *idem, id);
             if (!unlisted.ok() && unlisted.code() != Status::Code::kNotFound) return SendStatus(res, unlisted);
             SendJson(res, {{"artifact_id", id}, {"removed", true}, {"unlisted", unlisted.ok()}});
           });

  AddRoute(http, ctx, "PUT", std::string("/v1/publishers/") + kPublisherPattern + "/quota",
           "/v1/publishers/{key}/quota", [&ctx](const httplib::Request& req, httplib::Response& res) {
             if (Status st = RequireAdmin(ctx, req); !st.ok()) return SendStatus(res, st);
             auto body = ParseJsonObject(req);
             if (!body.ok()) return SendStatus(res, body.status());
             auto bytes = OptInt(*body, "bytes", 0, INT64_MAX);
             if (!bytes.ok()) return SendStatus(res, bytes.status());
             if (!bytes->has_value()) {
               return SendError(res, 400, "invalid_request_error", "'bytes' is required (0 = unlimited)");
             }
             const std::string publisher = req.matches[1];
             Status st = ctx.parts.store->SetPublisherQuota(publisher, static_cast<uint64_t>(**bytes));
             if (!st.ok()) return SendStatus(res, st);
             SendJson(res, {{"publisher", publisher}, {"quota_bytes", **bytes}});
           });
}

}  // namespace kvmart::server
