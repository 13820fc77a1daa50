// Internal: resolving a request's `kv` extension into "which artifact, which
// prompt tokens", metering the load with the market BEFORE the store is
// touched, and importing the artifact's blocks into a session.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "server/context.h"
#include "tokenizer/chat_template.h"

namespace kvmart::server {

// How the request's prompt is given: chat messages or completion tokens.
struct PromptSpec {
  bool chat = false;
  std::vector<tokenizer::ChatMessage> messages;  // chat
  tokenizer::ChatOptions chat_options;            // chat (add_generation_prompt = true)
  std::vector<int32_t> tokens;                    // completions: the prompt's ids
};

struct KvRequest {
  enum class Mode { kNone, kArtifact, kAuto } mode = Mode::kNone;
  std::string artifact_id;
  std::optional<market::Money> max_price;  // auto: per-load budget (nullopt = any)
};

// One reserved load (two-phase: market::Market::ReserveLoad), resolved exactly
// once: Post() when the buyer has its answer, Void() when anything failed. A
// hold that goes out of scope unresolved (an error path, a client that went
// away, an exception) is voided, so no code path can charge a failed load or
// leave a hold behind; the market's sweeper covers a crashed process.
class LoadHold {
 public:
  LoadHold() = default;
  // api_key empty: a load paid over HTTP 402, resolved for `paid_account`.
  LoadHold(market::Market* market, std::string api_key, market::AccountId paid_account, int64_t load)
      : market_(market), api_key_(std::move(api_key)), paid_account_(paid_account), load_(load) {}
  LoadHold(LoadHold&& o) noexcept { *this = std::move(o); }
  LoadHold& operator=(LoadHold&& o) noexcept;
  LoadHold(const LoadHold&) = delete;
  LoadHold& operator=(const LoadHold&) = delete;
  ~LoadHold() { Void("the request ended before the answer was delivered"); }

  bool armed() const { return market_ != nullptr; }
  int64_t load() const { return load_; }
  // Charges the reserved price and returns the signed load receipt.
  StatusOr<market::LoadResult> Post();
  // Releases the hold (no charge, no receipt); returns whether one was released.
  bool Void(std::string_view reason);

 private:
  market::Market* market_ = nullptr;
  std::string api_key_;
  market::AccountId paid_account_ = 0;
  int64_t load_ = 0;
};

// Parses body["kv"]; Mode::kNone when absent.
StatusOr<KvRequest> ParseKvRequest(const json& body);

// The outcome: the full prompt, and what part of it is loaded from an artifact.
struct KvPlan {
  std::vector<int32_t> prompt;  // every prompt token, reused ones included
  size_t reused = 0;            // leading tokens imported from the artifact or attached from the prefix cache
  // Plain request: keep the prompt's KV for this account once prefilled (0: don't).
  market::AccountId keep_prompt_for = 0;
  json kv_usage;                // null when no kv was requested
  LoadHold hold;                // the reserved load, until the answer is out
  // The artifact whose reservation took the last load of its entitlement:
  // whether anyone else may still load it is read from the market once the
  // answer is out (PostPlanLoad), not before the first token.
  std::string recheck_entitlement;
};

// A load paid in the request itself (HTTP 402, x402 "kvmart-ledger"): the
// market has bought and reserved it; PlanAndLoad uses this hold instead of
// reserving one with the API key.
struct PrepaidHold {
  LoadHold hold;  // moved into the plan
  market::LoadHold reservation;  // what the market reserved (the entitlement it left)
  std::string purchase_receipt;
};

// Resolves the prompt and, for kv requests, meters the load and imports the
// artifact's KV into `session` (which must be empty). On a failed import the
// load is refunded, the session is replaced by an empty one and the whole
// prompt is prefilled instead (kv_usage says so). A plain request of
// `account` (0: none) attaches the longest prompt prefix the prefix cache
// keeps for that account, or asks for its prompt to be kept
// (KvPlan::keep_prompt_for, KeepPrompt). Errors are the HTTP answer.
StatusOr<KvPlan> PlanAndLoad(Context& ctx, const std::string& api_key, market::AccountId account,
                             const PromptSpec& spec, const KvRequest& kv, std::unique_ptr<Session>* session,
                             PrepaidHold* prepaid = nullptr);

// Called once the prompt is prefilled: keeps it in the prefix cache when the
// plan asked for that.
void KeepPrompt(Context& ctx, const KvPlan& plan, Session& session);

// Posts the plan's hold (the answer is complete) and records the load
// receipt in kv_usage; a failure to post is logged and reported in kv_usage,
// and the buyer is not charged. Then re-reads the entitlement of
// plan.recheck_entitlement, if any.
void PostPlanLoad(Context& ctx, KvPlan& plan);

// Asks the market which of `ids` anyone holds a live entitlement to and tells
// the resident map (server/resident_kv.h says why it is told, not asked). A
// failure is logged and leaves the map as it was: the flag only orders
// evictions. Called for one artifact whose known entitlement was just used
// up, and for every resident one on the market scheduler's interval.
void RefreshResidentEntitlements(Context& ctx, std::span<const std::string> ids);
// After a load of `artifact_id` reserved as `drawn`: marks the resident copy
// entitled when the buyer's entitlement has loads left; returns false when
// this load was its last (the caller then refreshes, off the hot path).
bool NoteEntitlement(Context& ctx, const std::string& artifact_id, const market::LoadHold& drawn);

// The full prompt tokens of `spec` without any artifact.
StatusOr<std::vector<int32_t>> PromptTokens(Context& ctx, const PromptSpec& spec);

}  // namespace kvmart::server
