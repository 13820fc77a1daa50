#include "server/generation.h"

#include <algorithm>
#include <chrono>

#include "base/sha256.h"

namespace kvmart::server {
namespace {

// Length of the longest suffix of `text` that is a proper prefix of some stop
// string: those bytes may not be emitted yet.
size_t HeldBack(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops) {
    for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n) {
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  return hold;
}

}  // namespace

StatusOr<GenerateResult> Generate(Session& session, const tokenizer::Tokenizer& tok,
                                  std::span<const int32_t> prefill, const GenerateParams& params,
                                  const std::function<bool(const std::string&)>& on_text,
                                  const std::function<bool()>& cancelled) {
  GenerateResult r;
  const auto t0 = std::chrono::steady_clock::now();
  const size_t chunk = params.prefill_chunk == 0 ? prefill.size() : params.prefill_chunk;
  for (size_t i = 0; i < prefill.size(); i += chunk) {
    if (cancelled && cancelled()) {
      r.cancelled = true;
      return r;
    }
    const size_t n = std::min(chunk, prefill.size() - i);
    KVMART_RETURN_IF_ERROR(session.Prefill(prefill.subspan(i, n)));
    r.prefilled += n;
  }
  if (params.on_prefilled) params.on_prefilled(session);
  const size_t max_context = session.engine().max_context();
  auto last_token = t0;
  tokenizer::StreamDecoder decoder(tok, /*skip_special_tokens=*/false);
  size_t emitted = 0;
  r.finish_reason = "length";
  auto emit = [&](size_t upto) -> bool {
    if (upto <= emitted) return true;
    std::string piece = r.text.substr(emitted, upto - emitted);
    emitted = upto;
    return !on_text || on_text(piece);
  };
  for (size_t step = 0; step < params.max_tokens; ++step) {
    if (cancelled && cancelled()) {
      r.cancelled = true;
      return r;
    }
    // The previous token runs only now that another one is wanted: the last
    // token of an answer is never run (its logits would go unused), which
    // saves a forward pass per answer and one from every time to first token.
    if (step > 0) KVMART_RETURN_IF_ERROR(session.Prefill(std::span<const int32_t>(&r.tokens.back(), 1)));
    if (session.size() >= max_context) break;  // no position left for a token: "length"
    if (params.debug) {
      KVMART_ASSIGN_OR_RETURN(auto logits, session.logits());
      r.logits_sha256.push_back(ToHex(Sha256Of(std::string_view(reinterpret_cast<const char*>(logits.data()),
                                                                logits.size() * sizeof(float)))));
    }
    KVMART_ASSIGN_OR_RETURN(int32_t id, session.Sample(params.sampling));
    const auto now = std::chrono::steady_clock::now();
    if (step == 0) {
      r.ttft_seconds = std::chrono::duration<double>(now - t0).count();
    } else {
      r.inter_token_seconds.push_back(std::chrono::duration<double>(now - last_token).count());
    }
    last_token = now;
    if (std::find(params.eos_ids.begin(), params.eos_ids.end(), id) != params.eos_ids.end()) {
      r.finish_reason = "stop";
      break;
    }
    r.tokens.push_back(id);
    KVMART_ASSIGN_OR_RETURN(std::string piece, decoder.Push(id));
    const size_t search_from = r.text.size();
    r.text += piece;
    bool stopped = false;
    for (const auto& s : params.stop) {
      const size_t from = search_from >= s.size() ? search_from - s.size() + 1 : 0;
      const size_t pos = r.text.find(s, from);
      if (pos != std::string::npos) {
        r.text.resize(pos);
        stopped = true;
      }
    }
    if (stopped) {
      r.finish_reason = "stop";
      if (!emit(r.text.size())) r.cancelled = true;
      return r;
    }
    if (!emit(r.text.size() - HeldBack(r.text, params.stop))) {
      r.cancelled = true;
      return r;
    }
  }
  r.text += decoder.Finish();
  if (!emit(r.text.size())) r.cancelled = true;
  return r;
}

}  // namespace kvmart::server
