// One completion on one engine session: prefill the prompt tokens that are not
// yet in the session (in chunks, so other sessions interleave and a departed
// client is noticed), then decode until max_tokens, an end-of-turn token or a
// stop string. Text is produced incrementally for streaming, holding back any
// tail that might still become a stop string.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

namespace kvmart::server {

struct GenerateParams {
  size_t max_tokens = 256;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  std::vector<int32_t> eos_ids;   // end-of-turn tokens (not included either)
  bool debug = false;             // record SHA-256 of the logits before each step
  size_t prefill_chunk = 256;
  // Runs once the prompt is prefilled, before the first decoded token (the
  // prefix cache keeps the prompt's KV here). Not run when cancelled.
  std::function<void(Session&)> on_prefilled;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (an end-of-turn token is not kept)
  std::string text;
  std::string finish_reason;    // "stop" | "length"
  std::vector<std::string> logits_sha256;  // debug: one per generated position
  size_t prefilled = 0;
  double ttft_seconds = 0;      // from the call to the first decoded token
  std::vector<double> inter_token_seconds;  // between consecutive decoded tokens
  bool cancelled = false;       // the client went away; the result is partial
};

// `on_text` receives each final piece of text; returning false cancels (the
// stream is gone). `cancelled` is polled between prefill chunks and tokens.
StatusOr<GenerateResult> Generate(Session& session, const tokenizer::Tokenizer& tok,
                                  std::span<const int32_t> prefill, const GenerateParams& params,
                                  const std::function<bool(const std::string&)>& on_text,
                                  const std::function<bool()>& cancelled);

}  // namespace kvmart::server
