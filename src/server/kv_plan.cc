#include "server/kv_plan.h"

#include <algorithm>
#include <chrono>
#include <unordered_map>
#include <utility>

#include "engine/artifact_io.h"

namespace kvmart::server {
namespace {

namespace mk = kvmart::market;

bool StartsWith(const std::vector<int32_t>& a, const std::vector<uint32_t>& prefix) {
  if (prefix.size() > a.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (static_cast<uint32_t>(a[i]) != prefix[i]) return false;
  }
  return true;
}

std::vector<int32_t> Concat(const std::vector<uint32_t>& p, const std::vector<int32_t>& rest) {
  std::vector<int32_t> out(p.begin(), p.end());
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

// The prompt of a request that continues artifact `m`: the request may repeat
// the artifact's content (then it must tokenize to a sequence starting with
// it), or give only what follows, joined per the prefix contract.
StatusOr<std::vector<int32_t>> ContinuationPrompt(Context& ctx, const PromptSpec& spec,
                                                  const std::string& artifact_id,
                                                  const std::vector<uint32_t>& prefix) {
  KVMART_ASSIGN_OR_RETURN(std::vector<int32_t> whole, PromptTokens(ctx, spec));
  if (whole.size() > prefix.size() && StartsWith(whole, prefix)) return whole;
  if (!spec.chat) return Concat(prefix, whole);
  auto src = ctx.parts.db->GetPublishSource(artifact_id);
  if (src && src->kind == "chat") {
    KVMART_ASSIGN_OR_RETURN(auto prefix_msgs, tokenizer::ChatMessagesFromJson(src->messages_json));
    auto cont = tokenizer::ContinueChat(*ctx.parts.tokenizer, prefix_msgs, spec.messages, spec.chat_options);
    if (!cont.ok()) {
      return Status::InvalidArgument("these messages cannot follow the artifact's chat turns: " +
                                     cont.status().message());
    }
    return Concat(prefix, *cont);
  }
  // A text or token artifact: the chat is rendered on its own and appended
  // (token concatenation; the joint falls before <|im_start|>).
  return Concat(prefix, whole);
}

// A resident artifact is attached (its shared pages referenced, only the
// partial last page copied); otherwise its blocks are imported from the store
// and the session's pages become the resident copy for the next buyers.
Status ImportFromStore(Context& ctx, Session& session, const std::string& artifact_id,
                       const artifact::Manifest& m) {
  if (auto prefix = ctx.resident.Find(artifact_id)) {
    const auto t0 = std::chrono::steady_clock::now();
    // Content-addressed: the same id names the same tokens; checked anyway.
    if (prefix->tokens.size() == m.tokens.size() &&
        std::equal(m.tokens.begin(), m.tokens.end(), prefix->tokens.begin())) {
      Status st = session.Attach(*prefix);
      ctx.resident.CountAttach(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      return st;
    }
    ctx.resident.Erase(artifact_id);
  }
  // The resident engine pages become the one decoded copy: the store's memory
  // tier is not asked to keep a second.
  store::LoadOptions lo;
  lo.promote = false;
  KVMART_RETURN_IF_ERROR(ctx.parts.store->Load(artifact_id, lo, [&](const store::LoadedBlock& b) -> Status {
    if (!b.payload || b.token_end > m.tokens.size() || b.token_begin != session.size()) {
      return Status::Corruption("store returned an unexpected block " + std::to_string(b.index));
    }
    std::span<const uint32_t> toks(m.tokens.data() + b.token_begin, b.token_end - b.token_begin);
    return ImportBlockPayload(session, b.token_begin, toks, *b.payload);
  }));
  if (session.size() != m.tokens.size()) return Status::Corruption("the store returned fewer blocks than the manifest lists");
  if (auto prefix = session.ShareAsPrefix(); prefix.ok()) {
    auto info = ctx.parts.store->Stat(artifact_id);
    ctx.resident.Insert(artifact_id, *prefix, (*prefix)->shared_bytes(session.engine().model().config()),
                        info.ok() && info->pinned);
  }
  return Status::Ok();
}

// Posts the armed hold and records the receipt (or the failure) in kv_usage.
void PostAndRecord(Context& ctx, KvPlan& plan) {
  auto posted = plan.hold.Post();
  if (!posted.ok()) {
    ctx.log.Write("warn", "kv load could not be posted; not charged",
                  {{"load", plan.hold.load()}, {"error", posted.status().ToString()}});
    const std::string cur = plan.kv_usage.contains("price") ? plan.kv_usage["price"].value("currency", "USD") : "USD";
    auto c = market::Currency::Parse(cur);
    plan.kv_usage["price"] = MoneyJson(market::Money::Zero(c.ok() ? *c : market::Currency()));
    plan.kv_usage["post_error"] = posted.status().message();
    return;
  }
  plan.kv_usage["price"] = MoneyJson(posted->charged);
  plan.kv_usage["receipt"] = json::parse(posted->receipt);
  KeepReceipt(ctx, posted->receipt, "load");
}

}  // namespace

StatusOr<KvRequest> ParseKvRequest(const json& body) {
  KvRequest kv;
  auto it = body.find("kv");
  if (it == body.end() || it->is_null()) return kv;
  if (!it->is_object()) return Status::InvalidArgument("'kv' must be an object");
  KVMART_ASSIGN_OR_RETURN(auto artifact, OptString(*it, "artifact"));
  KVMART_ASSIGN_OR_RETURN(auto autob, OptBool(*it, "auto"));
  if (artifact && autob.value_or(false)) return Status::InvalidArgument("'kv' takes either 'artifact' or 'auto'");
  if (artifact) {
    if (artifact->rfind("kv1-", 0) != 0 || artifact->size() != 68) {
      return Status::InvalidArgument("'kv.artifact' must be an artifact id (kv1-<64 hex>)");
    }
    kv.mode = KvRequest::Mode::kArtifact;
    kv.artifact_id = *artifact;
  } else if (autob.value_or(false)) {
    kv.mode = KvRequest::Mode::kAuto;
    if (auto mp = it->find("max_price"); mp != it->end() && !mp->is_null()) {
      KVMART_ASSIGN_OR_RETURN(auto cur, OptString(*it, "currency"));
      KVMART_ASSIGN_OR_RETURN(auto currency, mk::Currency::Parse(cur.value_or("USD")));
      KVMART_ASSIGN_OR_RETURN(kv.max_price, ParseMoneyField(*mp, currency, "kv.max_price"));
    }
  } else {
    return Status::InvalidArgument("'kv' needs 'artifact' or 'auto': true");
  }
  return kv;
}

StatusOr<std::vector<int32_t>> PromptTokens(Context& ctx, const PromptSpec& spec) {
  if (!spec.chat) return spec.tokens;
  KVMART_ASSIGN_OR_RETURN(std::string text, tokenizer::RenderChat(spec.messages, spec.chat_options));
  return ctx.parts.tokenizer->Encode(text);
}

LoadHold& LoadHold::operator=(LoadHold&& o) noexcept {
  if (this != &o) {
    Void("replaced");
    market_ = std::exchange(o.market_, nullptr);
    api_key_ = std::move(o.api_key_);
    paid_account_ = o.paid_account_;
    load_ = o.load_;
  }
  return *this;
}

StatusOr<market::LoadResult> LoadHold::Post() {
  if (market_ == nullptr) return Status::FailedPrecondition("no reserved load to post");
  market::Market* m = std::exchange(market_, nullptr);
  if (api_key_.empty()) return m->PostPaidLoad(paid_account_, load_);
  return m->PostLoad(api_key_, "post-" + std::to_string(load_), load_);
}

bool LoadHold::Void(std::string_view reason) {
  if (market_ == nullptr) return false;
  market::Market* m = std::exchange(market_, nullptr);
  // A void that fails (database unreachable) leaves the hold to expire: the
  // sweeper voids it, so the buyer is never charged for it either way.
  Status s = api_key_.empty() ? m->VoidPaidLoad(paid_account_, load_, reason)
                              : m->VoidLoad(api_key_, "void-" + std::to_string(load_), load_, reason);
  return s.ok();
}

void KeepPrompt(Context& ctx, const KvPlan& plan, Session& session) {
  if (plan.keep_prompt_for == 0 || session.size() != plan.prompt.size()) return;
  // The session's whole pages become shared (it keeps decoding on them) and
  // the partial last page is copied: the prefix costs no second copy.
  if (auto prefix = session.ShareAsPrefix(); prefix.ok()) {
    ctx.prefix_cache.Insert(plan.keep_prompt_for, *prefix,
                            (*prefix)->shared_bytes(session.engine().model().config()));
  }
}

void RefreshResidentEntitlements(Context& ctx, std::span<const std::string> ids) {
  if (ids.empty()) return;
  auto live = ctx.parts.market->EntitledArtifacts(ids);
  if (!live.ok()) {
    ctx.log.Write("warn", "resident artifacts' entitlements could not be read; eviction order kept",
                  {{"artifacts", ids.size()}, {"error", live.status().ToString()}});
    return;
  }
  std::unordered_map<std::string, int64_t> until;
  for (auto& e : *live) until.emplace(std::move(e.artifact_id), e.until);
  ctx.resident.SetEntitlements(ids, until);
}

bool NoteEntitlement(Context& ctx, const std::string& artifact_id, const market::LoadHold& drawn) {
  // nullopt: unlimited loads (until it expires; the map compares the time).
  if (drawn.entitlement_loads_left.has_value() && *drawn.entitlement_loads_left <= 0) return false;
  ctx.resident.MarkEntitled(artifact_id, drawn.entitlement_expires_at);
  return true;
}

void PostPlanLoad(Context& ctx, KvPlan& plan) {
  if (!plan.hold.armed()) return;
  PostAndRecord(ctx, plan);
  // Whatever the posting did: the loads were counted at the reservation, so
  // the market already says whether anyone may still load the artifact.
  if (!plan.recheck_entitlement.empty()) {
    RefreshResidentEntitlements(ctx, std::span<const std::string>(&plan.recheck_entitlement, 1));
  }
}

StatusOr<KvPlan> PlanAndLoad(Context& ctx, const std::string& api_key, market::AccountId account,
                             const PromptSpec& spec, const KvRequest& kv, std::unique_ptr<Session>* session,
                             PrepaidHold* prepaid) {
  KvPlan plan;
  if (kv.mode == KvRequest::Mode::kNone) {
    KVMART_ASSIGN_OR_RETURN(plan.prompt, PromptTokens(ctx, spec));
    if (account == 0 || !ctx.prefix_cache.enabled()) return plan;
    if (auto prefix = ctx.prefix_cache.Longest(account, plan.prompt)) {
      if ((*session)->Attach(*prefix).ok()) {
        plan.reused = prefix->tokens.size();
        return plan;
      }
      *session = ctx.parts.engine->NewSession();  // no pages to attach to: prefill it all
    }
    if (plan.prompt.size() >= ctx.prefix_cache.min_tokens() && !ctx.prefix_cache.Contains(account, plan.prompt)) {
      plan.keep_prompt_for = account;
    }
    return plan;
  }
  mk::Market& market = *ctx.parts.market;
  const std::string idem = "load-" + RandomHex(16);
  std::string artifact_id = kv.artifact_id;
  json purchase_receipt = nullptr;
  std::optional<mk::Quote> quote;

  // Two-phase: the load is reserved here, before the store is touched, and
  // posted only when the answer is complete (PostPlanLoad); every failure in
  // between voids it (LoadHold), so a failed load is never charged.
  mk::LoadHold drawn;  // what the reservation left of the buyer's entitlement
  auto reserved = [&](const mk::LoadHold& h) {
    drawn = h;
    plan.hold = LoadHold(&market, api_key, 0, h.load);
    plan.kv_usage["load"] = h.load;
    plan.kv_usage["price"] = MoneyJson(h.reserved);
  };
  if (prepaid != nullptr) {
    plan.hold = std::move(prepaid->hold);
    drawn = prepaid->reservation;
    plan.kv_usage["load"] = plan.hold.load();
    purchase_receipt = json::parse(prepaid->purchase_receipt);
    auto q = market.PublicListing(artifact_id);
    if (q.ok()) plan.kv_usage["price"] = MoneyJson(q->per_load);
  } else if (kv.mode == KvRequest::Mode::kAuto) {
    KVMART_ASSIGN_OR_RETURN(plan.prompt, PromptTokens(ctx, spec));
    std::vector<uint32_t> u(plan.prompt.begin(), plan.prompt.end());
    // Only an artifact the caller may know of is matched: another tenant's
    // private document reads as no match at all.
    KVMART_ASSIGN_OR_RETURN(auto who, ctx.parts.market->Authenticate(api_key));
    KVMART_ASSIGN_OR_RETURN(VisibleArtifacts visible, ArtifactsVisibleTo(ctx, api_key, who.first, who.second));
    const store::PrefixMatch match = ctx.parts.store->Lookup(
        ctx.profile_digest, u, [&visible](std::string_view id) { return visible.Contains(id); });
    auto miss = [&](const std::string& reason) {
      ctx.metrics.auto_misses.fetch_add(1);
      plan.kv_usage = {{"auto", true}, {"artifact_id", nullptr}, {"tokens_reused", 0},
                       {"tokens_prefilled", plan.prompt.size()}, {"reason", reason}};
      return std::move(plan);
    };
    if (match.artifact_id.empty()) return miss("no published artifact is a prefix of this prompt");
    if (match.artifact_tokens >= plan.prompt.size()) return miss("the matching artifact leaves nothing to prefill");
    artifact_id = match.artifact_id;
    // An existing entitlement is used first; otherwise buy one metered load if
    // the quoted per-load price fits the budget.
    auto q = market.GetQuote(api_key, {artifact_id, mk::PurchaseKind::kMetered, 1});
    if (!q.ok()) return miss("no purchasable listing for the matching artifact");
    quote = *q;
    auto hold = market.ReserveLoad(api_key, idem, artifact_id);
    if (!hold.ok() && hold.status().code() == Status::Code::kPermissionDenied) {
      if (kv.max_price && quote->per_load.micros() > kv.max_price->micros()) {
        return miss("the matching artifact costs " + quote->per_load.ToString() + " per load, above max_price");
      }
      KVMART_ASSIGN_OR_RETURN(mk::Purchase p, market.Buy(api_key, idem + "-buy", {artifact_id, mk::PurchaseKind::kMetered, 1}));
      KeepReceipt(ctx, p.receipt, "purchase");
      purchase_receipt = json::parse(p.receipt);
      hold = market.ReserveLoad(api_key, idem, artifact_id);
    }
    if (!hold.ok()) return hold.status();
    reserved(*hold);
  } else {
    // Authorisation before any lookup: an unknown artifact and a missing
    // entitlement give the same answer, whatever the store holds.
    auto hold = market.ReserveLoad(api_key, idem, artifact_id);
    if (!hold.ok()) {
      if (hold.status().code() == Status::Code::kPermissionDenied) {
        return Status::PermissionDenied("no usable entitlement for artifact " + artifact_id);
      }
      return hold.status();
    }
    reserved(*hold);
  }
  const int64_t load_id = plan.hold.load();
  auto void_load = [&](const std::string& why) {
    if (plan.hold.Void(why)) plan.kv_usage["voided"] = true;
    ctx.metrics.kv_load_failures.fetch_add(1);
    ctx.log.Write("warn", "kv load failed, voided (not charged)",
                  {{"artifact_id", artifact_id}, {"load", load_id}, {"reason", why}});
  };

  auto manifest = ctx.parts.store->GetManifest(artifact_id);
  if (!manifest.ok()) {
    void_load(manifest.status().ToString());
    return Status::NotFound("artifact " + artifact_id + " is not held by this provider (the load was not charged)");
  }
  if (Status s = artifact::CheckProfileMatches(ctx.profile, manifest->profile); !s.ok()) {
    void_load("profile mismatch");
    return Status::InvalidArgument("artifact " + artifact_id +
                                   " was computed with another model or profile than this server's (the load was "
                                   "not charged): " + s.message());
  }
  if (kv.mode == KvRequest::Mode::kArtifact) {
    auto prompt = ContinuationPrompt(ctx, spec, artifact_id, manifest->tokens);
    if (!prompt.ok()) {
      void_load("bad continuation");
      return prompt.status();
    }
    plan.prompt = std::move(prompt).value();
  }
  if (plan.prompt.size() >= ctx.parts.engine->max_context()) {
    void_load("prompt too long");
    return Status::InvalidArgument("prompt of " + std::to_string(plan.prompt.size()) +
                                   " tokens leaves no room in the context of " +
                                   std::to_string(ctx.parts.engine->max_context()) + " (the load was not charged)");
  }
  const size_t reused = manifest->tokens.size();
  if (!quote) {
    auto q = market.GetQuote(api_key, {artifact_id, mk::PurchaseKind::kMetered, 1});
    if (q.ok()) quote = *q;
  }
  plan.kv_usage["auto"] = kv.mode == KvRequest::Mode::kAuto;
  plan.kv_usage["artifact_id"] = artifact_id;
  if (!purchase_receipt.is_null()) plan.kv_usage["purchase_receipt"] = purchase_receipt;
  if (quote) plan.kv_usage["prefill_cost_avoided"] = MoneyJson(quote->fresh_prefill_cost);

  if (Status s = ImportFromStore(ctx, **session, artifact_id, *manifest); !s.ok()) {
    // Never wrong KV: drop the half-filled session and prefill everything.
    void_load(s.ToString());
    *session = ctx.parts.engine->NewSession();
    plan.kv_usage["error"] = "artifact could not be loaded (" + s.message() + "); prefilled from scratch, not charged";
    plan.kv_usage["price"] = MoneyJson(mk::Money::Zero(quote ? quote->per_load.currency() : mk::Currency()));
    plan.kv_usage["tokens_reused"] = 0;
    plan.kv_usage["tokens_prefilled"] = plan.prompt.size();
    return plan;
  }
  plan.reused = reused;
  if (!NoteEntitlement(ctx, artifact_id, drawn)) plan.recheck_entitlement = artifact_id;
  ctx.metrics.kv_loads.fetch_add(1);
  if (quote) {
    // What this request saved: the prefill it did not run, less what the load cost.
    const int64_t saved = quote->fresh_prefill_cost.micros() - plan.kv_usage["price"]["micros"].get<int64_t>();
    plan.kv_usage["cost_saved"] = MoneyJson(market::Money(saved, quote->fresh_prefill_cost.currency()));
  }
  plan.kv_usage["tokens_reused"] = reused;
  plan.kv_usage["tokens_prefilled"] = plan.prompt.size() - reused;
  return plan;
}

}  // namespace kvmart::server
