#include "server/server.h"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <iostream>
#include <thread>

#include "server/market_scheduler.h"

#include "engine/artifact_io.h"
#include "server/context.h"
#include "server/kv_plan.h"

namespace kvmart::server {

namespace {
// A quarter of the machine's memory.
uint64_t DefaultResidentBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) / 4 : uint64_t{1} << 30;
}
}  // namespace

Context::Context(const ServerOptions& o, ServerParts p)
    : options(o),
      parts(std::move(p)),
      resident(o.resident_kv_bytes != 0 ? o.resident_kv_bytes : DefaultResidentBytes()),
      prefix_cache(o.prefix_cache_bytes >= 0 ? static_cast<uint64_t>(o.prefix_cache_bytes) : DefaultResidentBytes() / 4),
      admission(o.max_sessions, o.max_queue, &metrics),
      log(&std::cerr) {
  if (o.rate_limit_per_s > 0) {
    rate_limiter.emplace(o.rate_limit_per_s, o.rate_limit_burst > 0 ? o.rate_limit_burst : 2 * o.rate_limit_per_s);
  }
  // Under KV-page pressure, cached plain prompts give their pages back first,
  // then resident artifacts (those were paid for), in ResidentKv's order:
  // unentitled, then entitled, then pinned.
  parts.engine->SetKvReclaimer([this] { return prefix_cache.EvictOldest() || resident.EvictOldest(); });
  profile = ArtifactProfile(parts.engine->model());
  profile_digest = artifact::ProfileDigest(profile);
  profile_digest_hex = ToHex(profile_digest);
  for (const char* t : {"<|im_end|>", "<|endoftext|>"}) {
    if (auto id = parts.tokenizer->TokenToId(t)) eos_ids.push_back(*id);
  }
}

void AddRoute(httplib::Server& http, Context& ctx, const std::string& method, const std::string& pattern,
              const std::string& route, Handler handler) {
  auto wrapped = [&ctx, route, handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    const auto t0 = std::chrono::steady_clock::now();
    // Before any work, the market's included: a caller over its rate costs
    // nothing. Probes of health, readiness and metrics are never limited.
    std::optional<double> wait;
    if (ctx.rate_limiter && route != "/healthz" && route != "/readyz" && route != "/metrics") {
      const std::string key = ApiKey(req);
      wait = ctx.rate_limiter->Admit(key.empty() ? "addr:" + req.remote_addr : "key:" + ToHex(Sha256Of(key)));
    }
    try {
      if (wait) {
        ctx.metrics.rate_limited.fetch_add(1);
        res.set_header("Retry-After", std::to_string(static_cast<int64_t>(std::ceil(*wait))));
        SendError(res, 429, "rate_limit_error", "too many requests for this API key; retry after the Retry-After seconds");
      } else {
        handler(req, res);
      }
    } catch (const std::exception& e) {
      SendError(res, 500, "server_error", std::string("internal error: ") + e.what());
    }
    if (res.status == -1) res.status = 200;  // httplib's default, applied after the handler
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ctx.metrics.Request(route, res.status, secs);
    ctx.log.Write("info", "request",
                  {{"method", req.method}, {"path", req.path}, {"route", route}, {"status", res.status},
                   {"ms", secs * 1000}, {"remote", req.remote_addr}});
  };
  if (method == "GET") http.Get(pattern, wrapped);
  else if (method == "POST") http.Post(pattern, wrapped);
  else if (method == "DELETE") http.Delete(pattern, wrapped);
  else if (method == "PUT") http.Put(pattern, wrapped);
}

StatusOr<std::pair<market::AccountId, uint32_t>> Authenticate(Context& ctx, const httplib::Request& req) {
  const std::string key = ApiKey(req);
  if (key.empty()) return Status::Unauthenticated("missing API key (Authorization: Bearer kvm_...)");
  auto who = ctx.parts.market->Authenticate(key);
  if (!who.ok() && who.status().code() == Status::Code::kUnauthenticated) {
    // One message for unknown, malformed and revoked keys.
    return Status::Unauthenticated("invalid API key");
  }
  return who;
}

StatusOr<VisibleArtifacts> ArtifactsVisibleTo(Context& ctx, const std::string& api_key, market::AccountId account,
                                              uint32_t scopes) {
  VisibleArtifacts v;
  v.everything = (scopes & market::kScopeAdmin) != 0;
  KVMART_ASSIGN_OR_RETURN(auto listings, ctx.parts.market->VisibleListings(api_key));
  for (auto& l : listings) {
    std::string id = l.spec.artifact_id;
    v.ids.emplace(std::move(id), std::move(l));
  }
  KVMART_ASSIGN_OR_RETURN(auto ents, ctx.parts.market->Entitlements(api_key, account));
  for (const auto& e : ents) v.ids.try_emplace(e.artifact_id, std::nullopt);
  return v;
}

void SendAdmissionRefusal(Context& ctx, httplib::Response& res, const Status& refused) {
  if (refused.code() == Status::Code::kResourceExhausted) {
    ctx.metrics.rejected_429.fetch_add(1);
    res.set_header("Retry-After", std::to_string(ctx.admission.RetryAfterSeconds()));
  }
  SendStatus(res, refused);
}

void KeepReceipt(Context& ctx, const std::string& signed_json, const std::string& kind) {
  if (signed_json.empty()) return;
  ctx.metrics.Ledger(kind);
  if (Status s = ctx.parts.db->AddReceipt(signed_json); !s.ok()) {
    ctx.log.Write("warn", "receipt not kept", {{"error", s.ToString()}});
  }
}

namespace {
// cpp-httplib's per-connection request step (protected in 0.11) made
// reachable for ServeStream.
class StreamServer : public httplib::Server {
 public:
  bool ProcessRequest(httplib::Stream& stream, bool close_connection, bool& connection_closed) {
    return process_request(stream, close_connection, connection_closed, nullptr);
  }
};
}  // namespace

struct Server::Impl {
  std::unique_ptr<Context> ctx;
  std::unique_ptr<httplib::Server> http;
  std::unique_ptr<MarketScheduler> scheduler;  // while Run serves
  int port = -1;
  int listen_fd = -1;  // recorded by the socket-options hook, before bind
  std::atomic<bool> in_run{false}, stopping{false};
};

namespace {

std::string StoreMetricsText(Context& ctx) {
  const store::StoreMetrics m = ctx.parts.store->Metrics();
  std::string out;
  auto line = [&](const char* name, const char* type, const char* help, const std::string& labels, uint64_t v) {
    if (!help[0]) {
      out += std::string(name) + labels + " " + std::to_string(v) + "\n";
      return;
    }
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + labels + " " +
           std::to_string(v) + "\n";
  };
  line("kvmart_store_block_hits_total", "counter", "KV blocks served by the store, by tier.", "{tier=\"memory\"}",
       m.hits_memory);
  line("kvmart_store_block_hits_total", "", "", "{tier=\"disk\"}", m.hits_disk);
  line("kvmart_store_block_hits_total", "", "", "{tier=\"shared\"}", m.hits_shared);
  line("kvmart_store_lookup_misses_total", "counter", "Prefix lookups that matched nothing.", "", m.misses);
  line("kvmart_store_checksum_failures_total", "counter", "Blocks that failed XXH3/SHA-256/decode.", "",
       m.checksum_failures);
  line("kvmart_store_bytes_loaded_total", "counter", "Decoded KV bytes handed to the engine.", "", m.bytes_loaded);
  line("kvmart_store_memory_bytes", "gauge", "Memory-tier size.", "", m.memory_bytes);
  line("kvmart_store_disk_bytes", "gauge", "Stored bytes on disk.", "", m.disk_bytes);
  line("kvmart_store_evictions_total", "counter", "Memory-tier evictions.", "", m.evictions);
  line("kvmart_store_artifacts", "gauge", "Artifacts in the catalog.", "", m.artifacts);
  line("kvmart_store_blocks", "gauge", "Blocks in the catalog.", "", m.blocks);
  line("kvmart_store_catalog_refreshes_total", "counter",
       "Index re-reads after another node changed the shared catalog.", "", m.catalog_refreshes);
  line("kvmart_store_catalog_errors_total", "counter", "Shared-catalog checks or re-reads that failed.", "",
       m.catalog_errors);
  line("kvmart_store_shared_misses_total", "counter", "Blocks the shared tier did not hold.", "", m.shared_misses);
  line("kvmart_store_shared_rejected_total", "counter",
       "Blocks from the shared tier that failed XXH3/SHA-256 (deleted there).", "", m.shared_rejected);
  line("kvmart_store_shared_errors_total", "counter", "Shared-tier operations that failed.", "", m.shared_errors);
  line("kvmart_store_shared_commands_total", "counter", "Commands sent to the shared block tier.", "",
       m.shared_commands);
  line("kvmart_store_shared_retries_total", "counter",
       "Shared-tier commands retried after a lost connection or a failover.", "", m.shared_retries);
  line("kvmart_store_shared_redirects_total", "counter", "Cluster redirects (MOVED, ASK) followed.", "",
       m.shared_redirects);
  out += "# HELP kvmart_store_shared_command_seconds_total Time in shared-tier commands, retries included.\n"
         "# TYPE kvmart_store_shared_command_seconds_total counter\n"
         "kvmart_store_shared_command_seconds_total " +
         std::to_string(static_cast<double>(m.shared_command_micros) / 1e6) + "\n";
  return out;
}

// The market's database: transactions, retries, failures, time.
std::string MarketMetricsText(Context& ctx) {
  const market::MarketStats m = ctx.parts.market->Stats();
  const bool pg = ctx.parts.market->Backend().rfind("postgresql", 0) == 0;
  const std::string backend = std::string("{backend=\"") + (pg ? "postgresql" : "sqlite") + "\"";
  std::string out;
  auto head = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  head("kvmart_market_transactions_total", "counter", "Market database transactions, by kind (attempts).");
  out += "kvmart_market_transactions_total" + backend + ",kind=\"write\"} " + std::to_string(m.write_transactions) + "\n";
  out += "kvmart_market_transactions_total" + backend + ",kind=\"read\"} " + std::to_string(m.read_transactions) + "\n";
  head("kvmart_market_conflicts_retried_total", "counter", "Transactions run again after a busy database or a serialisation failure.");
  out += "kvmart_market_conflicts_retried_total" + backend + "} " + std::to_string(m.conflicts_retried) + "\n";
  head("kvmart_market_backend_errors_total", "counter", "Failed market transactions, by cause.");
  out += "kvmart_market_backend_errors_total" + backend + ",cause=\"unavailable\"} " + std::to_string(m.unavailable) + "\n";
  out += "kvmart_market_backend_errors_total" + backend + ",cause=\"other\"} " + std::to_string(m.backend_errors) + "\n";
  head("kvmart_market_transaction_seconds_total", "counter", "Time in market transactions (with _transactions_total: the mean).");
  char secs[64];
  std::snprintf(secs, sizeof secs, "%.6f", static_cast<double>(m.transaction_micros) / 1e6);
  out += "kvmart_market_transaction_seconds_total" + backend + "} " + secs + "\n";
  return out;
}

// Continuous batching and the KV page pool.
std::string EngineMetricsText(Context& ctx) {
  const Engine& e = *ctx.parts.engine;
  const Engine::BatchStats b = e.batch_stats();
  std::string out;
  auto one = [&](const char* name, const char* type, const char* help, uint64_t v) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
           std::to_string(v) + "\n";
  };
  one("kvmart_engine_passes_total", "counter", "Forward passes (each may carry several sessions).", b.passes);
  one("kvmart_engine_pass_tokens_total", "counter", "New tokens run through forward passes.", b.tokens);
  one("kvmart_engine_shared_prefix_sequences_total", "counter",
      "Sequences whose attention read a resident prefix once together with other sessions of their pass.",
      b.shared_prefix_sequences);
  out += "# HELP kvmart_engine_pass_sequences Sessions per forward pass.\n"
         "# TYPE kvmart_engine_pass_sequences histogram\n";
  uint64_t cumulative = 0;
  static constexpr const char* kLe[Engine::BatchStats::kBuckets] = {"1", "2", "4", "8", "16", "+Inf"};
  for (size_t i = 0; i < Engine::BatchStats::kBuckets; ++i) {
    cumulative += b.sequences_histogram[i];
    out += std::string("kvmart_engine_pass_sequences_bucket{le=\"") + kLe[i] + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += "kvmart_engine_pass_sequences_sum " + std::to_string(b.sequences) + "\n";
  out += "kvmart_engine_pass_sequences_count " + std::to_string(b.passes) + "\n";
  one("kvmart_kv_page_bytes", "gauge", "Bytes of one KV page (64 positions, all layers).", e.kv_pages().page_bytes());
  one("kvmart_kv_pages_used", "gauge", "KV pages held by sessions.", e.kv_pages().pages_in_use());
  one("kvmart_kv_pages_idle", "gauge", "KV pages kept faulted in for the next session.", e.kv_pages().idle_pages());
  const PrefixCache::Stats pc = ctx.prefix_cache.stats();
  one("kvmart_prefix_cache_entries", "gauge", "Plain prompts kept as shared prefixes (per account).", pc.entries);
  one("kvmart_prefix_cache_bytes", "gauge", "Bytes of KV those prefixes hold.", pc.bytes);
  one("kvmart_prefix_cache_hits_total", "counter", "Plain requests that attached a prefix of their own account.", pc.hits);
  one("kvmart_prefix_cache_misses_total", "counter", "Plain requests that found no prefix to attach.", pc.misses);
  one("kvmart_prefix_cache_tokens_reused_total", "counter", "Prompt tokens attached instead of prefilled.", pc.tokens_reused);
  one("kvmart_prefix_cache_evictions_total", "counter", "Cached prefixes dropped for the budget or page pressure.", pc.evictions);
  const ResidentKv::Stats r = ctx.resident.stats();
  one("kvmart_resident_artifacts", "gauge", "Artifacts whose KV is resident in shared engine pages.", r.artifacts);
  one("kvmart_resident_entitled_artifacts", "gauge",
      "Resident artifacts some buyer holds a live entitlement to (evicted after unentitled ones).", r.entitled);
  one("kvmart_resident_kv_bytes", "gauge", "Bytes of those shared pages.", r.bytes);
  one("kvmart_kv_attaches_total", "counter", "Loads served by attaching resident pages (no KV copied).", r.attaches);
  one("kvmart_resident_evictions_total", "counter", "Resident artifacts dropped for the byte budget.", r.evictions);
  out += "# HELP kvmart_kv_attach_seconds_total Time spent attaching resident pages.\n"
         "# TYPE kvmart_kv_attach_seconds_total counter\nkvmart_kv_attach_seconds_total " +
         std::to_string(r.attach_seconds) + "\n";
  return out;
}

}  // namespace

StatusOr<std::unique_ptr<Server>> Server::Create(const ServerOptions& options, ServerParts parts) {
  if (!parts.engine || !parts.tokenizer || !parts.market || !parts.store || !parts.db || !parts.signing_key) {
    return Status::InvalidArgument("server: engine, tokenizer, market, store, db and signing key are all required");
  }
  auto impl = std::make_unique<Impl>();
  impl->ctx = std::make_unique<Context>(options, std::move(parts));
  Context& ctx = *impl->ctx;
  ctx.log.set_enabled(options.log_requests);
  if (!options.tls_cert.empty() || !options.tls_key.empty()) {
    if (options.tls_cert.empty() || options.tls_key.empty()) {
      return Status::InvalidArgument("TLS needs both --tls-cert and --tls-key");
    }
    auto ssl = std::make_unique<httplib::SSLServer>(options.tls_cert.c_str(), options.tls_key.c_str());
    if (!ssl->is_valid()) return Status::InvalidArgument("cannot load TLS certificate/key");
    impl->http = std::move(ssl);
  } else {
    impl->http = std::make_unique<StreamServer>();
  }
  httplib::Server& http = *impl->http;
  // The listening socket passes through this hook on its way to bind (the
  // default options plus a note of the descriptor, so Bind can widen its
  // accept queue).
  http.set_socket_options([raw = impl.get()](socket_t sock) {
    httplib::default_socket_options(sock);
    raw->listen_fd = sock;
  });
  const size_t threads =
      options.http_threads != 0 ? options.http_threads : options.max_sessions + options.max_queue + 8;
  // httplib owns (and deletes) the queue it gets from this factory.
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(options.max_body_bytes);
  http.set_read_timeout(30);
  http.set_write_timeout(30);
  http.set_keep_alive_timeout(5);
  // httplib writes a response's headers and its body (and each streamed
  // chunk) with separate send()s. Under Nagle's algorithm the second waits for
  // the ACK of the first, which a client delays (up to 40 ms on Linux) on a
  // connection past its first exchanges: every answer on a kept-alive
  // connection took 40 ms more (kvmart-bench-probe, docs/SECURITY.md). Set on
  // the listening socket, inherited by every accepted one.
  http.set_tcp_nodelay(true);
  // HTTP/1.1 (RFC 9112 §6.3): a request with neither Content-Length nor
  // Transfer-Encoding has a body of length zero. cpp-httplib instead reads a
  // POST/PUT/PATCH/DELETE without Content-Length until the peer closes, so
  // `curl -X POST URL` would wait out the read timeout and get 400 instead of
  // reaching authentication. The handler runs before the body is read; the
  // Request is httplib's own mutable object, passed here as const only by the
  // callback's signature.
  http.set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
    if (!req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
      const_cast<httplib::Request&>(req).set_header("Content-Length", "0");
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) SendError(res, 404, "not_found_error", "no such route");
    else if (res.status == 413) SendError(res, 413, "invalid_request_error", "request body too large");
    else if (res.status == 400) SendError(res, 400, "invalid_request_error", "malformed HTTP request");
    else SendError(res, res.status, "server_error", "HTTP error");
  });
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    SendError(res, 500, "server_error", "internal error");
  });

  AddRoute(http, ctx, "GET", "/healthz", "/healthz", [](const httplib::Request&, httplib::Response& res) {
    SendJson(res, {{"status", "ok"}});
  });
  AddRoute(http, ctx, "GET", "/readyz", "/readyz", [&ctx](const httplib::Request&, httplib::Response& res) {
    // The engine is in-process; the market and the store's catalog and block
    // tier may live on servers, so each is asked (a round trip each). Not
    // ready while one cannot be reached: a balancer sends requests elsewhere.
    auto timed = [](auto&& check, double* ms) {
      const auto started = std::chrono::steady_clock::now();
      Status st = check();
      *ms = std::round(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count() *
                       1000.0) / 1000.0;
      return st;
    };
    double market_ms = 0, store_ms = 0;
    const Status market = timed([&] { return ctx.parts.market->CheckHealth(); }, &market_ms);
    const Status store = timed([&] { return ctx.parts.store->CheckHealth(); }, &store_ms);
    const bool ok = market.ok() && store.ok();
    json body{{"status", ok ? "ready" : "unavailable"},
              {"model", ctx.options.model_id},
              {"queue_depth", ctx.metrics.queue_depth.load()},
              {"active_sessions", ctx.metrics.active_sessions.load()},
              {"backends",
               {{"market", {{"backend", ctx.parts.market->Backend()}, {"ok", market.ok()}, {"ms", market_ms}}},
                {"store", {{"backend", ctx.parts.store->Backend()}, {"ok", store.ok()}, {"ms", store_ms}}}}}};
    if (!market.ok()) body["backends"]["market"]["error"] = market.ToString();
    if (!store.ok()) body["backends"]["store"]["error"] = store.ToString();
    SendJson(res, body, ok ? 200 : 503);
  });
  AddRoute(http, ctx, "GET", "/metrics", "/metrics", [&ctx](const httplib::Request&, httplib::Response& res) {
    res.set_content(ctx.metrics.Render(StoreMetricsText(ctx) + EngineMetricsText(ctx) + MarketMetricsText(ctx)), "text/plain; version=0.0.4");
  });
  AddMarketRoutes(http, ctx);
  AddArtifactRoutes(http, ctx);
  AddInferenceRoutes(http, ctx);
  AddAdminRoutes(http, ctx);
  return std::make_unique<Server>(std::move(impl));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() { Stop(); }

Status Server::Bind() {
  Context& ctx = *impl_->ctx;
  if (ctx.options.port == 0) {
    impl_->port = impl_->http->bind_to_any_port(ctx.options.host);
  } else {
    impl_->port = impl_->http->bind_to_port(ctx.options.host, ctx.options.port) ? ctx.options.port : -1;
  }
  if (impl_->port <= 0) {
    return Status::IOError("cannot listen on " + ctx.options.host + ":" + std::to_string(ctx.options.port));
  }
  // Debian's cpp-httplib is a compiled library that listens with a backlog of
  // 5 (CPPHTTPLIB_LISTEN_BACKLOG was fixed when it was built). 16 clients
  // connecting at once overflowed that accept queue: the kernel dropped their
  // handshakes and, now and then, a client's connection died unanswered
  // ("transport error: Read"). Linux lets listen() be called again on a
  // listening socket to change its backlog (capped by net.core.somaxconn).
  if (impl_->listen_fd < 0 || ::listen(impl_->listen_fd, kListenBacklog) != 0) {
    return Status::IOError("cannot widen the accept queue of " + ctx.options.host + ":" + std::to_string(impl_->port));
  }
  return Status::Ok();
}

int Server::port() const { return impl_->port; }

Status Server::Run() {
  Context& ctx = *impl_->ctx;
  if (impl_->port <= 0) KVMART_RETURN_IF_ERROR(Bind());
  impl_->in_run = true;
  if (impl_->stopping) {
    impl_->in_run = false;
    return Status::Ok();
  }
  ctx.log.Write("info", "listening",
                {{"host", ctx.options.host}, {"port", impl_->port}, {"model", ctx.options.model_id},
                 {"profile_digest", ctx.profile_digest_hex}, {"tls", !ctx.options.tls_cert.empty()}});
  if (ctx.options.market_maintenance_interval_s > 0) {
    impl_->scheduler = std::make_unique<MarketScheduler>(
        ctx.parts.market.get(), std::chrono::seconds(ctx.options.market_maintenance_interval_s),
        ctx.options.storage_billing_period_s,
        [&ctx](const char* what, const json& fields) { ctx.log.Write("info", what, fields); },
        [&ctx] { RefreshResidentEntitlements(ctx, ctx.resident.Ids()); });
  }
  // Returns after stop(): the listener is closed and the worker pool has
  // drained, i.e. every in-flight request has been answered.
  impl_->http->listen_after_bind();
  impl_->scheduler.reset();  // joins the maintenance thread before the market closes
  impl_->in_run = false;
  ctx.log.Write("info", "stopped");
  return Status::Ok();
}

void Server::Stop() {
  if (!impl_ || !impl_->http) return;
  impl_->stopping = true;
  // httplib's stop() is a no-op until listen has started: if Run is between
  // its check of `stopping` and the listen loop, wait for the loop.
  while (impl_->in_run && !impl_->http->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  impl_->http->stop();
}

Status Server::ServeStream(httplib::Stream& stream, size_t max_requests) {
  auto* plain = dynamic_cast<StreamServer*>(impl_->http.get());
  if (plain == nullptr) return Status::FailedPrecondition("ServeStream: a TLS server reads from sockets only");
  bool closed = false;
  for (size_t i = 0; i < max_requests && !closed; ++i) {
    // false: the stream ended or held no request; the answer, if any, is written.
    if (!plain->ProcessRequest(stream, i + 1 == max_requests, closed)) break;
  }
  return Status::Ok();
}

market::Market& Server::market() { return *impl_->ctx->parts.market; }
store::Store& Server::store() { return *impl_->ctx->parts.store; }

}  // namespace kvmart::server
