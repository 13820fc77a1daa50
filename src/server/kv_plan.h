// Internal: resolving a request's `kv` extension into "which artifact, which
// prompt tokens", metering the load with the market BEFORE the store is
// touched, and importing the artifact's blocks into a session.
#pragma once

#include <optional>
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

// Parses body["kv"]; Mode::kNone when absent.
StatusOr<KvRequest> ParseKvRequest(const json& body);

// The outcome: the full prompt, and what part of it is loaded from an artifact.
struct KvPlan {
  std::vector<int32_t> prompt;  // every prompt token, reused ones included
  size_t reused = 0;            // leading tokens imported from the artifact
  json kv_usage;                // null when no kv was requested
};

// Resolves the prompt and, for kv requests, meters the load and imports the
// artifact's KV into `session` (which must be empty). On a failed import the
// load is refunded, the session is replaced by an empty one and the whole
// prompt is prefilled instead (kv_usage says so). Errors are the HTTP answer.
StatusOr<KvPlan> PlanAndLoad(Context& ctx, const std::string& api_key, const PromptSpec& spec,
                             const KvRequest& kv, std::unique_ptr<Session>* session);

// The full prompt tokens of `spec` without any artifact.
StatusOr<std::vector<int32_t>> PromptTokens(Context& ctx, const PromptSpec& spec);

}  // namespace kvmart::server
