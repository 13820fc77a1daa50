// `kvmart serve`: the prefill-CDN server on the embedded default (SQLite
// market, disk + memory store under --data), until SIGTERM/SIGINT.
//
// The data directory (--data, $KVMART_HOME, ~/.local/share/kvmart) and its
// layout are those of every command: cli/data_dir.h.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/data_dir.h"
#include "market/sql_market.h"
#include "store/memory_store.h"
#include "server/server.h"
#include "tokenizer/tokenizer.h"

namespace kvmart::cli {
namespace {

namespace fs = std::filesystem;
namespace mk = kvmart::market;

struct ServeArgs {
  EngineFlags engine;
  std::string data, listen = "127.0.0.1:8080", store = "disk", port_file, model_id = "kvmart";
  std::string tls_cert, tls_key, export_price_per_gb, db, blocks;
  size_t max_sessions = 16, max_queue = 16, max_body_bytes = 8u << 20, prefill_chunk = 256;
  bool enable_export = false, quiet = false, accept_uploads = false;
  uint32_t upload_spot_check = 4;
  double rate_limit = 0, rate_burst = 0, prefix_cache_gb = -1;
  int64_t maintenance_interval = 60, storage_billing_period = 3600, load_reservation = 900;
};

StatusOr<artifact::SigningKey> ArtifactKeyIn(const DataDir& dir) {
  const std::string path = dir.ArtifactKey();
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    KVMART_ASSIGN_OR_RETURN(auto key, artifact::SigningKey::Generate());
    // AlreadyExists: another process created it first; load theirs.
    if (Status st = key.SaveFile(path); !st.ok() && st.code() != Status::Code::kAlreadyExists) return st;
  }
  return artifact::SigningKey::LoadFile(path);
}

StatusOr<std::pair<std::string, int>> ParseListen(const std::string& s) {
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos) return Status::InvalidArgument("--listen must be HOST:PORT");
  std::string host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  const long port = std::strtol(s.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || port < 0 || port > 65535 || host.empty()) {
    return Status::InvalidArgument("--listen must be HOST:PORT");
  }
  return std::make_pair(host, static_cast<int>(port));
}

int RunServe(const ServeArgs& a) {
  // Signals are taken by one watcher thread (sigwait), so they must be blocked
  // before any other thread (engine pool, HTTP pool) exists.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a vanished client must be an error return, not death

  auto listen = ParseListen(a.listen);
  if (!listen.ok()) return Fail(listen.status());
  const DataDir data = ResolveDataDir(a.data);
  if (Status st = EnsureDataDir(data); !st.ok()) return Fail(st);

  server::ServerParts parts;
  auto model = LoadModel(a.engine.model_dir);
  if (!model.ok()) return Fail(model.status());
  auto engine = OpenEngine(*model, a.engine.kernels, a.engine.threads, a.engine.max_batch_tokens, a.engine.kv_cache_gb);
  if (!engine.ok()) return Fail(engine.status());
  parts.engine = std::move(engine).value();
  auto tok = tokenizer::Tokenizer::Load((fs::path(a.engine.model_dir) / "tokenizer.json").string());
  if (!tok.ok()) return Fail(tok.status());
  parts.tokenizer = std::move(tok).value();

  auto pkey = LoadOrCreateProviderKey(data, /*create=*/true);
  if (!pkey.ok()) return Fail(pkey.status());
  mk::MarketOptions mo;
  mo.provider_key = *pkey;
  mo.reservation_seconds = a.load_reservation;
  const std::string market_location = data.MarketLocation(a.db);
  auto market = mk::SqlMarket::Open(market_location, mo);
  if (!market.ok()) return Fail(market.status());
  auto boot = InitializeMarket(**market, mk::Currency(), data);
  if (boot.ok()) {
    std::cerr << "initialized the market; admin API key written to " << data.AdminKey() << "\n";
  } else if (boot.status().code() != Status::Code::kAlreadyExists) {
    return Fail(boot.status());
  }
  parts.market = std::move(market).value();

  const std::string store_kind = a.store;
  if (store_kind == "disk") {
    auto so = NodeStoreOptions(a.data, a.db, a.blocks);
    if (!so.ok()) return Fail(so.status());
    auto st = store::Store::Open(*so);
    if (!st.ok()) return Fail(st.status());
    parts.store = std::move(st).value();
  } else if (store_kind == "memory") {
    if (!DataDir::SharedBlocksLocation(a.blocks).empty())
      return Fail(Status::InvalidArgument("--blocks (or $KVMART_BLOCKS) needs --store disk"));
    parts.store = std::make_unique<store::MemoryStore>();
  } else {
    return Fail(Status::InvalidArgument("--store must be disk or memory"));
  }
  auto db = server::ServerDb::Open(data.ServerDb());
  if (!db.ok()) return Fail(db.status());
  parts.db = std::move(db).value();
  auto akey = ArtifactKeyIn(data);
  if (!akey.ok()) return Fail(akey.status());
  parts.signing_key = std::make_unique<artifact::SigningKey>(std::move(akey).value());

  server::ServerOptions o;
  o.host = listen->first;
  o.port = listen->second;
  o.max_sessions = a.max_sessions;
  o.max_queue = a.max_queue;
  o.max_body_bytes = a.max_body_bytes;
  o.prefill_chunk = a.prefill_chunk;
  o.model_id = a.model_id;
  o.tls_cert = a.tls_cert;
  o.tls_key = a.tls_key;
  o.export_enabled = a.enable_export;
  o.accept_uploads = a.accept_uploads;
  o.upload_spot_check_blocks = a.upload_spot_check;
  o.rate_limit_per_s = a.rate_limit;
  o.prefix_cache_bytes = a.prefix_cache_gb < 0 ? -1 : static_cast<int64_t>(a.prefix_cache_gb * 1e9);
  o.rate_limit_burst = a.rate_burst;
  o.market_maintenance_interval_s = a.maintenance_interval;
  o.storage_billing_period_s = a.storage_billing_period;
  if (!a.export_price_per_gb.empty()) {
    auto m = mk::Money::Parse(a.export_price_per_gb, mk::Currency());
    if (!m.ok()) return Fail(m.status());
    o.export_micros_per_gb = m->micros();
  }
  auto srv = server::Server::Create(o, std::move(parts));
  if (!srv.ok()) return Fail(srv.status());
  if (Status s = (*srv)->Bind(); !s.ok()) return Fail(s);
  if (!a.port_file.empty()) {
    std::ofstream pf(a.port_file + ".tmp");
    pf << (*srv)->port() << "\n";
    pf.close();
    std::error_code ec;
    fs::rename(a.port_file + ".tmp", a.port_file, ec);
  }
  std::cerr << "kvmart serve: listening on " << (a.tls_cert.empty() ? "http://" : "https://") << o.host << ":"
            << (*srv)->port() << " (model " << a.engine.model_dir << ", data " << data.root << ", store " << store_kind
            << ")\n";

  std::atomic<bool> done{false};
  server::Server* raw = srv->get();
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    if (!done) std::cerr << "kvmart serve: signal " << sig << ", finishing in-flight requests\n";
    raw->Stop();
  });
  Status run = (*srv)->Run();
  done = true;
  kill(getpid(), SIGTERM);  // wakes the watcher if no signal came (it is blocked everywhere)
  watcher.join();
  srv->reset();  // closes the market and store: everything flushed before exit 0
  if (!run.ok()) return Fail(run);
  std::cerr << "kvmart serve: stopped\n";
  return 0;
}

}  // namespace

void RegisterServerCommands(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<ServeArgs>();
  auto* c = app.add_subcommand("serve", "run the prefill-CDN HTTP server (OpenAI-compatible + kvmart API)");
  a->engine.Add(c);
  c->add_option("--data", a->data,
                "data directory: market, keys, store/ (default $KVMART_HOME, else ~/.local/share/kvmart)");
  c->add_option("--db", a->db,
                "market database: a SQLite file or a postgresql:// URL shared by many nodes "
                "(default $KVMART_DB, else DIR/market.db); with PostgreSQL the store's catalog lives there too");
  c->add_option("--blocks", a->blocks,
                "redis://host:port[,host:port…]: a Redis Cluster holding the blocks every node can load "
                "(default $KVMART_BLOCKS; needs a postgresql:// --db)");
  c->add_option("--listen", a->listen, "HOST:PORT to listen on (port 0 = any free port)");
  c->add_option("--max-sessions", a->max_sessions,
                "requests using the engine at once (their steps are batched into shared forward passes)");
  c->add_option("--max-queue", a->max_queue, "requests waiting for the engine before 429");
  c->add_option("--max-body-bytes", a->max_body_bytes, "largest request body (413 beyond)");
  c->add_option("--prefill-chunk", a->prefill_chunk, "prefill chunk (interleaving/cancellation granularity)");
  c->add_option("--max-batch-tokens", a->engine.max_batch_tokens,
                "continuous batching: most new tokens in one forward pass shared by the active sessions (default 512)");
  c->add_option("--kv-cache-gb", a->engine.kv_cache_gb,
                "KV page memory in GB: allocated and faulted in at start-up, the most sessions and resident "
                "artifacts may use (beyond it: 503 with Retry-After) (default 0: no limit, pages faulted in "
                "on first use, up to a quarter of RAM kept between sessions)");
  c->add_option("--prefix-cache-gb", a->prefix_cache_gb,
                "automatic prefix caching of plain prompts, per account: GB of KV pages kept (0 = off; "
                "default a sixteenth of RAM)");
  c->add_option("--store", a->store, "artifact store: disk (DIR/store) or memory (lost at exit)")
      ->check(CLI::IsMember({"disk", "memory"}))
      ->capture_default_str();
  c->add_option("--model-id", a->model_id, "model name reported by /v1/models");
  c->add_option("--port-file", a->port_file, "write the bound port to this file");
  c->add_option("--tls-cert", a->tls_cert, "PEM certificate (with --tls-key: serve HTTPS)");
  c->add_option("--tls-key", a->tls_key, "PEM private key");
  c->add_flag("--enable-export", a->enable_export, "allow entitled buyers to download .kva files");
  c->add_flag("--accept-uploads", a->accept_uploads,
              "accept .kva files publishers computed elsewhere (POST /v1/artifacts/upload), listed only after "
              "a bit-exact spot check on this engine");
  c->add_option("--upload-spot-check", a->upload_spot_check,
                "blocks of an upload recomputed at random, besides the last (default 4)");
  c->add_option("--rate-limit", a->rate_limit,
                "requests per second per API key (per remote address without one); beyond it 429 with "
                "Retry-After (default 0: no limit)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--rate-burst", a->rate_burst, "requests a key may send at once under --rate-limit (default 2 x the rate)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--export-price-per-gb", a->export_price_per_gb, "egress tariff in currency units per GB");
  c->add_option("--market-maintenance-interval", a->maintenance_interval,
                 "seconds between market maintenance runs: void expired load holds, bill storage (0 = off)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--load-reservation-seconds", a->load_reservation,
                 "how long a reserved kv load may wait for its answer before it is voided (longest generation)")
      ->check(CLI::PositiveNumber);
  c->add_option("--storage-billing-period", a->storage_billing_period,
                "storage billing period in seconds; each completed period is billed once (0 = off)")
      ->check(CLI::NonNegativeNumber);
  c->callback([a, exit_code] { *exit_code = RunServe(*a); });
}

}  // namespace kvmart::cli
