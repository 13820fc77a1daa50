// OpenAI-compatible inference: POST /v1/chat/completions, POST /v1/completions
// (streamed as server-sent events or not), GET /v1/models, with the kvmart `kv`
// extension (docs/API.md).
#include <chrono>
#include <ctime>
#include <random>

#include <httplib.h>

#include "server/connection_watch.h"
#include "server/context.h"
#include "server/generation.h"
#include "server/kv_plan.h"
#include "server/x402.h"

namespace kvmart::server {
namespace {

struct CompletionRequest {
  bool chat = false;
  PromptSpec prompt;
  KvRequest kv;
  GenerateParams gen;
  bool stream = false;
  bool include_usage = false;
  bool debug = false;
};

StatusOr<CompletionRequest> ParseRequest(Context& ctx, const json& body, bool chat) {
  CompletionRequest r;
  r.chat = chat;
  r.prompt.chat = chat;
  KVMART_ASSIGN_OR_RETURN(auto model, OptString(body, "model"));
  (void)model;  // any model name is served by the one loaded model (docs/API.md)
  if (chat) {
    auto it = body.find("messages");
    if (it == body.end() || !it->is_array() || it->empty()) {
      return Status::InvalidArgument("'messages' must be a non-empty array");
    }
    auto msgs = tokenizer::ChatMessagesFromJson(it->dump());
    if (!msgs.ok()) return Status::InvalidArgument("'messages': " + msgs.status().message());
    r.prompt.messages = std::move(msgs).value();
    r.prompt.chat_options.add_generation_prompt = true;
    KVMART_ASSIGN_OR_RETURN(auto thinking, OptBool(body, "enable_thinking"));
    r.prompt.chat_options.enable_thinking = thinking;
  } else {
    auto it = body.find("prompt");
    if (it == body.end()) return Status::InvalidArgument("'prompt' is required");
    if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
      KVMART_ASSIGN_OR_RETURN(r.prompt.tokens, ctx.parts.tokenizer->Encode((*it)[0].get<std::string>()));
    } else if (it->is_string()) {
      KVMART_ASSIGN_OR_RETURN(r.prompt.tokens, ctx.parts.tokenizer->Encode(it->get<std::string>()));
    } else if (it->is_array()) {
      const int64_t vocab = ctx.parts.engine->model().config().vocab_size;
      for (const auto& v : *it) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab) {
          return Status::InvalidArgument("'prompt' must be a string or an array of token ids in [0, " +
                                         std::to_string(vocab) + ")");
        }
        r.prompt.tokens.push_back(static_cast<int32_t>(v.get<int64_t>()));
      }
    } else {
      return Status::InvalidArgument("'prompt' must be a string or an array of token ids");
    }
  }
  KVMART_ASSIGN_OR_RETURN(auto n, OptInt(body, "n", 1, 1));
  (void)n;
  const int64_t limit = static_cast<int64_t>(ctx.options.max_tokens_limit);
  KVMART_ASSIGN_OR_RETURN(auto max_tokens, OptInt(body, "max_tokens", 0, limit));
  KVMART_ASSIGN_OR_RETURN(auto max_completion, OptInt(body, "max_completion_tokens", 0, limit));
  r.gen.max_tokens = static_cast<size_t>(
      max_completion.value_or(max_tokens.value_or(static_cast<int64_t>(ctx.options.default_max_tokens))));
  KVMART_ASSIGN_OR_RETURN(auto temperature, OptNumber(body, "temperature", 0, 2));
  KVMART_ASSIGN_OR_RETURN(auto top_p, OptNumber(body, "top_p", 0, 1));
  KVMART_ASSIGN_OR_RETURN(auto top_k, OptInt(body, "top_k", 0, 1 << 20));
  KVMART_ASSIGN_OR_RETURN(auto seed, OptInt(body, "seed", INT64_MIN, INT64_MAX));
  // OpenAI's default temperature is 1: sampled unless the client asks for 0.
  r.gen.sampling.temperature = static_cast<float>(temperature.value_or(1.0));
  r.gen.sampling.top_p = static_cast<float>(top_p.value_or(1.0));
  if (r.gen.sampling.top_p <= 0.0f) return Status::InvalidArgument("'top_p' must be in (0, 1]");
  r.gen.sampling.top_k = static_cast<uint32_t>(top_k.value_or(0));
  if (seed) {
    r.gen.sampling.seed = static_cast<uint64_t>(*seed);
  } else {
    r.gen.sampling.seed = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
  }
  if (auto it = body.find("stop"); it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      r.gen.stop.push_back(it->get<std::string>());
    } else if (it->is_array() && it->size() <= 4) {
      for (const auto& s : *it) {
        if (!s.is_string()) return Status::InvalidArgument("'stop' must be a string or an array of up to 4 strings");
        r.gen.stop.push_back(s.get<std::string>());
      }
    } else {
      return Status::InvalidArgument("'stop' must be a string or an array of up to 4 strings");
    }
    for (const auto& s : r.gen.stop) {
      if (s.empty()) return Status::InvalidArgument("'stop' strings must not be empty");
    }
  }
  KVMART_ASSIGN_OR_RETURN(auto stream, OptBool(body, "stream"));
  r.stream = stream.value_or(false);
  if (auto it = body.find("stream_options"); it != body.end() && !it->is_null()) {
    if (!it->is_object()) return Status::InvalidArgument("'stream_options' must be an object");
    KVMART_ASSIGN_OR_RETURN(auto iu, OptBool(*it, "include_usage"));
    r.include_usage = iu.value_or(false);
  }
  KVMART_ASSIGN_OR_RETURN(auto debug, OptBool(body, "kvmart_debug"));
  r.debug = debug.value_or(false);
  r.gen.debug = r.debug;
  KVMART_ASSIGN_OR_RETURN(r.kv, ParseKvRequest(body));
  r.gen.eos_ids = ctx.eos_ids;
  r.gen.prefill_chunk = ctx.options.prefill_chunk;
  return r;
}

json Usage(const KvPlan& plan, const GenerateResult& g) {
  return {{"prompt_tokens", plan.prompt.size()},
          {"completion_tokens", g.tokens.size()},
          {"total_tokens", plan.prompt.size() + g.tokens.size()},
          {"prompt_tokens_details", {{"cached_tokens", plan.reused}}}};
}

json Debug(const KvPlan& plan, const GenerateResult& g) {
  return {{"prompt_token_ids", plan.prompt},
          {"completion_token_ids", g.tokens},
          {"logits_sha256", g.logits_sha256},
          {"tokens_reused", plan.reused},
          {"ttft_seconds", g.ttft_seconds}};
}

// Everything a request needs once admitted: kept alive by the streaming
// provider, which runs after the handler has returned.
struct Job {
  Context* ctx;
  CompletionRequest req;
  Admission::Slot slot;
  std::unique_ptr<Session> session;
  KvPlan plan;
  ConnectionWatch watch;
  std::string id;
  int64_t created;
  std::string api_key;
  json payment_response = nullptr;  // set for a load paid with PAYMENT-SIGNATURE
};

// A load was reserved but the answer failed: void it (no charge, no receipt).
void VoidIfReserved(Context& ctx, Job& job, const std::string& why) {
  if (job.plan.hold.Void(why)) ctx.metrics.kv_load_failures.fetch_add(1);
}

void Account(Context& ctx, const Job& job, const GenerateResult& g) {
  ctx.metrics.tokens_prefilled.fetch_add(g.prefilled);
  ctx.metrics.tokens_reused.fetch_add(job.plan.reused);
  ctx.metrics.tokens_generated.fetch_add(g.tokens.size());
  if (!g.tokens.empty() || g.finish_reason == "stop") ctx.metrics.Ttft(g.ttft_seconds, job.plan.reused > 0);
  for (double s : g.inter_token_seconds) ctx.metrics.InterToken(s);
  if (g.cancelled) {
    ctx.metrics.disconnects.fetch_add(1);
    ctx.log.Write("info", "client went away; generation stopped",
                  {{"id", job.id}, {"generated", g.tokens.size()}});
  }
}

json Chunk(const Job& job, const json& choice) {
  const bool chat = job.req.chat;
  return {{"id", job.id},
          {"object", chat ? "chat.completion.chunk" : "text_completion"},
          {"created", job.created},
          {"model", job.ctx->options.model_id},
          {"choices", json::array({choice})}};
}

json DeltaChoice(const Job& job, const std::string& text, const json& finish) {
  if (job.req.chat) return {{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", finish}};
  return {{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish}};
}

bool SendEvent(httplib::DataSink& sink, const json& j) {
  const std::string line = "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
  return sink.write(line.data(), line.size());
}

// Returns false when the stream ended early (client gone): httplib then stops.
bool RunStream(const std::shared_ptr<Job>& job, httplib::DataSink& sink) {
  Context& ctx = *job->ctx;
  if (job->req.chat) {
    json first = Chunk(*job, {{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"finish_reason", nullptr}});
    if (!SendEvent(sink, first)) return false;
  }
  const std::span<const int32_t> rest(job->plan.prompt.data() + job->plan.reused,
                                      job->plan.prompt.size() - job->plan.reused);
  auto g = Generate(*job->session, *ctx.parts.tokenizer, rest, job->req.gen,
                    [&](const std::string& t) { return SendEvent(sink, Chunk(*job, DeltaChoice(*job, t, nullptr))); },
                    [&] { return job->watch.PeerClosed(); });
  if (!g.ok()) {
    VoidIfReserved(ctx, *job, g.status().ToString());
    const HttpStatus h = HttpStatusFor(g.status());
    SendEvent(sink, {{"error", {{"type", h.type}, {"message", g.status().message()}, {"code", h.code}}}});
  } else {
    Account(ctx, *job, *g);
    if (g->cancelled) {
      VoidIfReserved(ctx, *job, "client went away");
      return false;
    }
    // The whole answer has been streamed: post the load, then send its receipt.
    PostPlanLoad(ctx, job->plan);
    json last = Chunk(*job, DeltaChoice(*job, "", g->finish_reason));
    if (job->req.chat) last["choices"][0]["delta"] = json::object();
    if (!job->plan.kv_usage.is_null()) last["kv_usage"] = job->plan.kv_usage;
    if (job->req.debug) last["kvmart_debug"] = Debug(job->plan, *g);
    if (!SendEvent(sink, last)) return false;
    if (job->req.include_usage) {
      json u = Chunk(*job, json::object());
      u["choices"] = json::array();
      u["usage"] = Usage(job->plan, *g);
      if (!SendEvent(sink, u)) return false;
    }
  }
  const std::string done = "data: [DONE]\n\n";
  sink.write(done.data(), done.size());
  job->session.reset();  // free the KV cache before the slot goes
  job->slot.Release();
  sink.done();
  return true;
}

// 402 with a fresh quote for one load of a listed artifact; `fallback` for an
// artifact that is not listed (the same answer as before payments existed).
void SendPaymentRequired(Context& ctx, httplib::Response& res, const std::string& artifact_id,
                         const std::string& message, const Status& fallback) {
  auto q = ctx.parts.market->IssuePaymentQuote(artifact_id);
  if (!q.ok()) return SendStatus(res, fallback);
  res.set_header("PAYMENT-REQUIRED", PaymentRequiredHeader(*q, ctx.parts.market->ProviderPublicKey(), message));
  SendError(res, 402, "payment_required", message);
}

void HandleCompletion(Context& ctx, bool chat, const httplib::Request& hreq, httplib::Response& res) {
  const std::string api_key = ApiKey(hreq);
  const std::string payment = hreq.get_header_value("PAYMENT-SIGNATURE");
  std::optional<std::pair<market::AccountId, uint32_t>> who;
  if (!api_key.empty()) {
    auto w = Authenticate(ctx, hreq);
    if (!w.ok()) return SendStatus(res, w.status());
    who = *w;
  }
  auto body = ParseJsonObject(hreq);
  auto parsed = body.ok() ? ParseRequest(ctx, *body, chat) : StatusOr<CompletionRequest>(body.status());
  // Pay-per-load (HTTP 402, x402 v2 headers): without a key the only thing on
  // offer is one paid load of a listed artifact. Anything else keyless gets
  // the same 401 as ever, before the body counts for anything.
  const bool paid_kv = parsed.ok() && parsed->kv.mode == KvRequest::Mode::kArtifact;
  if (!who && !(paid_kv)) return SendStatus(res, Authenticate(ctx, hreq).status());
  if (!parsed.ok()) return SendStatus(res, parsed.status());
  std::optional<PrepaidHold> prepaid;
  json payment_response;
  if (paid_kv && (!who || !payment.empty())) {
    const std::string& artifact = parsed->kv.artifact_id;
    const Status unauth = who ? Status::PermissionDenied("no usable entitlement for artifact " + artifact)
                              : Authenticate(ctx, hreq).status();
    if (payment.empty()) {
      // Given for any listed artifact, before any store lookup: the quote says
      // nothing about whether the provider holds the KV.
      return SendPaymentRequired(ctx, res, artifact, "payment required: one load of " + artifact, unauth);
    }
    auto auth = PaymentFromHeader(payment);
    if (auth.ok() && auth->artifact_id != artifact) {
      auth = Status::InvalidArgument("payment: the authorization is for " + auth->artifact_id + ", not " + artifact);
    }
    StatusOr<market::PaidLoad> paid = auth.ok() ? ctx.parts.market->PayAndReserve(*auth) : StatusOr<market::PaidLoad>(auth.status());
    if (!paid.ok()) return SendPaymentRequired(ctx, res, artifact, paid.status().message(), unauth);
    if (who && who->first != paid->account) {
      (void)ctx.parts.market->VoidPaidLoad(paid->account, paid->hold.load, "payer is not the API key's account");
      return SendStatus(res, Status::PermissionDenied("the payment key belongs to another account than the API key"));
    }
    KeepReceipt(ctx, paid->purchase.receipt, "purchase");
    prepaid.emplace();
    prepaid->hold = LoadHold(ctx.parts.market.get(), "", paid->account, paid->hold.load);
    prepaid->reservation = paid->hold;
    prepaid->purchase_receipt = paid->purchase.receipt;
    payment_response = {{"success", true}, {"scheme", std::string(market::kPaymentScheme)},
                        {"payer", auth->payer_public_key}, {"account_id", paid->account}, {"load", paid->hold.load}};
  }

  auto job = std::make_shared<Job>(Job{&ctx, std::move(parsed).value(), {}, nullptr, {}, ConnectionWatch(hreq),
                                       (chat ? "chatcmpl-" : "cmpl-") + RandomHex(12),
                                       static_cast<int64_t>(std::time(nullptr)), api_key});
  const auto queued = std::chrono::steady_clock::now();
  auto slot = ctx.admission.Acquire([job] { return job->watch.PeerClosed(); });
  ctx.metrics.QueueWait(std::chrono::duration<double>(std::chrono::steady_clock::now() - queued).count());
  if (!slot.ok()) return SendAdmissionRefusal(ctx, res, slot.status());
  job->slot = std::move(slot).value();
  job->session = ctx.parts.engine->NewSession();
  auto plan = PlanAndLoad(ctx, api_key, who ? who->first : 0, job->req.prompt, job->req.kv, &job->session,
                          prepaid ? &*prepaid : nullptr);
  if (!plan.ok()) {
    // An authenticated caller without an entitlement may pay in the request.
    if (plan.status().code() == Status::Code::kPermissionDenied && job->req.kv.mode == KvRequest::Mode::kArtifact) {
      return SendPaymentRequired(ctx, res, job->req.kv.artifact_id, plan.status().message(), plan.status());
    }
    return SendStatus(res, plan.status());
  }
  job->payment_response = std::move(payment_response);
  job->plan = std::move(plan).value();
  job->req.gen.on_prefilled = [&ctx, j = job.get()](Session& s) { KeepPrompt(ctx, j->plan, s); };
  if (job->plan.prompt.empty()) return SendError(res, 400, "invalid_request_error", "the prompt is empty");
  if (job->plan.prompt.size() >= ctx.parts.engine->max_context()) {
    return SendError(res, 400, "invalid_request_error",
                     "prompt of " + std::to_string(job->plan.prompt.size()) + " tokens leaves no room in the context of " +
                         std::to_string(ctx.parts.engine->max_context()));
  }

  if (job->req.stream) {
    res.status = 200;
    // Headers go out before the stream: the settlement (load receipt) comes
    // in the last chunk's kv_usage.
    if (!job->payment_response.is_null()) {
      json pr = job->payment_response;
      pr["status"] = "reserved";
      res.set_header("PAYMENT-RESPONSE", PaymentResponseHeader(pr));
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [job](size_t, httplib::DataSink& sink) {
      return RunStream(job, sink);
    });
    return;
  }
  const std::span<const int32_t> rest(job->plan.prompt.data() + job->plan.reused,
                                      job->plan.prompt.size() - job->plan.reused);
  auto g = Generate(*job->session, *ctx.parts.tokenizer, rest, job->req.gen, nullptr,
                    [&] { return job->watch.PeerClosed(); });
  if (!g.ok()) {
    VoidIfReserved(ctx, *job, g.status().ToString());
    return SendStatus(res, g.status());
  }
  Account(ctx, *job, *g);
  if (g->cancelled) {
    VoidIfReserved(ctx, *job, "client went away");
    return SendError(res, 499, "client_closed_request", "client closed the connection");
  }
  // The answer is complete: post the load (the charge) and put its receipt in it.
  PostPlanLoad(ctx, job->plan);
  if (!job->payment_response.is_null()) {
    json pr = job->payment_response;
    const json& ku = job->plan.kv_usage;
    pr["success"] = ku.contains("receipt");
    if (ku.contains("receipt")) {
      pr["transaction"] = ku["receipt"]["receipt_id"];
      pr["receipt"] = ku["receipt"];
    } else {
      pr["error"] = ku.value("error", ku.value("post_error", std::string("the load was not charged")));
    }
    res.set_header("PAYMENT-RESPONSE", PaymentResponseHeader(pr));
  }
  json choice = chat ? json{{"index", 0},
                            {"message", {{"role", "assistant"}, {"content", g->text}}},
                            {"logprobs", nullptr},
                            {"finish_reason", g->finish_reason}}
                     : json{{"index", 0}, {"text", g->text}, {"logprobs", nullptr}, {"finish_reason", g->finish_reason}};
  json out = {{"id", job->id},
              {"object", chat ? "chat.completion" : "text_completion"},
              {"created", job->created},
              {"model", ctx.options.model_id},
              {"choices", json::array({choice})},
              {"usage", Usage(job->plan, *g)}};
  if (!job->plan.kv_usage.is_null()) out["kv_usage"] = job->plan.kv_usage;
  if (job->req.debug) out["kvmart_debug"] = Debug(job->plan, *g);
  SendJson(res, out);
}

}  // namespace

void AddInferenceRoutes(httplib::Server& http, Context& ctx) {
  AddRoute(http, ctx, "POST", "/v1/chat/completions", "/v1/chat/completions",
           [&ctx](const httplib::Request& req, httplib::Response& res) { HandleCompletion(ctx, true, req, res); });
  AddRoute(http, ctx, "POST", "/v1/completions", "/v1/completions",
           [&ctx](const httplib::Request& req, httplib::Response& res) { HandleCompletion(ctx, false, req, res); });
  AddRoute(http, ctx, "GET", "/v1/models", "/v1/models", [&ctx](const httplib::Request&, httplib::Response& res) {
    const auto& c = ctx.parts.engine->model().config();
    SendJson(res, {{"object", "list"},
                   {"data", json::array({{{"id", ctx.options.model_id},
                                          {"object", "model"},
                                          {"created", 0},
                                          {"owned_by", "kvmart"},
                                          {"context_length", ctx.parts.engine->max_context()},
                                          {"vocab_size", c.vocab_size},
                                          {"profile_digest", ctx.profile_digest_hex}}})}});
  });
}

}  // namespace kvmart::server
