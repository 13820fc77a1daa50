// Publishing and buying artifacts: POST/GET /v1/artifacts, GET
// /v1/artifacts/{id}, quote, purchase and (off by default) export.
#include <chrono>
#include <limits>

#include <httplib.h>

#include "artifact/chain_hash.h"
#include <sodium.h>

#include "engine/artifact_io.h"
#include "engine/spot_check.h"
#include "server/context.h"
#include "server/kv_plan.h"
#include "tokenizer/chat_template.h"

namespace kvmart::server {
namespace {

namespace mk = kvmart::market;
constexpr const char* kIdPattern = "(kv1-[0-9a-f]{64})";

json QuoteJson(const mk::Quote& q) {
  return {{"artifact_id", q.artifact_id},
          {"kind", mk::PurchaseKindName(q.kind)},
          {"tokens", q.tokens},
          {"loads", q.loads},
          {"upfront", MoneyJson(q.upfront)},
          {"per_load", MoneyJson(q.per_load)},
          {"provider_fee", MoneyJson(q.provider_fee)},
          {"expires_at", q.expires_at},
          {"fresh_prefill_cost", MoneyJson(q.fresh_prefill_cost)}};
}

StatusOr<mk::PurchaseRequest> ParsePurchase(const httplib::Request& req, const std::string& id) {
  mk::PurchaseRequest p;
  p.artifact_id = id;
  if (req.body.empty()) return p;
  KVMART_ASSIGN_OR_RETURN(json body, ParseJsonObject(req));
  KVMART_ASSIGN_OR_RETURN(auto kind, OptString(body, "kind"));
  KVMART_ASSIGN_OR_RETURN(auto quantity, OptInt(body, "quantity", 1, 1'000'000));
  if (kind) {
    auto k = mk::ParsePurchaseKind(*kind);
    if (!k.ok()) return Status::InvalidArgument("'kind' must be metered, bundle or unlimited");
    p.kind = *k;
  }
  p.quantity = quantity.value_or(1);
  return p;
}

// "public" (the default for a new listing) or "private" (docs/API.md,
// "Private artifacts"); absent keeps a listing's current visibility.
Status ParseVisibility(std::optional<std::string> v, mk::PriceSpec* spec) {
  if (!v) return Status::Ok();
  auto parsed = mk::ParseVisibility(*v);
  if (!parsed.ok()) return Status::InvalidArgument("'visibility': " + parsed.status().message());
  spec->visibility = *parsed;
  return Status::Ok();
}

// Optional price terms of a publish request, in the publisher's currency.
Status ParsePrice(const json& body, mk::PriceSpec* spec) {
  KVMART_ASSIGN_OR_RETURN(auto visibility, OptString(body, "visibility"));
  KVMART_RETURN_IF_ERROR(ParseVisibility(visibility, spec));
  auto it = body.find("price");
  if (it == body.end() || it->is_null()) return Status::Ok();
  if (!it->is_object()) return Status::InvalidArgument("'price' must be an object");
  const json& p = *it;
  if (p.contains("per_load")) {
    KVMART_ASSIGN_OR_RETURN(auto m, ParseMoneyField(p["per_load"], spec->currency, "price.per_load"));
    spec->per_load_micros = m.micros();
  }
  KVMART_ASSIGN_OR_RETURN(auto bl, OptInt(p, "bundle_loads", 0, 1'000'000'000));
  spec->bundle_loads = bl.value_or(0);
  if (p.contains("bundle_price")) {
    KVMART_ASSIGN_OR_RETURN(auto m, ParseMoneyField(p["bundle_price"], spec->currency, "price.bundle_price"));
    spec->bundle_price_micros = m.micros();
  }
  KVMART_ASSIGN_OR_RETURN(auto us, OptInt(p, "unlimited_seconds", 0, int64_t{1} << 40));
  spec->unlimited_seconds = us.value_or(0);
  if (p.contains("unlimited_price")) {
    KVMART_ASSIGN_OR_RETURN(auto m, ParseMoneyField(p["unlimited_price"], spec->currency, "price.unlimited_price"));
    spec->unlimited_price_micros = m.micros();
  }
  return Status::Ok();
}

struct PublishInput {
  std::vector<int32_t> tokens;
  PublishSource source;
  artifact::ArtifactMetadata meta;
};

StatusOr<PublishInput> ParsePublish(Context& ctx, const json& body) {
  PublishInput in;
  const int given = int(body.contains("text")) + int(body.contains("tokens")) + int(body.contains("messages"));
  if (given != 1) return Status::InvalidArgument("give exactly one of 'text', 'tokens' or 'messages'");
  if (auto t = body.find("text"); t != body.end()) {
    if (!t->is_string()) return Status::InvalidArgument("'text' must be a string");
    const std::string text = t->get<std::string>();
    KVMART_ASSIGN_OR_RETURN(in.tokens, ctx.parts.tokenizer->Encode(text));
    in.meta.source_sha256 = Sha256Of(text);
    in.source.kind = "text";
  } else if (auto k = body.find("tokens"); k != body.end()) {
    if (!k->is_array()) return Status::InvalidArgument("'tokens' must be an array of token ids");
    const int64_t vocab = ctx.parts.engine->model().config().vocab_size;
    for (const auto& v : *k) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab) {
        return Status::InvalidArgument("'tokens' must be token ids in [0, " + std::to_string(vocab) + ")");
      }
      in.tokens.push_back(static_cast<int32_t>(v.get<int64_t>()));
    }
    in.source.kind = "tokens";
  } else {
    const json& m = body["messages"];
    if (!m.is_array() || m.empty()) return Status::InvalidArgument("'messages' must be a non-empty array");
    auto msgs = tokenizer::ChatMessagesFromJson(m.dump());
    if (!msgs.ok()) return Status::InvalidArgument("'messages': " + msgs.status().message());
    KVMART_ASSIGN_OR_RETURN(in.tokens, tokenizer::EncodeChatPrefix(*ctx.parts.tokenizer, *msgs, {}));
    in.source.kind = "chat";
    in.source.messages_json = m.dump();
  }
  KVMART_ASSIGN_OR_RETURN(auto title, OptString(body, "title"));
  if (title) {
    if (title->size() > 4096) return Status::InvalidArgument("'title' is longer than 4096 bytes");
    in.meta.title = *title;
  }
  if (in.tokens.empty()) return Status::InvalidArgument("the document has no tokens");
  if (in.tokens.size() >= ctx.parts.engine->max_context()) {
    return Status::InvalidArgument("document of " + std::to_string(in.tokens.size()) +
                                   " tokens does not fit the context of " +
                                   std::to_string(ctx.parts.engine->max_context()));
  }
  return in;
}

StatusOr<json> List(Context& ctx, const std::string& key, const std::string& idem, mk::PriceSpec spec,
                    const std::string& id, const PublishSource& source);

void HandlePublish(Context& ctx, const httplib::Request& req, httplib::Response& res) {
  auto who = Authenticate(ctx, req);
  if (!who.ok()) return SendStatus(res, who.status());
  if ((who->second & mk::kScopePublish) == 0) {
    return SendError(res, 403, "permission_error", "this key may not publish (scope 'publish' needed)");
  }
  const std::string key = ApiKey(req);
  auto body = ParseJsonObject(req);
  if (!body.ok()) return SendStatus(res, body.status());
  auto in = ParsePublish(ctx, *body);
  if (!in.ok()) return SendStatus(res, in.status());
  auto account = ctx.parts.market->GetAccount(key, who->first);
  if (!account.ok()) return SendStatus(res, account.status());
  mk::PriceSpec spec;
  spec.currency = account->currency;
  if (Status s = ParsePrice(*body, &spec); !s.ok()) return SendStatus(res, s);
  auto codec_name = OptString(*body, "codec");
  if (!codec_name.ok()) return SendStatus(res, codec_name.status());
  auto codec = artifact::ParseCodec(codec_name->value_or("raw"));
  if (!codec.ok()) return SendStatus(res, Status::InvalidArgument("'codec': " + codec.status().message()));
  auto idem = IdempotencyKey(req);
  if (!idem.ok()) return SendStatus(res, idem.status());

  std::vector<uint32_t> u(in->tokens.begin(), in->tokens.end());
  const std::string id = artifact::ArtifactId(ctx.profile, u);
  bool built = false;
  double prefill_seconds = 0;
  // Content addressing: the same tokens on the same model are the same artifact,
  // so a document already held is not prefilled again.
  if (!ctx.parts.store->Stat(id).ok()) {
    auto slot = ctx.admission.Acquire(nullptr);
    if (!slot.ok()) return SendAdmissionRefusal(ctx, res, slot.status());
    auto session = ctx.parts.engine->NewSession();
    BuildOptions bo;
    bo.codec = *codec;
    bo.chunk_size = ctx.options.prefill_chunk;
    const auto t0 = std::chrono::steady_clock::now();
    auto art = BuildArtifact(*session, in->tokens, in->meta, *ctx.parts.signing_key, bo);
    prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    session.reset();
    slot->Release();
    if (!art.ok()) return SendStatus(res, art.status());
    if (art->manifest.artifact_id != id) return SendError(res, 500, "server_error", "artifact id mismatch");
    if (Status s = ctx.parts.store->Put(*art); !s.ok()) return SendStatus(res, s);
    ctx.metrics.tokens_prefilled.fetch_add(in->tokens.size());
    built = true;
  }
  auto listed = List(ctx, key, *idem, spec, id, in->source);
  if (!listed.ok()) return SendStatus(res, listed.status());
  json out = *listed;
  out["source"] = in->source.kind;
  out["prefilled"] = built;
  out["prefill_seconds"] = prefill_seconds;
  SendJson(res, out, built ? 201 : 200);
}

// The artifact's listing at `spec` (the market's SetPrice, idempotent under
// `idem`), and the publish answer's common fields.
StatusOr<json> List(Context& ctx, const std::string& key, const std::string& idem, mk::PriceSpec spec,
                    const std::string& id, const PublishSource& source) {
  KVMART_ASSIGN_OR_RETURN(auto info, ctx.parts.store->Stat(id));
  spec.artifact_id = id;
  spec.tokens = static_cast<int64_t>(info.token_count);
  spec.stored_bytes = static_cast<int64_t>(info.stored_bytes);
  KVMART_ASSIGN_OR_RETURN(auto listing, ctx.parts.market->SetPrice(key, idem, spec));
  if (Status s = ctx.parts.db->SetPublishSource(id, source); !s.ok()) {
    ctx.log.Write("warn", "publish source not kept", {{"artifact_id", id}, {"error", s.ToString()}});
  }
  ctx.metrics.publishes.fetch_add(1);
  json l = {{"per_load", MoneyJson(listing.per_load)}, {"per_load_is_default", listing.per_load_is_default},
            {"publisher_account", listing.publisher}, {"visibility", mk::VisibilityName(listing.visibility)}};
  if (listing.spec.bundle_loads > 0) {
    l["bundle_loads"] = listing.spec.bundle_loads;
    l["bundle_price"] = MoneyJson(mk::Money(listing.spec.bundle_price_micros, spec.currency));
  }
  if (listing.spec.unlimited_seconds > 0) {
    l["unlimited_seconds"] = listing.spec.unlimited_seconds;
    l["unlimited_price"] = MoneyJson(mk::Money(listing.spec.unlimited_price_micros, spec.currency));
  }
  return json{{"artifact_id", id},          {"tokens", info.token_count},  {"blocks", info.num_blocks},
              {"raw_bytes", info.raw_bytes}, {"stored_bytes", info.stored_bytes}, {"codec", info.codec},
              {"listing", l}};
}

// 422 naming the check an uploaded artifact failed; nothing stored or charged.
void Reject(Context& ctx, httplib::Response& res, std::string_view check, const Status& why) {
  ctx.metrics.uploads_rejected.fetch_add(1);
  json e = {{"error", {{"type", "artifact_rejected"}, {"check", check}, {"message", why.message()}}}};
  SendJson(res, e, 422);
}

// POST /v1/artifacts/upload: a .kva its publisher computed elsewhere, proven
// before it is listed (docs/SECURITY.md, "Uploads"): container and signature,
// every block's checksums, the served model's profile, the artifact id
// re-derived from the tokens, then a spot check — blocks drawn after the
// bytes arrived, recomputed from the artifact's own prefix on this engine,
// bit for bit — and the next-token logits probe.
void HandleUpload(Context& ctx, const httplib::Request& req, httplib::Response& res) {
  auto who = Authenticate(ctx, req);
  if (!who.ok()) return SendStatus(res, who.status());
  if ((who->second & mk::kScopePublish) == 0) {
    return SendError(res, 403, "permission_error", "this key may not publish (scope 'publish' needed)");
  }
  if (!ctx.options.accept_uploads) {
    return SendError(res, 403, "permission_error",
                     "this deployment does not accept uploaded artifacts (kvmart serve --accept-uploads)");
  }
  if (req.get_header_value("Content-Type") != "application/octet-stream") {
    return SendError(res, 415, "invalid_request_error", "send the .kva bytes as application/octet-stream");
  }
  const std::string key = ApiKey(req);
  auto idem = IdempotencyKey(req);
  if (!idem.ok()) return SendStatus(res, idem.status());
  auto account = ctx.parts.market->GetAccount(key, who->first);
  if (!account.ok()) return SendStatus(res, account.status());
  mk::PriceSpec spec;
  spec.currency = account->currency;
  if (req.has_param("per_load")) {
    if (Status s = ParsePrice(json{{"price", {{"per_load", req.get_param_value("per_load")}}}}, &spec); !s.ok())
      return SendStatus(res, s);
  }
  if (req.has_param("visibility")) {
    if (Status s = ParseVisibility(req.get_param_value("visibility"), &spec); !s.ok()) return SendStatus(res, s);
  }

  const auto* bytes = reinterpret_cast<const uint8_t*>(req.body.data());
  artifact::ReaderOptions ro;
  ro.require_signature = false;  // reported as its own check below
  auto reader = artifact::ArtifactReader::OpenBytes(std::span<const uint8_t>(bytes, req.body.size()), ro);
  if (!reader.ok()) return Reject(ctx, res, "container", reader.status());
  if (!reader->signature_status().ok()) return Reject(ctx, res, "signature", reader->signature_status());
  const artifact::Manifest& m = reader->manifest();
  artifact::Profile served = ctx.profile;
  served.block_size = m.profile.block_size;
  if (Status s = reader->CheckProfile(served); !s.ok()) return Reject(ctx, res, "profile", s);
  if (m.tokens.empty() || m.tokens.size() >= ctx.parts.engine->max_context())
    return Reject(ctx, res, "tokens", Status::InvalidArgument("token count outside (0, context)"));
  const int64_t vocab = ctx.parts.engine->model().config().vocab_size;
  for (uint32_t t : m.tokens)
    if (t >= vocab) return Reject(ctx, res, "tokens", Status::InvalidArgument("token id beyond the vocabulary"));
  if (artifact::ArtifactId(served, m.tokens) != m.artifact_id)
    return Reject(ctx, res, "artifact_id", Status::InvalidArgument("the id is not the one its profile and tokens give"));
  auto payloads = reader->ReadAllBlocks();
  if (!payloads.ok()) return Reject(ctx, res, "checksums", payloads.status());

  if (!ctx.parts.store->Stat(m.artifact_id).ok()) {
    auto slot = ctx.admission.Acquire(nullptr);
    if (!slot.ok()) return SendAdmissionRefusal(ctx, res, slot.status());
    // Drawn now that the bytes are fixed: the uploader cannot know them.
    auto chosen = ChooseSpotCheckBlocks(static_cast<uint32_t>(m.blocks.size()), ctx.options.upload_spot_check_blocks,
                                        [](uint32_t u) { return randombytes_uniform(u); });
    auto session = ctx.parts.engine->NewSession();
    auto check = SpotCheck(*session, m, *payloads, chosen, ctx.options.prefill_chunk);
    session.reset();
    slot->Release();
    if (!check.ok()) return SendStatus(res, check.status());
    ctx.metrics.tokens_prefilled.fetch_add(check->tokens_prefilled);
    if (!check->kv_identical) {
      return Reject(ctx, res, "spot_check",
                    Status::InvalidArgument("block " + std::to_string(check->differing.front()) +
                                            ": the KV recomputed on this engine differs"));
    }
    if (!check->probe_identical) {
      return Reject(ctx, res, "probe", Status::InvalidArgument("the next-token logits differ from the manifest's probe"));
    }
    if (Status s = ctx.parts.store->Put(reader->ToArtifact()); !s.ok()) return SendStatus(res, s);
  }
  PublishSource source;
  source.kind = "upload";
  auto listed = List(ctx, key, *idem, spec, m.artifact_id, source);
  if (!listed.ok()) return SendStatus(res, listed.status());
  ctx.metrics.uploads_accepted.fetch_add(1);
  SendJson(res, *listed, 201);
}

// Whether the caller holds a live entitlement to artifact `id`.
StatusOr<bool> Entitled(Context& ctx, const std::string& key, mk::AccountId account, const std::string& id) {
  KVMART_ASSIGN_OR_RETURN(auto ents, ctx.parts.market->Entitlements(key, account));
  for (const auto& e : ents) {
    if (e.artifact_id == id) return true;
  }
  return false;
}

// What the caller may see of artifact `id`: whether it may know the artifact
// exists (context.h, VisibleArtifacts, asked for one id) and whether it holds
// an entitlement, which shows the token ids. One read of the entitlements.
struct Standing {
  bool may_know = false;
  bool entitled = false;
};
StatusOr<Standing> StandingOf(Context& ctx, const std::string& key, mk::AccountId account, uint32_t scopes,
                              const std::string& id) {
  Standing s;
  KVMART_ASSIGN_OR_RETURN(s.entitled, Entitled(ctx, key, account, id));
  s.may_know = s.entitled || (scopes & mk::kScopeAdmin) != 0;
  if (s.may_know) return s;
  auto l = ctx.parts.market->VisibleListing(key, id);
  if (l.ok()) s.may_know = true;
  else if (l.status().code() != Status::Code::kNotFound) return l.status();
  return s;
}

// GET/POST /v1/artifacts/{id}/grants, DELETE /v1/artifacts/{id}/grants/{account}:
// the publisher says who may see a private listing.
void AddGrantRoutes(httplib::Server& http, Context& ctx) {
  const std::string base = std::string("/v1/artifacts/") + kIdPattern + "/grants";
  AddRoute(http, ctx, "GET", base, "/v1/artifacts/{id}/grants",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto grantees = ctx.parts.market->Grantees(ApiKey(req), req.matches[1].str());
             if (!grantees.ok()) return SendStatus(res, grantees.status());
             SendJson(res, {{"artifact_id", req.matches[1].str()}, {"accounts", *grantees}});
           });
  AddRoute(http, ctx, "POST", base, "/v1/artifacts/{id}/grants",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto body = ParseJsonObject(req);
             if (!body.ok()) return SendStatus(res, body.status());
             auto account = OptInt(*body, "account", 1, std::numeric_limits<int64_t>::max());
             if (!account.ok()) return SendStatus(res, account.status());
             if (!*account) return SendStatus(res, Status::InvalidArgument("'account' (the grantee's account id) is required"));
             auto idem = IdempotencyKey(req);
             if (!idem.ok()) return SendStatus(res, idem.status());
             const std::string id = req.matches[1];
             if (Status s = ctx.parts.market->GrantAccess(ApiKey(req), *idem, id, **account); !s.ok())
               return SendStatus(res, s);
             SendJson(res, {{"artifact_id", id}, {"account", **account}, {"granted", true}}, 201);
           });
  AddRoute(http, ctx, "DELETE", base + R"(/(\d+))", "/v1/artifacts/{id}/grants/{account}",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto idem = IdempotencyKey(req);
             if (!idem.ok()) return SendStatus(res, idem.status());
             const std::string id = req.matches[1];
             int64_t account = 0;
             try {
               account = std::stoll(req.matches[2].str());
             } catch (const std::exception&) {
               return SendStatus(res, Status::InvalidArgument("account id out of range"));
             }
             if (Status s = ctx.parts.market->RevokeAccess(ApiKey(req), *idem, id, account); !s.ok())
               return SendStatus(res, s);
             SendJson(res, {{"artifact_id", id}, {"account", account}, {"granted", false}});
           });
}

}  // namespace

void AddArtifactRoutes(httplib::Server& http, Context& ctx) {
  AddGrantRoutes(http, ctx);
  AddRoute(http, ctx, "POST", "/v1/artifacts", "/v1/artifacts",
           [&ctx](const httplib::Request& req, httplib::Response& res) { HandlePublish(ctx, req, res); });
  AddRoute(http, ctx, "POST", "/v1/artifacts/upload", "/v1/artifacts/upload",
           [&ctx](const httplib::Request& req, httplib::Response& res) { HandleUpload(ctx, req, res); });

  AddRoute(http, ctx, "GET", "/v1/artifacts", "/v1/artifacts",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             // Only what the caller may know of: another tenant's private
             // listing, or a document held but never listed, is not shown.
             auto visible = ArtifactsVisibleTo(ctx, ApiKey(req), who->first, who->second);
             if (!visible.ok()) return SendStatus(res, visible.status());
             json data = json::array();
             for (const auto& a : ctx.parts.store->List()) {
               if (!visible->Contains(a.artifact_id)) continue;
               json row = {{"artifact_id", a.artifact_id}, {"tokens", a.token_count}, {"blocks", a.num_blocks},
                           {"stored_bytes", a.stored_bytes}, {"created_at", a.created_at},
                           {"title", a.title ? json(*a.title) : json(nullptr)},
                           {"compatible", a.profile_digest_hex == ctx.profile_digest_hex}};
               const auto it = visible->ids.find(a.artifact_id);
               const mk::Listing* l = it != visible->ids.end() && it->second ? &*it->second : nullptr;
               row["per_load"] = l ? MoneyJson(l->per_load) : json(nullptr);
               row["fresh_prefill_cost"] = l ? MoneyJson(l->fresh_prefill_cost) : json(nullptr);
               row["visibility"] = l ? json(mk::VisibilityName(l->visibility)) : json(nullptr);
               data.push_back(row);
             }
             SendJson(res, {{"object", "list"}, {"data", data}});
           });

  AddRoute(http, ctx, "GET", std::string("/v1/artifacts/") + kIdPattern, "/v1/artifacts/{id}",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             const std::string id = req.matches[1];
             // One answer for an id nobody published and one the caller may
             // not know of.
             auto standing = StandingOf(ctx, ApiKey(req), who->first, who->second, id);
             if (!standing.ok()) return SendStatus(res, standing.status());
             auto m = standing->may_know ? ctx.parts.store->GetManifest(id)
                                         : StatusOr<artifact::Manifest>(Status::NotFound("no such artifact"));
             if (!m.ok()) return SendError(res, 404, "not_found_error", "no such artifact");
             auto text = artifact::SerializeManifest(*m);
             if (!text.ok()) return SendStatus(res, text.status());
             json j = json::parse(*text);
             // The token ids are the document: only buyers see them.
             if (!standing->entitled) {
               j.erase("token_ids");
               j["token_ids_redacted"] = true;
             }
             SendJson(res, j);
           });

  AddRoute(http, ctx, "POST", std::string("/v1/artifacts/") + kIdPattern + "/quote", "/v1/artifacts/{id}/quote",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto p = ParsePurchase(req, req.matches[1]);
             if (!p.ok()) return SendStatus(res, p.status());
             auto q = ctx.parts.market->GetQuote(ApiKey(req), *p);
             if (!q.ok()) return SendStatus(res, q.status());
             SendJson(res, QuoteJson(*q));
           });

  AddRoute(http, ctx, "POST", std::string("/v1/artifacts/") + kIdPattern + "/purchase",
           "/v1/artifacts/{id}/purchase", [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             auto p = ParsePurchase(req, req.matches[1]);
             if (!p.ok()) return SendStatus(res, p.status());
             auto idem = IdempotencyKey(req);
             if (!idem.ok()) return SendStatus(res, idem.status());
             auto purchase = ctx.parts.market->Buy(ApiKey(req), *idem, *p);
             if (!purchase.ok()) return SendStatus(res, purchase.status());
             KeepReceipt(ctx, purchase->receipt, "purchase");
             // A fresh entitlement has loads left: a resident copy is now entitled.
             ctx.resident.MarkEntitled(p->artifact_id, purchase->quote.expires_at);
             SendJson(res, {{"entitlement", purchase->entitlement}, {"quote", QuoteJson(purchase->quote)},
                            {"receipt", json::parse(purchase->receipt)}}, 201);
           });

  AddRoute(http, ctx, "GET", std::string("/v1/artifacts/") + kIdPattern + "/export", "/v1/artifacts/{id}/export",
           [&ctx](const httplib::Request& req, httplib::Response& res) {
             auto who = Authenticate(ctx, req);
             if (!who.ok()) return SendStatus(res, who.status());
             if (!ctx.options.export_enabled) {
               return SendError(res, 403, "permission_error",
                                "export is disabled on this provider: caches stay provider-side");
             }
             const std::string id = req.matches[1];
             const std::string key = ApiKey(req);
             auto idem = IdempotencyKey(req);
             if (!idem.ok()) return SendStatus(res, idem.status());
             // An export consumes one load of the buyer's entitlement (same
             // authorisation as a load, before the store is touched): reserved
             // now, posted only once the bytes and the egress are settled.
             auto hold = ctx.parts.market->ReserveLoad(key, *idem, id);
             if (!hold.ok()) {
               if (hold.status().code() == Status::Code::kPermissionDenied) {
                 return SendError(res, 403, "permission_error", "no usable entitlement for artifact " + id);
               }
               return SendStatus(res, hold.status());
             }
             auto void_load = [&](const std::string& why) {
               (void)ctx.parts.market->VoidLoad(key, *idem + "-void", hold->load, why);
             };
             auto art = ctx.parts.store->Export(id);
             StatusOr<std::vector<uint8_t>> bytes = art.ok() ? artifact::SerializeContainer(*art)
                                                             : StatusOr<std::vector<uint8_t>>(art.status());
             if (!bytes.ok()) {
               void_load(bytes.status().ToString());
               return SendError(res, 404, "not_found_error", "artifact cannot be exported (the load was not charged)");
             }
             // The egress is billed before a byte leaves; if the buyer cannot pay
             // it, the load is voided and nothing is sent.
             res.set_header("X-Kvmart-Egress-Bytes", std::to_string(bytes->size()));
             if (ctx.options.export_micros_per_gb > 0) {
               auto egress = ctx.parts.market->ChargeEgress(key, *idem + "-egress", id,
                                                            static_cast<int64_t>(bytes->size()),
                                                            ctx.options.export_micros_per_gb);
               if (!egress.ok()) {
                 void_load(egress.status().ToString());
                 return SendStatus(res, egress.status());
               }
               KeepReceipt(ctx, *egress, "egress");
               res.set_header("X-Kvmart-Egress-Receipt", *egress);
             }
             auto load = ctx.parts.market->PostLoad(key, *idem + "-post", hold->load);
             if (!load.ok()) return SendStatus(res, load.status());
             // An export is a load: one that took the last of its entitlement
             // may leave a resident copy that nobody is entitled to.
             if (!NoteEntitlement(ctx, id, *hold)) RefreshResidentEntitlements(ctx, std::span<const std::string>(&id, 1));
             KeepReceipt(ctx, load->receipt, "load");
             res.set_header("X-Kvmart-Load-Receipt", load->receipt);
             res.set_content(std::string(bytes->begin(), bytes->end()), "application/octet-stream");
           });
}

}  // namespace kvmart::server
