// The prefill-CDN server (docs/DESIGN.md §1): OpenAI-compatible inference whose prompts
// may continue from purchased KV artifacts, plus the kvmart API for publishing,
// buying and accounting, over cpp-httplib.
//
//   Server::Create(options, parts) → Bind() → Run() (blocks) ... Stop() from any
//   thread (e.g. a SIGTERM watcher): stops accepting, lets in-flight requests
//   finish, then Run returns.
//
// Routes and their semantics: docs/API.md.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "artifact/signing.h"
#include "base/status.h"
#include "engine/engine.h"
#include "market/market.h"
#include "server/server_db.h"
#include "store/store.h"
#include "tokenizer/tokenizer.h"

namespace httplib {
class Stream;
}

namespace kvmart::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0 = any free port (see Server::port())
  size_t max_sessions = 16;        // requests using the engine at once (batched together)
  size_t max_queue = 16;           // more wait; beyond that, 429
  size_t http_threads = 0;         // 0 = max_sessions + max_queue + 8
  size_t max_body_bytes = 8u << 20;
  size_t prefill_chunk = 256;      // prefill granularity: interleaving and cancellation points
  uint64_t resident_kv_bytes = 0;  // hot artifacts' shared KV pages kept; 0 = a quarter of RAM
  // Automatic prefix caching of plain prompts, per account (prefix_cache.h):
  // bytes of engine pages kept; -1 = a sixteenth of RAM, 0 = off.
  int64_t prefix_cache_bytes = -1;
  size_t default_max_tokens = 256;
  size_t max_tokens_limit = 4096;
  std::string model_id = "kvmart";  // the name /v1/models reports and requests may use
  // GET /v1/artifacts/{id}/export: off by default (caches stay provider-side).
  bool export_enabled = false;
  int64_t export_micros_per_gb = 0;  // egress tariff, see docs/API.md
  std::string tls_cert, tls_key;     // both set: HTTPS
  bool log_requests = true;          // one JSON line per request on stderr
  // Market maintenance run by the server itself (no operator): every
  // maintenance interval, expired load reservations are voided and storage is
  // billed for the last completed period of storage_billing_period_s
  // (0 = no automatic storage billing; 0 interval = no maintenance thread).
  int64_t market_maintenance_interval_s = 60;
  int64_t storage_billing_period_s = 3600;
  // POST /v1/artifacts/upload: off by default. Uploaded artifacts are listed
  // only after a spot check of this many random blocks (and the last).
  bool accept_uploads = false;
  uint32_t upload_spot_check_blocks = 4;
  // Requests per second per API key (per remote address without one), in
  // bursts of rate_limit_burst; beyond it 429 with Retry-After. 0 = no limit.
  // Health, readiness and metrics are never limited.
  double rate_limit_per_s = 0;
  double rate_limit_burst = 0;  // 0 = max(1, 2 × the rate)
};

// What the server runs on. It takes ownership.
struct ServerParts {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::unique_ptr<market::Market> market;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<ServerDb> db;
  // Signs the manifests of artifacts this provider prefills for publishers: the
  // provider attests that the KV was computed from those tokens on its engine.
  std::unique_ptr<artifact::SigningKey> signing_key;
};

// The listening socket's accept queue: room for every client of a burst
// (thousands of connections at once) while the accept loop hands them out.
inline constexpr int kListenBacklog = 1024;

class Server {
 public:
  static StatusOr<std::unique_ptr<Server>> Create(const ServerOptions& options, ServerParts parts);
  ~Server();

  // Binds the listening socket (port 0 picks a free one) with an accept queue
  // of kListenBacklog.
  Status Bind();
  int port() const;
  // Serves until Stop(); in-flight requests finish before it returns.
  Status Run();
  // Thread-safe, idempotent.
  void Stop();

  // Serves the requests read from `stream` as a worker serves a connection
  // (keep-alive and pipelined requests, at most `max_requests`), writing the
  // answers back to it, without a listener or a socket: the HTTP fuzz target
  // (tests/fuzz) drives the server through in-memory streams. Plain HTTP only
  // (a TLS server reads from sockets). Thread-safe like the workers.
  Status ServeStream(httplib::Stream& stream, size_t max_requests);

  market::Market& market();
  store::Store& store();

  struct Impl;  // defined in server.cc; only Create can build one
  explicit Server(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvmart::server
