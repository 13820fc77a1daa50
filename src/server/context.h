// Internal: the state every route handler shares (one per Server).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <unordered_map>

#include <httplib.h>

#include "server/admission.h"
#include "server/http_util.h"
#include "server/json_log.h"
#include "server/metrics.h"
#include "server/prefix_cache.h"
#include "server/rate_limiter.h"
#include "server/resident_kv.h"
#include "server/server.h"

namespace kvmart::server {

struct Context {
  ServerOptions options;
  ServerParts parts;
  ResidentKv resident;  // after parts: its pages go back to the engine's pool first
  PrefixCache prefix_cache;  // likewise
  Metrics metrics;
  Admission admission;
  std::optional<RateLimiter> rate_limiter;  // when options.rate_limit_per_s > 0
  JsonLog log;
  artifact::Profile profile;  // this engine's artifact profile
  Digest256 profile_digest{};
  std::string profile_digest_hex;
  std::vector<int32_t> eos_ids;  // <|im_end|>, <|endoftext|>

  Context(const ServerOptions& o, ServerParts p);
  ~Context() { parts.engine->SetKvReclaimer(nullptr); }  // it points at `resident`
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
};

using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

// Registers `handler` for METHOD pattern, wrapped with timing, metrics (labelled
// by `route`, never the raw path), a JSON access log line and an exception guard.
void AddRoute(httplib::Server& http, Context& ctx, const std::string& method, const std::string& pattern,
              const std::string& route, Handler handler);

// Route groups (one file each).
void AddMarketRoutes(httplib::Server& http, Context& ctx);     // accounts, keys, entitlements, receipts
void AddArtifactRoutes(httplib::Server& http, Context& ctx);   // publish, list, manifest, quote, purchase, export
void AddInferenceRoutes(httplib::Server& http, Context& ctx);  // /v1/chat/completions, /v1/completions, /v1/models
void AddAdminRoutes(httplib::Server& http, Context& ctx);      // artifact removal, publisher quotas

// Authenticates the request's API key with the market: (account, scopes).
StatusOr<std::pair<market::AccountId, uint32_t>> Authenticate(Context& ctx, const httplib::Request& req);
// Answers a request the engine's admission refused: 429 with Retry-After (and
// counted) when the queue is full, else the status.
void SendAdmissionRefusal(Context& ctx, httplib::Response& res, const Status& refused);
// The artifacts a caller may know of, by id: open listings it may see (public,
// its own, granted to it) and artifacts it holds entitlements to (they load
// even after a listing closes or a grant is revoked). An admin sees everything
// the store holds. The value is the listing when there is one the caller sees.
struct VisibleArtifacts {
  bool everything = false;  // admin
  std::unordered_map<std::string, std::optional<market::Listing>> ids;
  bool Contains(std::string_view id) const { return everything || ids.contains(std::string(id)); }
};
StatusOr<VisibleArtifacts> ArtifactsVisibleTo(Context& ctx, const std::string& api_key, market::AccountId account,
                                              uint32_t scopes);
// Keeps a copy of a receipt for GET /v1/receipts/{id} and counts the posting.
void KeepReceipt(Context& ctx, const std::string& signed_json, const std::string& kind);

}  // namespace kvmart::server
