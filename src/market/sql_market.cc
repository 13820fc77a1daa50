#include "market/sql_market.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <limits>
#include <map>
#include <thread>
#include <utility>

#include <sodium.h>

#include "base/sha256.h"
#include "market/keys.h"
#include "base/postgres_db.h"
#include "base/sql.h"
#include "base/sqlite_db.h"

namespace kvmart::market {

using nlohmann::json;
using Db = sql::Connection;

namespace {

// What makes an entitlement live: a load could be reserved on it now (one
// `?`: the time). A macro so that the statements that draw on entitlements and
// EntitledArtifacts, which reports them, are one literal each and can never
// disagree about it.
#define KVMART_LIVE_ENTITLEMENT "(expires_at=0 OR expires_at>?) AND (loads_remaining IS NULL OR loads_remaining>0)"

// Versioned migrations, one list per back end with the same versions: entry i
// upgrades schema version i → i+1 (SQLite keeps it in PRAGMA user_version,
// PostgreSQL in schema_version). Never edit a shipped entry; append a new one
// to both lists.
const char* const kSqliteMigrations[] = {
    R"sql(
CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE accounts(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  currency TEXT NOT NULL,
  credit_limit INTEGER NOT NULL DEFAULT 0 CHECK(credit_limit >= 0),
  balance INTEGER NOT NULL DEFAULT 0,
  system TEXT,                      -- NULL, 'provider' or 'external'
  created_at INTEGER NOT NULL,
  CHECK(balance >= -credit_limit),
  UNIQUE(system, currency));
CREATE TABLE api_keys(
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id),
  key_hash BLOB NOT NULL UNIQUE,
  scopes INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER);
CREATE TABLE listings(
  artifact_id TEXT PRIMARY KEY,
  publisher INTEGER NOT NULL REFERENCES accounts(id),
  tokens INTEGER NOT NULL CHECK(tokens >= 0),
  stored_bytes INTEGER NOT NULL CHECK(stored_bytes >= 0),
  currency TEXT NOT NULL,
  per_load INTEGER CHECK(per_load IS NULL OR per_load >= 0),
  bundle_loads INTEGER NOT NULL CHECK(bundle_loads >= 0),
  bundle_price INTEGER NOT NULL CHECK(bundle_price >= 0),
  unlimited_seconds INTEGER NOT NULL CHECK(unlimited_seconds >= 0),
  unlimited_price INTEGER NOT NULL CHECK(unlimited_price >= 0),
  updated_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE txns(
  id INTEGER PRIMARY KEY,
  kind TEXT NOT NULL,               -- deposit purchase load refund storage
  artifact_id TEXT NOT NULL DEFAULT '',
  ref_txn INTEGER,                  -- the charge a refund compensates
  created_at INTEGER NOT NULL);
CREATE TABLE entries(
  id INTEGER PRIMARY KEY,
  txn_id INTEGER NOT NULL REFERENCES txns(id),
  account_id INTEGER NOT NULL REFERENCES accounts(id),
  currency TEXT NOT NULL,
  amount INTEGER NOT NULL,
  role TEXT NOT NULL);              -- buyer publisher fee storage external
CREATE INDEX entries_by_account ON entries(account_id, txn_id);
CREATE INDEX entries_by_txn ON entries(txn_id);
CREATE TABLE entitlements(
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id),
  artifact_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  loads_remaining INTEGER CHECK(loads_remaining IS NULL OR loads_remaining >= 0),
  expires_at INTEGER NOT NULL,      -- 0 = never
  per_load INTEGER NOT NULL,        -- metered price agreed at purchase
  purchase_txn INTEGER,
  created_at INTEGER NOT NULL);
CREATE INDEX entitlements_lookup ON entitlements(account_id, artifact_id);
CREATE TABLE loads(
  id INTEGER PRIMARY KEY,
  entitlement_id INTEGER NOT NULL REFERENCES entitlements(id),
  account_id INTEGER NOT NULL,
  artifact_id TEXT NOT NULL,
  tokens INTEGER NOT NULL,
  charged INTEGER NOT NULL,
  charge_txn INTEGER,               -- NULL for prepaid entitlements
  refunded INTEGER NOT NULL DEFAULT 0,
  refund_txn INTEGER,
  created_at INTEGER NOT NULL);
CREATE INDEX loads_by_charge ON loads(charge_txn);
CREATE TABLE idempotency(
  account_id INTEGER NOT NULL,
  idem_key TEXT NOT NULL,
  op TEXT NOT NULL,
  request_hash BLOB NOT NULL,
  response TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY(account_id, idem_key)) WITHOUT ROWID;
)sql",
    // v2: two-phase loads, the receipts register, payouts, scheduled storage
    // billing, HTTP 402 payment keys. Exactly-once resolution of a load is
    // enforced here, not only in C++: a load's state leaves 'pending' once
    // (trigger) and has at most one resolution row (primary key).
    R"sql(
ALTER TABLE accounts ADD COLUMN pending INTEGER NOT NULL DEFAULT 0
  CHECK(pending >= 0 AND balance - pending >= -credit_limit);
ALTER TABLE loads ADD COLUMN phases INTEGER NOT NULL DEFAULT 1 CHECK(phases IN (1, 2));
ALTER TABLE loads ADD COLUMN state TEXT NOT NULL DEFAULT 'posted' CHECK(state IN ('pending','posted','voided'));
ALTER TABLE loads ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX loads_pending ON loads(expires_at) WHERE state='pending';
CREATE TABLE load_resolutions(
  load_id INTEGER PRIMARY KEY REFERENCES loads(id),
  outcome TEXT NOT NULL CHECK(outcome IN ('posted','voided')),
  txn_id INTEGER,
  reason TEXT NOT NULL DEFAULT '',
  resolved_at INTEGER NOT NULL);
CREATE TRIGGER loads_resolved_once BEFORE UPDATE OF state ON loads
  WHEN OLD.state != 'pending' OR NEW.state = 'pending'
  BEGIN SELECT RAISE(ABORT, 'a load is resolved exactly once'); END;
CREATE TRIGGER load_resolution_needs_pending BEFORE INSERT ON load_resolutions
  WHEN (SELECT state FROM loads WHERE id=NEW.load_id) IS NOT 'pending'
  BEGIN SELECT RAISE(ABORT, 'only a pending load can be resolved'); END;
CREATE TABLE receipts(
  receipt_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  account_id INTEGER NOT NULL,
  ledger_txn INTEGER NOT NULL,
  load_id INTEGER NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX receipts_by_txn ON receipts(ledger_txn);
CREATE TABLE payouts(
  id INTEGER PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id),
  amount INTEGER NOT NULL CHECK(amount > 0),
  currency TEXT NOT NULL,
  destination TEXT NOT NULL,
  txn_id INTEGER NOT NULL UNIQUE REFERENCES txns(id),
  created_at INTEGER NOT NULL);
ALTER TABLE listings ADD COLUMN unpaid_since INTEGER;
ALTER TABLE listings ADD COLUMN unlisted_at INTEGER;
CREATE TABLE storage_bills(
  artifact_id TEXT NOT NULL,
  period_start INTEGER NOT NULL,
  period_seconds INTEGER NOT NULL CHECK(period_seconds > 0),
  publisher INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  amount INTEGER NOT NULL CHECK(amount >= 0),
  state TEXT NOT NULL CHECK(state IN ('paid','unpaid')),
  txn_id INTEGER,
  created_at INTEGER NOT NULL,
  PRIMARY KEY(artifact_id, period_start)) WITHOUT ROWID;
CREATE TABLE payment_keys(
  public_key TEXT PRIMARY KEY,
  account_id INTEGER NOT NULL REFERENCES accounts(id),
  created_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE payment_nonces(
  nonce TEXT PRIMARY KEY,
  account_id INTEGER NOT NULL,
  load_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL) WITHOUT ROWID;
-- Receipts issued before this migration were not registered; the audit
-- requires a receipt for every money-moving transaction after this id.
INSERT INTO meta(k, v) VALUES('receipts_register_after_txn', (SELECT COALESCE(MAX(id), 0) FROM txns));
)sql",
    // v3: private listings and the accounts granted access to them.
    R"sql(
ALTER TABLE listings ADD COLUMN private INTEGER NOT NULL DEFAULT 0 CHECK(private IN (0, 1));
CREATE TABLE listing_grants(
  artifact_id TEXT NOT NULL REFERENCES listings(artifact_id),
  account_id INTEGER NOT NULL REFERENCES accounts(id),
  created_at INTEGER NOT NULL,
  PRIMARY KEY(artifact_id, account_id)) WITHOUT ROWID;
CREATE INDEX listing_grants_by_account ON listing_grants(account_id);
)sql",
    // v4: entitlements by artifact, for EntitledArtifacts (the server asks
    // which resident artifacts anyone may still load).
    R"sql(
CREATE INDEX entitlements_by_artifact ON entitlements(artifact_id);
)sql",
    // v5: listings of artifacts removed from the store (RemoveListing).
    R"sql(
ALTER TABLE listings ADD COLUMN removed_at INTEGER;
)sql",
};


// PostgreSQL: the same tables, columns and rules as SQLite's v1 and v2 above.
// BIGINT where SQLite's INTEGER is 64-bit anyway; identity columns for rowids;
// triggers as PL/pgSQL functions.
const char* const kPostgresMigrations[] = {
    R"sql(
CREATE TABLE meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE accounts(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  name TEXT NOT NULL,
  currency TEXT NOT NULL,
  credit_limit BIGINT NOT NULL DEFAULT 0 CHECK(credit_limit >= 0),
  balance BIGINT NOT NULL DEFAULT 0,
  system TEXT,
  created_at BIGINT NOT NULL,
  CHECK(balance >= -credit_limit),
  UNIQUE(system, currency));
CREATE TABLE api_keys(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  account_id BIGINT NOT NULL REFERENCES accounts(id),
  key_hash BYTEA NOT NULL UNIQUE,
  scopes BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT);
CREATE TABLE listings(
  artifact_id TEXT PRIMARY KEY,
  publisher BIGINT NOT NULL REFERENCES accounts(id),
  tokens BIGINT NOT NULL CHECK(tokens >= 0),
  stored_bytes BIGINT NOT NULL CHECK(stored_bytes >= 0),
  currency TEXT NOT NULL,
  per_load BIGINT CHECK(per_load IS NULL OR per_load >= 0),
  bundle_loads BIGINT NOT NULL CHECK(bundle_loads >= 0),
  bundle_price BIGINT NOT NULL CHECK(bundle_price >= 0),
  unlimited_seconds BIGINT NOT NULL CHECK(unlimited_seconds >= 0),
  unlimited_price BIGINT NOT NULL CHECK(unlimited_price >= 0),
  updated_at BIGINT NOT NULL);
CREATE TABLE txns(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  kind TEXT NOT NULL,
  artifact_id TEXT NOT NULL DEFAULT '',
  ref_txn BIGINT,
  created_at BIGINT NOT NULL);
CREATE TABLE entries(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  txn_id BIGINT NOT NULL REFERENCES txns(id),
  account_id BIGINT NOT NULL REFERENCES accounts(id),
  currency TEXT NOT NULL,
  amount BIGINT NOT NULL,
  role TEXT NOT NULL);
CREATE INDEX entries_by_account ON entries(account_id, txn_id);
CREATE INDEX entries_by_txn ON entries(txn_id);
CREATE TABLE entitlements(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  account_id BIGINT NOT NULL REFERENCES accounts(id),
  artifact_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  loads_remaining BIGINT CHECK(loads_remaining IS NULL OR loads_remaining >= 0),
  expires_at BIGINT NOT NULL,
  per_load BIGINT NOT NULL,
  purchase_txn BIGINT,
  created_at BIGINT NOT NULL);
CREATE INDEX entitlements_lookup ON entitlements(account_id, artifact_id);
CREATE TABLE loads(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  entitlement_id BIGINT NOT NULL REFERENCES entitlements(id),
  account_id BIGINT NOT NULL,
  artifact_id TEXT NOT NULL,
  tokens BIGINT NOT NULL,
  charged BIGINT NOT NULL,
  charge_txn BIGINT,
  refunded BIGINT NOT NULL DEFAULT 0,
  refund_txn BIGINT,
  created_at BIGINT NOT NULL);
CREATE INDEX loads_by_charge ON loads(charge_txn);
CREATE TABLE idempotency(
  account_id BIGINT NOT NULL,
  idem_key TEXT NOT NULL,
  op TEXT NOT NULL,
  request_hash BYTEA NOT NULL,
  response TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY(account_id, idem_key));
)sql",
    R"sql(
ALTER TABLE accounts ADD COLUMN pending BIGINT NOT NULL DEFAULT 0
  CHECK(pending >= 0 AND balance - pending >= -credit_limit);
ALTER TABLE loads ADD COLUMN phases BIGINT NOT NULL DEFAULT 1 CHECK(phases IN (1, 2));
ALTER TABLE loads ADD COLUMN state TEXT NOT NULL DEFAULT 'posted' CHECK(state IN ('pending','posted','voided'));
ALTER TABLE loads ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX loads_pending ON loads(expires_at) WHERE state='pending';
CREATE TABLE load_resolutions(
  load_id BIGINT PRIMARY KEY REFERENCES loads(id),
  outcome TEXT NOT NULL CHECK(outcome IN ('posted','voided')),
  txn_id BIGINT,
  reason TEXT NOT NULL DEFAULT '',
  resolved_at BIGINT NOT NULL);
CREATE FUNCTION loads_resolved_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.state <> 'pending' OR NEW.state = 'pending' THEN
    RAISE EXCEPTION 'a load is resolved exactly once';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER loads_resolved_once BEFORE UPDATE OF state ON loads
  FOR EACH ROW EXECUTE FUNCTION loads_resolved_once();
CREATE FUNCTION load_resolution_needs_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT state FROM loads WHERE id = NEW.load_id) IS DISTINCT FROM 'pending' THEN
    RAISE EXCEPTION 'only a pending load can be resolved';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER load_resolution_needs_pending BEFORE INSERT ON load_resolutions
  FOR EACH ROW EXECUTE FUNCTION load_resolution_needs_pending();
CREATE TABLE receipts(
  receipt_id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  account_id BIGINT NOT NULL,
  ledger_txn BIGINT NOT NULL,
  load_id BIGINT NOT NULL,
  body TEXT NOT NULL,
  created_at BIGINT NOT NULL);
CREATE INDEX receipts_by_txn ON receipts(ledger_txn);
CREATE TABLE payouts(
  id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  account_id BIGINT NOT NULL REFERENCES accounts(id),
  amount BIGINT NOT NULL CHECK(amount > 0),
  currency TEXT NOT NULL,
  destination TEXT NOT NULL,
  txn_id BIGINT NOT NULL UNIQUE REFERENCES txns(id),
  created_at BIGINT NOT NULL);
ALTER TABLE listings ADD COLUMN unpaid_since BIGINT;
ALTER TABLE listings ADD COLUMN unlisted_at BIGINT;
CREATE TABLE storage_bills(
  artifact_id TEXT NOT NULL,
  period_start BIGINT NOT NULL,
  period_seconds BIGINT NOT NULL CHECK(period_seconds > 0),
  publisher BIGINT NOT NULL,
  bytes BIGINT NOT NULL,
  amount BIGINT NOT NULL CHECK(amount >= 0),
  state TEXT NOT NULL CHECK(state IN ('paid','unpaid')),
  txn_id BIGINT,
  created_at BIGINT NOT NULL,
  PRIMARY KEY(artifact_id, period_start));
CREATE TABLE payment_keys(
  public_key TEXT PRIMARY KEY,
  account_id BIGINT NOT NULL REFERENCES accounts(id),
  created_at BIGINT NOT NULL);
CREATE TABLE payment_nonces(
  nonce TEXT PRIMARY KEY,
  account_id BIGINT NOT NULL,
  load_id BIGINT NOT NULL,
  created_at BIGINT NOT NULL);
INSERT INTO meta(k, v) VALUES('receipts_register_after_txn', (SELECT COALESCE(MAX(id), 0) FROM txns)::TEXT);
)sql",
    R"sql(
ALTER TABLE listings ADD COLUMN private BIGINT NOT NULL DEFAULT 0 CHECK(private IN (0, 1));
CREATE TABLE listing_grants(
  artifact_id TEXT NOT NULL REFERENCES listings(artifact_id),
  account_id BIGINT NOT NULL REFERENCES accounts(id),
  created_at BIGINT NOT NULL,
  PRIMARY KEY(artifact_id, account_id));
CREATE INDEX listing_grants_by_account ON listing_grants(account_id);
)sql",
    R"sql(
CREATE INDEX entitlements_by_artifact ON entitlements(artifact_id);
)sql",
    R"sql(
ALTER TABLE listings ADD COLUMN removed_at BIGINT;
)sql",
};
static_assert(std::size(kSqliteMigrations) == std::size(kPostgresMigrations),
              "every schema version exists on every back end");
static_assert(std::size(kSqliteMigrations) == SqlMarket::kSchemaVersion, "kSchemaVersion names the newest migration");

// The id an `INSERT … RETURNING id` produced.
StatusOr<int64_t> InsertedId(sql::Statement& st) {
  KVMART_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status::Internal("INSERT … RETURNING id returned no row");
  return st.Int(0);
}

constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

int64_t SystemNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool ValidArtifactId(std::string_view id) {
  if (id.size() != 4 + 64 || id.substr(0, 4) != "kv1-") return false;
  for (char c : id.substr(4)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

struct Caller {
  int64_t key_id = 0;
  AccountId account = 0;
  uint32_t scopes = 0;
};

struct Posting {
  AccountId account;
  Money amount;
  const char* role;
};

json MoneyJson(const Money& m) { return json{{"micros", m.micros()}, {"currency", m.currency().str()}}; }
Money MoneyFromJson(const json& j) {
  auto c = Currency::Parse(j.at("currency").get<std::string>());
  return Money(j.at("micros").get<int64_t>(), c.ok() ? *c : Currency());
}

json QuoteJson(const Quote& q) {
  return json{{"artifact_id", q.artifact_id},       {"kind", PurchaseKindName(q.kind)},
              {"tokens", q.tokens},                 {"loads", q.loads},
              {"upfront", MoneyJson(q.upfront)},    {"per_load", MoneyJson(q.per_load)},
              {"provider_fee", MoneyJson(q.provider_fee)}, {"expires_at", q.expires_at},
              {"fresh_prefill_cost", MoneyJson(q.fresh_prefill_cost)}};
}
Quote QuoteFromJson(const json& j) {
  Quote q;
  q.artifact_id = j.at("artifact_id").get<std::string>();
  auto k = ParsePurchaseKind(j.at("kind").get<std::string>());
  q.kind = k.ok() ? *k : PurchaseKind::kMetered;
  q.tokens = j.at("tokens").get<int64_t>();
  q.loads = j.at("loads").get<int64_t>();
  q.upfront = MoneyFromJson(j.at("upfront"));
  q.per_load = MoneyFromJson(j.at("per_load"));
  q.provider_fee = MoneyFromJson(j.at("provider_fee"));
  q.expires_at = j.at("expires_at").get<int64_t>();
  q.fresh_prefill_cost = MoneyFromJson(j.at("fresh_prefill_cost"));
  return q;
}

StatusOr<LoadHold> HoldFromJson(const json& r) {
  LoadHold h;
  h.load = r.at("load").get<int64_t>();
  h.entitlement = r.at("entitlement").get<int64_t>();
  h.tokens_reused = r.at("tokens").get<int64_t>();
  h.reserved = MoneyFromJson(r.at("reserved"));
  h.expires_at = r.at("expires_at").get<int64_t>();
  // A reservation stored before these fields existed reads as "its last
  // load": whoever needs to know asks the market (EntitledArtifacts).
  if (auto it = r.find("entitlement_loads_left"); it != r.end()) {
    h.entitlement_loads_left = it->is_null() ? std::nullopt : std::optional<int64_t>(it->get<int64_t>());
  }
  h.entitlement_expires_at = r.value("entitlement_expires_at", int64_t{0});
  return h;
}

LoadResult LoadResultFromJson(const json& r) {
  LoadResult out;
  out.load = r.at("load").get<int64_t>();
  out.entitlement = r.at("entitlement").get<int64_t>();
  out.tokens_reused = r.at("tokens").get<int64_t>();
  out.charged = MoneyFromJson(r.at("charged"));
  out.receipt = r.at("receipt").get<std::string>();
  return out;
}

std::string RandomNonceHex() {
  unsigned char b[16];
  randombytes_buf(b, sizeof b);
  return ToHex(b, sizeof b);
}

}  // namespace

const char* PurchaseKindName(PurchaseKind k) {
  switch (k) {
    case PurchaseKind::kMetered: return "metered";
    case PurchaseKind::kBundle: return "bundle";
    case PurchaseKind::kUnlimited: return "unlimited";
  }
  return "metered";
}

const char* VisibilityName(Visibility v) { return v == Visibility::kPrivate ? "private" : "public"; }

StatusOr<Visibility> ParseVisibility(std::string_view s) {
  if (s == "public") return Visibility::kPublic;
  if (s == "private") return Visibility::kPrivate;
  return Status::InvalidArgument("visibility must be public or private, got '" + std::string(s) + "'");
}

StatusOr<PurchaseKind> ParsePurchaseKind(std::string_view s) {
  if (s == "metered") return PurchaseKind::kMetered;
  if (s == "bundle") return PurchaseKind::kBundle;
  if (s == "unlimited") return PurchaseKind::kUnlimited;
  return Status::InvalidArgument("purchase kind must be metered, bundle or unlimited, got '" + std::string(s) + "'");
}

struct SqlMarket::Impl {
  std::string location;  // a SQLite file path or a postgresql:// URL
  sql::Dialect dialect = sql::Dialect::kSqlite;
  MarketOptions opt;
  std::string provider_pk_hex;
  std::mutex mu;
  std::vector<std::unique_ptr<Db>> idle;  // connection pool, guarded by mu
  // SQLite admits one writer at a time anyway. Queueing this process's writers
  // on a mutex hands the lock over at once, where SQLite's busy handler would
  // make the loser sleep and poll; other processes still meet busy_timeout.
  // PostgreSQL writers queue on the server's writer lock instead (every node's).
  std::mutex write_mu;

  int64_t Now() const { return opt.clock ? opt.clock() : SystemNow(); }

  // --- counters for /metrics ---
  std::atomic<uint64_t> write_txns{0}, read_txns{0}, retried{0}, unavailable{0}, backend_errors{0}, txn_micros{0};
  void Count(bool write, const Status& s, std::chrono::steady_clock::time_point started) {
    (write ? write_txns : read_txns).fetch_add(1, std::memory_order_relaxed);
    txn_micros.fetch_add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                   std::chrono::steady_clock::now() - started)
                                                   .count()),
                         std::memory_order_relaxed);
    if (s.ok()) return;
    if (sql::IsRetryable(s)) {
      retried.fetch_add(1, std::memory_order_relaxed);
    } else if (s.code() == Status::Code::kUnavailable) {
      unavailable.fetch_add(1, std::memory_order_relaxed);
    } else if (s.code() == Status::Code::kIOError || s.IsDiskFull() || s.code() == Status::Code::kCorruption ||
               s.code() == Status::Code::kInternal) {
      // Not ResourceExhausted as such: that is also "insufficient funds".
      backend_errors.fetch_add(1, std::memory_order_relaxed);
    }
  }

  std::unique_lock<std::mutex> WriterLock() {
    if (dialect == sql::Dialect::kSqlite) return std::unique_lock<std::mutex>(write_mu);
    return std::unique_lock<std::mutex>();
  }

  // Before retry `attempt` of a conflicting transaction. Random jitter keeps
  // PostgreSQL writers that conflicted once from meeting again in lock step.
  void Backoff(int attempt) {
    if (attempt == 0) return;
    const int64_t cap = std::min<int64_t>(100 * attempt, 20'000);
    std::this_thread::sleep_for(std::chrono::microseconds(cap / 2 + randombytes_uniform(static_cast<uint32_t>(cap))));
  }

  // Runs `once` (one transaction) until it succeeds or fails for a reason
  // other than a busy or conflicting database, at most max_busy_retries more
  // times with backoff, counting every try in the transaction metrics.
  template <typename T, typename Once>
  StatusOr<T> Retried(bool write, Once&& once) {
    Status last;
    for (int attempt = 0; attempt <= opt.max_busy_retries; ++attempt) {
      Backoff(attempt);
      const auto started = std::chrono::steady_clock::now();
      StatusOr<T> r = once();
      Count(write, r.status(), started);
      if (r.ok() || !sql::IsRetryable(r.status())) return r;
      last = r.status();
    }
    return last;
  }

  // --- connection pool ---
  class Lease {
   public:
    Lease(Impl* impl, std::unique_ptr<Db> db) : impl_(impl), db_(std::move(db)) {}
    Lease(Lease&&) = default;
    ~Lease() {
      // A connection the server hung up on is dropped; the next caller dials.
      if (db_ != nullptr && db_->healthy()) {
        std::lock_guard<std::mutex> lock(impl_->mu);
        impl_->idle.push_back(std::move(db_));
      }
    }
    Db* get() const { return db_.get(); }

   private:
    Impl* impl_;
    std::unique_ptr<Db> db_;
  };

  StatusOr<std::unique_ptr<Db>> Dial() {
    if (dialect == sql::Dialect::kPostgres) {
      KVMART_ASSIGN_OR_RETURN(auto c, postgres::Connection::Open(location, opt.connect_timeout_seconds));
      return std::unique_ptr<Db>(std::move(c));
    }
    KVMART_ASSIGN_OR_RETURN(auto c, sqlite::Connection::Open(location, opt.synchronous_full, opt.busy_timeout_ms, opt.sqlite_vfs));
    return std::unique_ptr<Db>(std::move(c));
  }

  StatusOr<Lease> Acquire() {
    {
      std::lock_guard<std::mutex> lock(mu);
      // Connections the server hung up on while idle (a restart) are dropped
      // here, so the first call after the database is back succeeds.
      while (!idle.empty()) {
        auto db = std::move(idle.back());
        idle.pop_back();
        if (db->healthy()) return Lease(this, std::move(db));
      }
    }
    KVMART_ASSIGN_OR_RETURN(auto db, Dial());
    return Lease(this, std::move(db));
  }

  // --- helpers that run inside a transaction ---
  StatusOr<Caller> Auth(Db* db, std::string_view api_key, uint32_t need_scope) {
    KVMART_ASSIGN_OR_RETURN(Digest256 h, HashApiKey(api_key));
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT id, account_id, scopes, revoked_at, key_hash FROM api_keys WHERE key_hash=?"));
    st->BindBlob(1, h.data(), h.size());
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    // One message for unknown and revoked keys: a caller learns nothing more.
    if (!row) return Status::Unauthenticated("invalid or revoked API key");
    std::string stored = st->Blob(4);
    Digest256 sd{};
    if (stored.size() == sd.size()) std::copy(stored.begin(), stored.end(), sd.begin());
    if (!DigestEquals(sd, h) || !st->IsNull(3)) return Status::Unauthenticated("invalid or revoked API key");
    Caller c{st->Int(0), st->Int(1), static_cast<uint32_t>(st->Int(2))};
    if (need_scope != 0 && (c.scopes & need_scope) == 0) {
      return Status::PermissionDenied("API key lacks the '" + ScopesToString(need_scope) + "' scope");
    }
    return c;
  }

  struct AccountRow {
    AccountId id = 0;
    std::string name;
    Currency currency;
    int64_t credit_limit = 0;
    int64_t balance = 0;
    int64_t pending = 0;  // held by this account's pending loads
    bool system = false;
  };

  StatusOr<AccountRow> GetAccountRow(Db* db, AccountId id) {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT name, currency, credit_limit, balance, system, pending FROM accounts WHERE id=?"));
    st->Bind(1, id);
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) return Status::NotFound("account " + std::to_string(id) + " does not exist");
    AccountRow a;
    a.id = id;
    a.name = st->Text(0);
    KVMART_ASSIGN_OR_RETURN(a.currency, Currency::Parse(st->Text(1)));
    a.credit_limit = st->Int(2);
    a.balance = st->Int(3);
    a.system = !st->IsNull(4);
    a.pending = st->Int(5);
    return a;
  }

  // The provider's or the external-funds account for a currency, created on first use.
  StatusOr<AccountId> SystemAccount(Db* db, const char* kind, Currency cur) {
    {
      KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT id FROM accounts WHERE system=? AND currency=?"));
      st->Bind(1, std::string_view(kind)).Bind(2, cur.str());
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      if (row) return st->Int(0);
    }
    KVMART_ASSIGN_OR_RETURN(auto ins, db->Prepare("INSERT INTO accounts(name, currency, credit_limit, system, created_at) VALUES(?,?,?,?,?) RETURNING id"));
    // The external account is where deposits come from: its balance is minus
    // everything ever paid in, so it alone has an unbounded credit limit.
    ins->Bind(1, std::string(kind) + ":" + cur.str()).Bind(2, cur.str())
        .Bind(3, std::string_view(kind) == "external" ? kNoLimit : int64_t{0}).Bind(4, std::string_view(kind)).Bind(5, Now());
    return InsertedId(*ins);
  }

  // Posts one balanced ledger transaction and updates cached balances. Any
  // account that would fall below -credit_limit fails the whole call with
  // ResourceExhausted (the caller's WriteTxn then rolls everything back).
  StatusOr<int64_t> Post(Db* db, const char* kind, std::string_view artifact, std::optional<int64_t> ref,
                         const std::vector<Posting>& postings) {
    std::map<std::string, int64_t> sums;
    for (const auto& p : postings) {
      KVMART_ASSIGN_OR_RETURN(sums[p.amount.currency().str()], CheckedAddI64(sums[p.amount.currency().str()], p.amount.micros()));
    }
    for (const auto& [cur, s] : sums) {
      if (s != 0) return Status::Internal("unbalanced ledger transaction in " + cur);
    }
    int64_t now = Now();
    KVMART_ASSIGN_OR_RETURN(auto tx, db->Prepare("INSERT INTO txns(kind, artifact_id, ref_txn, created_at) VALUES(?,?,?,?) RETURNING id"));
    tx->Bind(1, std::string_view(kind)).Bind(2, artifact).Bind(3, ref).Bind(4, now);
    KVMART_ASSIGN_OR_RETURN(int64_t txn, InsertedId(*tx));
    for (const auto& p : postings) {
      if (p.amount.is_zero()) continue;
      KVMART_ASSIGN_OR_RETURN(AccountRow a, GetAccountRow(db, p.account));
      if (!(a.currency == p.amount.currency())) {
        return Status::InvalidArgument("account " + std::to_string(a.id) + " holds " + a.currency.str() + ", not " + p.amount.currency().str());
      }
      KVMART_ASSIGN_OR_RETURN(int64_t nb, CheckedAddI64(a.balance, p.amount.micros()));
      // Money held by pending loads is not available to anything else.
      KVMART_ASSIGN_OR_RETURN(int64_t avail, CheckedAddI64(nb, -a.pending));
      if (avail < -a.credit_limit) {
        return Status::InsufficientFunds("insufficient funds in account " + std::to_string(a.id) + ": balance " +
                                         Money(a.balance, a.currency).ToString() + ", needs " +
                                         Money(-p.amount.micros(), a.currency).ToString());
      }
      KVMART_ASSIGN_OR_RETURN(auto up, db->Prepare("UPDATE accounts SET balance=? WHERE id=?"));
      up->Bind(1, nb).Bind(2, a.id);
      KVMART_RETURN_IF_ERROR(up->Run());
      KVMART_ASSIGN_OR_RETURN(auto en, db->Prepare("INSERT INTO entries(txn_id, account_id, currency, amount, role) VALUES(?,?,?,?,?)"));
      en->Bind(1, txn).Bind(2, a.id).Bind(3, a.currency.str()).Bind(4, p.amount.micros()).Bind(5, std::string_view(p.role));
      KVMART_RETURN_IF_ERROR(en->Run());
    }
    return txn;
  }

  // A charge of `price` from buyer to publisher, less the provider's fee.
  StatusOr<int64_t> PostCharge(Db* db, const char* kind, std::string_view artifact, AccountId buyer, AccountId publisher,
                               const Money& price) {
    KVMART_ASSIGN_OR_RETURN(Split split, SplitCharge(opt.fees, price));
    KVMART_ASSIGN_OR_RETURN(AccountId provider, SystemAccount(db, "provider", price.currency()));
    KVMART_ASSIGN_OR_RETURN(Money neg, CheckedNeg(price));
    return Post(db, kind, artifact, std::nullopt,
                {{buyer, neg, "buyer"}, {publisher, split.publisher, "publisher"}, {provider, split.provider, "fee"}});
  }

  // A provider charge (storage, egress): `payer` pays `amt` of artifact's
  // currency to the provider account in one ledger transaction of `kind`
  // (payer's entry role `payer_role`, the provider's `kind`); returns the
  // signed receipt as {"receipt": ...}.
  StatusOr<json> PostProviderCharge(Db* db, const char* kind, std::string_view artifact_id, AccountId payer,
                                    const char* payer_role, const Money& amt) {
    KVMART_ASSIGN_OR_RETURN(AccountId provider, SystemAccount(db, "provider", amt.currency()));
    KVMART_ASSIGN_OR_RETURN(Money neg, CheckedNeg(amt));
    KVMART_ASSIGN_OR_RETURN(int64_t txn, Post(db, kind, artifact_id, std::nullopt,
                                              {{payer, neg, payer_role}, {provider, amt, kind}}));
    Receipt rc;
    rc.kind = kind;
    rc.account = payer;
    rc.artifact_id = std::string(artifact_id);
    rc.price_micros = amt.micros();
    rc.currency = amt.currency().str();
    rc.ledger_txn = txn;
    KVMART_ASSIGN_OR_RETURN(std::string signed_rc, SignReceipt(db, rc));
    return json{{"receipt", signed_rc}};
  }

  // What ListingFromRow reads, in its order (`l` names the listings table).
  static constexpr const char* kListingColumns =
      "l.publisher, l.tokens, l.stored_bytes, l.currency, l.per_load, l.bundle_loads, l.bundle_price, "
      "l.unlimited_seconds, l.unlimited_price, l.unlisted_at, l.private, l.artifact_id, l.removed_at";

  StatusOr<Listing> GetListing(Db* db, std::string_view artifact_id) {
    const std::string text = std::string("SELECT ") + kListingColumns + " FROM listings l WHERE artifact_id=?";
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(text.c_str()));
    st->Bind(1, artifact_id);
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) return NotListed(artifact_id);
    return ListingFromRow(*st);
  }

  // The one answer for an id the caller may not see, whether nobody listed it,
  // its listing is closed or it is someone else's private listing.
  static Status NotListed(std::string_view artifact_id) {
    return Status::NotFound("artifact " + std::string(artifact_id) + " is not listed");
  }

  // A row of kListingColumns.
  StatusOr<Listing> ListingFromRow(sql::Statement& st) {
    Listing l;
    l.spec.artifact_id = st.Text(11);
    l.publisher = st.Int(0);
    l.spec.tokens = st.Int(1);
    l.spec.stored_bytes = st.Int(2);
    KVMART_ASSIGN_OR_RETURN(l.spec.currency, Currency::Parse(st.Text(3)));
    l.spec.per_load_micros = st.OptInt(4);
    l.spec.bundle_loads = st.Int(5);
    l.spec.bundle_price_micros = st.Int(6);
    l.spec.unlimited_seconds = st.Int(7);
    l.spec.unlimited_price_micros = st.Int(8);
    l.unlisted_at = st.OptInt(9).value_or(0);
    l.removed_at = st.OptInt(12).value_or(0);
    l.visibility = st.Int(10) != 0 ? Visibility::kPrivate : Visibility::kPublic;
    l.spec.visibility = l.visibility;
    if (l.spec.per_load_micros) {
      l.per_load = Money(*l.spec.per_load_micros, l.spec.currency);
    } else {
      KVMART_ASSIGN_OR_RETURN(l.per_load, DefaultLoadPrice(opt.cost_model, l.spec.tokens, l.spec.currency));
      l.per_load_is_default = true;
    }
    KVMART_ASSIGN_OR_RETURN(l.fresh_prefill_cost, FreshPrefillCost(opt.cost_model, l.spec.tokens, l.spec.currency));
    return l;
  }

  // A listing that may be sold: an unlisted one (storage arrears past the
  // grace period) reads as not listed, though its entitlements still load.
  // Without a caller (HTTP 402 quotes, which carry no key) a private listing
  // reads as not listed too.
  StatusOr<Listing> GetOpenListing(Db* db, std::string_view artifact_id) {
    KVMART_ASSIGN_OR_RETURN(Listing l, GetListing(db, artifact_id));
    if (l.unlisted_at != 0 || l.visibility == Visibility::kPrivate) return NotListed(artifact_id);
    return l;
  }

  // Whether `c` may see listing `l`: public, its own, granted to it, or an admin.
  StatusOr<bool> MaySee(Db* db, const Caller& c, const Listing& l) {
    if (l.visibility == Visibility::kPublic || l.publisher == c.account || (c.scopes & kScopeAdmin)) return true;
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT 1 FROM listing_grants WHERE artifact_id=? AND account_id=?"));
    st->Bind(1, l.spec.artifact_id).Bind(2, c.account);
    return st->Step();
  }

  // The open listing as `c` may see it; NotListed when it may not.
  StatusOr<Listing> GetOpenListingFor(Db* db, const Caller& c, std::string_view artifact_id) {
    KVMART_ASSIGN_OR_RETURN(Listing l, GetListing(db, artifact_id));
    if (l.unlisted_at != 0) return NotListed(artifact_id);
    KVMART_ASSIGN_OR_RETURN(bool visible, MaySee(db, c, l));
    if (!visible) return NotListed(artifact_id);
    return l;
  }

  // A listing `c` publishes (or any, for an admin); NotListed otherwise, so a
  // grant request learns nothing about other publishers' listings.
  StatusOr<Listing> GetOwnListing(Db* db, const Caller& c, std::string_view artifact_id) {
    KVMART_ASSIGN_OR_RETURN(Listing l, GetListing(db, artifact_id));
    if (l.publisher != c.account && (c.scopes & kScopeAdmin) == 0) return NotListed(artifact_id);
    return l;
  }

  StatusOr<Quote> MakeQuote(const Listing& l, const PurchaseRequest& req) {
    Quote q;
    q.artifact_id = l.spec.artifact_id;
    q.kind = req.kind;
    q.tokens = l.spec.tokens;
    Currency cur = l.spec.currency;
    q.upfront = q.per_load = q.provider_fee = Money::Zero(cur);
    KVMART_ASSIGN_OR_RETURN(q.fresh_prefill_cost, FreshPrefillCost(opt.cost_model, l.spec.tokens, cur));
    switch (req.kind) {
      case PurchaseKind::kMetered: {
        if (req.quantity <= 0) return Status::InvalidArgument("quantity (loads) must be > 0");
        q.loads = req.quantity;
        q.per_load = l.per_load;
        KVMART_ASSIGN_OR_RETURN(Split s, SplitCharge(opt.fees, q.per_load));
        q.provider_fee = s.provider;
        break;
      }
      case PurchaseKind::kBundle: {
        if (l.spec.bundle_loads <= 0) return Status::FailedPrecondition("artifact " + l.spec.artifact_id + " offers no bundle");
        if (req.quantity <= 0) return Status::InvalidArgument("quantity (bundles) must be > 0");
        KVMART_ASSIGN_OR_RETURN(q.loads, CheckedMulI64(l.spec.bundle_loads, req.quantity));
        KVMART_ASSIGN_OR_RETURN(q.upfront, CheckedMul(Money(l.spec.bundle_price_micros, cur), req.quantity));
        KVMART_ASSIGN_OR_RETURN(Split s, SplitCharge(opt.fees, q.upfront));
        q.provider_fee = s.provider;
        break;
      }
      case PurchaseKind::kUnlimited: {
        if (l.spec.unlimited_seconds <= 0) return Status::FailedPrecondition("artifact " + l.spec.artifact_id + " offers no unlimited plan");
        q.loads = 0;
        q.upfront = Money(l.spec.unlimited_price_micros, cur);
        KVMART_ASSIGN_OR_RETURN(q.expires_at, CheckedAddI64(Now(), l.spec.unlimited_seconds));
        KVMART_ASSIGN_OR_RETURN(Split s, SplitCharge(opt.fees, q.upfront));
        q.provider_fee = s.provider;
        break;
      }
    }
    return q;
  }

  // Signs a receipt and registers it in the same transaction as the event, so
  // the audit can check every receipt against its ledger row.
  StatusOr<std::string> SignReceipt(Db* db, Receipt r) {
    r.receipt_id = "rcpt-" + r.kind + "-" + std::to_string(r.ledger_txn) + "-" + std::to_string(r.entitlement) + "-" +
                   std::to_string(r.load);
    r.provider_key = provider_pk_hex;
    r.time = Now();
    std::string signed_json = opt.provider_key.Sign(r);
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "INSERT INTO receipts(receipt_id, kind, account_id, ledger_txn, load_id, body, created_at) VALUES(?,?,?,?,?,?,?)"));
    st->Bind(1, r.receipt_id).Bind(2, r.kind).Bind(3, r.account).Bind(4, r.ledger_txn).Bind(5, r.load)
        .Bind(6, signed_json).Bind(7, r.time);
    KVMART_RETURN_IF_ERROR(st->Run());
    return signed_json;
  }

  // The entitlement a load of artifact_id by `account` draws on: prepaid first
  // (unlimited, then bundles), oldest first; metered last.
  struct PickedEntitlement {
    int64_t id = 0;
    std::string kind;
    std::optional<int64_t> remaining;
    int64_t per_load = 0;
    int64_t expires_at = 0;
  };
  StatusOr<PickedEntitlement> PickEntitlement(Db* db, AccountId account, std::string_view artifact_id, int64_t now) {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "SELECT id, kind, loads_remaining, per_load, expires_at FROM entitlements WHERE account_id=? AND artifact_id=? "
        "AND " KVMART_LIVE_ENTITLEMENT " "
        "ORDER BY CASE kind WHEN 'unlimited' THEN 0 WHEN 'bundle' THEN 1 ELSE 2 END, id LIMIT 1"));
    st->Bind(1, account).Bind(2, artifact_id).Bind(3, now);
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    // Same answer for "never listed", "not bought", "expired", "used up":
    // authorisation must not reveal what the provider holds.
    if (!row) return Status::PermissionDenied("no valid entitlement to load " + std::string(artifact_id));
    return PickedEntitlement{st->Int(0), st->Text(1), st->OptInt(2), st->Int(3), st->Int(4)};
  }

  // Phase one: decrement the entitlement and hold the metered price on the
  // buyer (accounts.pending), failing with ResourceExhausted if the buyer's
  // available money (balance - pending + credit limit) does not cover it.
  StatusOr<json> ReserveIn(Db* db, AccountId account, std::string_view artifact_id, const PickedEntitlement* forced) {
    const int64_t now = Now();
    PickedEntitlement e;
    if (forced != nullptr) {
      e = *forced;
    } else {
      KVMART_ASSIGN_OR_RETURN(e, PickEntitlement(db, account, artifact_id, now));
    }
    KVMART_ASSIGN_OR_RETURN(Listing l, GetListing(db, artifact_id));
    int64_t price = (e.kind == "metered") ? e.per_load : 0;
    if (price > 0) {
      KVMART_ASSIGN_OR_RETURN(AccountRow a, GetAccountRow(db, account));
      if (!(a.currency == l.spec.currency)) return Status::InvalidArgument("account holds " + a.currency.str());
      KVMART_ASSIGN_OR_RETURN(int64_t np, CheckedAddI64(a.pending, price));
      if (a.balance - np < -a.credit_limit) {
        return Status::InsufficientFunds("insufficient funds in account " + std::to_string(account) + ": available " +
                                         Money(a.balance - a.pending, a.currency).ToString() + ", needs " +
                                         Money(price, a.currency).ToString());
      }
      KVMART_ASSIGN_OR_RETURN(auto up, db->Prepare("UPDATE accounts SET pending=? WHERE id=?"));
      up->Bind(1, np).Bind(2, account);
      KVMART_RETURN_IF_ERROR(up->Run());
    }
    if (e.remaining) {
      KVMART_ASSIGN_OR_RETURN(auto dec, db->Prepare("UPDATE entitlements SET loads_remaining=loads_remaining-1 WHERE id=?"));
      dec->Bind(1, e.id);
      KVMART_RETURN_IF_ERROR(dec->Run());
    }
    KVMART_ASSIGN_OR_RETURN(int64_t expires, CheckedAddI64(now, opt.reservation_seconds));
    KVMART_ASSIGN_OR_RETURN(auto ins, db->Prepare(
        "INSERT INTO loads(entitlement_id, account_id, artifact_id, tokens, charged, charge_txn, created_at, phases, state, "
        "expires_at) VALUES(?,?,?,?,?,NULL,?,2,'pending',?) RETURNING id"));
    ins->Bind(1, e.id).Bind(2, account).Bind(3, artifact_id).Bind(4, l.spec.tokens).Bind(5, price).Bind(6, now)
        .Bind(7, expires);
    KVMART_ASSIGN_OR_RETURN(const int64_t load, InsertedId(*ins));
    json left = nullptr;  // unlimited
    if (e.remaining) left = *e.remaining - 1;
    return json{{"load", load}, {"entitlement", e.id}, {"tokens", l.spec.tokens},
                {"reserved", MoneyJson(Money(price, l.spec.currency))}, {"expires_at", expires},
                {"entitlement_loads_left", left}, {"entitlement_expires_at", e.expires_at}};
  }

  // Phase two: post (charge the held price, sign the load receipt) or void
  // (release the hold, give the entitlement its load back, no receipt). The
  // schema refuses a second resolution even if this code had a bug.
  StatusOr<json> ResolveIn(Db* db, AccountId account, int64_t load, bool post, std::string_view reason) {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "SELECT entitlement_id, account_id, artifact_id, tokens, charged, state, expires_at, phases FROM loads WHERE id=?"));
    st->Bind(1, load);
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row || st->Int(1) != account) return Status::NotFound("no load " + std::to_string(load) + " for this account");
    const int64_t ent = st->Int(0);
    const std::string artifact = st->Text(2);
    const int64_t tokens = st->Int(3), price = st->Int(4), expires = st->Int(6);
    const std::string state = st->Text(5);
    if (st->Int(7) != 2) return Status::FailedPrecondition("load " + std::to_string(load) + " was not reserved");
    st.reset();
    if (state != "pending") return Status::FailedPrecondition("load " + std::to_string(load) + " was already " + state);
    const int64_t now = Now();
    // A post after expiry is refused: the sweeper may void it at any moment,
    // and a hold must never be resolved both ways.
    if (post && now >= expires) {
      return Status::FailedPrecondition("the reservation of load " + std::to_string(load) + " has expired");
    }
    KVMART_ASSIGN_OR_RETURN(Listing l, GetListing(db, artifact));
    if (price > 0) {
      KVMART_ASSIGN_OR_RETURN(auto up, db->Prepare("UPDATE accounts SET pending=pending-? WHERE id=?"));
      up->Bind(1, price).Bind(2, account);
      KVMART_RETURN_IF_ERROR(up->Run());
    }
    std::optional<int64_t> txn;
    if (post && price > 0) {
      KVMART_ASSIGN_OR_RETURN(txn, PostCharge(db, "load", artifact, account, l.publisher, Money(price, l.spec.currency)));
    }
    if (!post) {
      KVMART_ASSIGN_OR_RETURN(auto inc, db->Prepare(
          "UPDATE entitlements SET loads_remaining=loads_remaining+1 WHERE id=? AND loads_remaining IS NOT NULL"));
      inc->Bind(1, ent);
      KVMART_RETURN_IF_ERROR(inc->Run());
    }
    const char* outcome = post ? "posted" : "voided";
    KVMART_ASSIGN_OR_RETURN(auto res, db->Prepare(
        "INSERT INTO load_resolutions(load_id, outcome, txn_id, reason, resolved_at) VALUES(?,?,?,?,?)"));
    res->Bind(1, load).Bind(2, std::string_view(outcome)).Bind(3, txn).Bind(4, reason.substr(0, 500)).Bind(5, now);
    KVMART_RETURN_IF_ERROR(res->Run());
    KVMART_ASSIGN_OR_RETURN(auto up, db->Prepare(post ? "UPDATE loads SET state='posted', charge_txn=? WHERE id=?"
                                                      : "UPDATE loads SET state='voided', charged=0, charge_txn=? WHERE id=?"));
    up->Bind(1, txn).Bind(2, load);
    KVMART_RETURN_IF_ERROR(up->Run());
    if (!post) return json{{"load", load}, {"voided", true}};
    Receipt rc;
    rc.kind = "load";
    rc.account = account;
    rc.artifact_id = artifact;
    rc.tokens_reused = tokens;
    rc.price_micros = price;
    rc.currency = l.spec.currency.str();
    rc.ledger_txn = txn.value_or(0);
    rc.entitlement = ent;
    rc.load = load;
    KVMART_ASSIGN_OR_RETURN(std::string signed_rc, SignReceipt(db, rc));
    return json{{"load", load}, {"entitlement", ent}, {"tokens", tokens},
                {"charged", MoneyJson(Money(price, l.spec.currency))}, {"receipt", signed_rc}};
  }

  // Runs fn in one write transaction without a caller key (provider
  // maintenance: the sweeper, storage billing, key-less paid loads).
  template <typename T, typename Fn>
  StatusOr<T> RunSystemWrite(Fn&& fn) {
    return Retried<T>(true, [&]() -> StatusOr<T> {
      KVMART_ASSIGN_OR_RETURN(Lease lease, Acquire());
      Db* db = lease.get();
      auto writer = WriterLock();
      sql::WriteTxn txn(db);
      KVMART_RETURN_IF_ERROR(txn.Begin());
      KVMART_ASSIGN_OR_RETURN(T out, fn(db));
      KVMART_RETURN_IF_ERROR(txn.Commit());
      return out;
    });
  }

  // Runs fn in one read snapshot without a caller key (the provider's own
  // bookkeeping).
  template <typename T, typename Fn>
  StatusOr<T> RunSystemRead(Fn&& fn) {
    return Retried<T>(false, [&]() -> StatusOr<T> {
      KVMART_ASSIGN_OR_RETURN(Lease lease, Acquire());
      Db* db = lease.get();
      sql::ReadTxn txn(db);
      KVMART_RETURN_IF_ERROR(txn.Begin());
      return fn(db);
    });
  }

  // Sale proceeds younger than the hold period stay unpaid: the load they
  // came from could still be refunded or disputed.
  StatusOr<Earnings> EarningsIn(Db* db, AccountId account) {
    KVMART_ASSIGN_OR_RETURN(AccountRow a, GetAccountRow(db, account));
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "SELECT COALESCE(SUM(e.amount), 0) FROM entries e JOIN txns t ON t.id=e.txn_id "
        "WHERE e.account_id=? AND e.role='publisher' AND t.kind IN ('purchase','load','refund') AND t.created_at>?"));
    st->Bind(1, account).Bind(2, Now() - opt.payout_hold_seconds);
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    const int64_t held = std::max<int64_t>(0, row ? st->Int(0) : 0);
    Earnings e;
    e.balance = Money(a.balance, a.currency);
    e.pending = Money(a.pending, a.currency);
    e.held = Money(held, a.currency);
    e.available = Money(std::max<int64_t>(0, a.balance - a.pending - held), a.currency);
    e.min_payout = Money(opt.min_payout_micros, a.currency);
    e.hold_seconds = opt.payout_hold_seconds;
    return e;
  }

  StatusOr<int64_t> VoidExpired(Db* db) {
    std::vector<std::pair<int64_t, AccountId>> expired;
    {
      KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT id, account_id FROM loads WHERE state='pending' AND expires_at<=?"));
      st->Bind(1, Now());
      for (;;) {
        KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
        if (!row) break;
        expired.emplace_back(st->Int(0), st->Int(1));
      }
    }
    for (const auto& [load, account] : expired) {
      KVMART_RETURN_IF_ERROR(ResolveIn(db, account, load, false, "reservation expired").status());
    }
    return static_cast<int64_t>(expired.size());
  }

  // The idempotent write skeleton shared by every mutating call:
  //   BEGIN IMMEDIATE → authenticate (+scope) → look up (account, idem key):
  //   same op and request hash → return the stored response; different → reject;
  //   none → do the work, store its response, COMMIT.
  // A failed call stores nothing, so the ledger is untouched and a later retry
  // (say, after a deposit) may succeed. Busy databases are retried.
  template <typename Fn>
  StatusOr<json> RunWrite(std::string_view op, std::string_view api_key, std::string_view idem, uint32_t scope,
                          const json& request, Fn&& fn) {
    if (idem.empty() || idem.size() > 200) return Status::InvalidArgument("an idempotency key of 1-200 bytes is required");
    std::string req_text = std::string(op) + "\n" + CanonicalJson(request);
    Digest256 req_hash = Sha256Of(req_text);
    return Retried<json>(true, [&] { return TryWrite(op, api_key, idem, scope, req_hash, fn); });
  }

  template <typename Fn>
  StatusOr<json> TryWrite(std::string_view op, std::string_view api_key, std::string_view idem, uint32_t scope,
                          const Digest256& req_hash, Fn& fn) {
    KVMART_ASSIGN_OR_RETURN(Lease lease, Acquire());
    Db* db = lease.get();
    auto writer = WriterLock();
    sql::WriteTxn txn(db);
    KVMART_RETURN_IF_ERROR(txn.Begin());
    KVMART_ASSIGN_OR_RETURN(Caller caller, Auth(db, api_key, scope));
    {
      KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT op, request_hash, response FROM idempotency WHERE account_id=? AND idem_key=?"));
      st->Bind(1, caller.account).Bind(2, idem);
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      if (row) {
        std::string stored_hash = st->Blob(1);
        if (st->Text(0) != op || stored_hash.size() != req_hash.size() ||
            std::memcmp(req_hash.data(), stored_hash.data(), req_hash.size()) != 0) {
          return Status::FailedPrecondition("idempotency key '" + std::string(idem) +
                                            "' was already used for a different request (" + st->Text(0) + ")");
        }
        json stored = json::parse(st->Text(2), nullptr, false);
        if (stored.is_discarded()) return Status::Corruption("stored idempotent response is not JSON");
        stored["replayed"] = true;
        return stored;
      }
    }
    KVMART_ASSIGN_OR_RETURN(json result, fn(db, caller));
    json stored = result;
    stored.erase("secret");  // an API key secret is shown once, never stored
    KVMART_ASSIGN_OR_RETURN(auto ins, db->Prepare(
        "INSERT INTO idempotency(account_id, idem_key, op, request_hash, response, created_at) VALUES(?,?,?,?,?,?)"));
    ins->Bind(1, caller.account).Bind(2, idem).Bind(3, op).BindBlob(4, req_hash.data(), req_hash.size())
        .Bind(5, stored.dump()).Bind(6, Now());
    KVMART_RETURN_IF_ERROR(ins->Run());
    KVMART_RETURN_IF_ERROR(txn.Commit());
    return result;
  }

  // Reads: authenticate then run fn inside one snapshot.
  template <typename T, typename Fn>
  StatusOr<T> RunRead(std::string_view api_key, uint32_t scope, Fn&& fn) {
    return Retried<T>(false, [&]() -> StatusOr<T> {
      KVMART_ASSIGN_OR_RETURN(Lease lease, Acquire());
      Db* db = lease.get();
      sql::ReadTxn txn(db);
      KVMART_RETURN_IF_ERROR(txn.Begin());
      KVMART_ASSIGN_OR_RETURN(Caller caller, Auth(db, api_key, scope));
      return fn(db, caller);
    });
  }

  // A caller may read its own account; an admin any account.
  static Status CanRead(const Caller& c, AccountId account) {
    if (c.account == account || (c.scopes & kScopeAdmin)) return Status::Ok();
    return Status::PermissionDenied("key may not read account " + std::to_string(account));
  }

  // The schema version: PRAGMA user_version on SQLite, the one-row
  // schema_version table on PostgreSQL (created empty on first use).
  StatusOr<int64_t> SchemaVersion(Db* db) {
    if (db->dialect() == sql::Dialect::kSqlite) {
      KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("PRAGMA user_version"));
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      return row ? st->Int(0) : 0;
    }
    KVMART_RETURN_IF_ERROR(db->Exec("CREATE TABLE IF NOT EXISTS schema_version(version BIGINT NOT NULL)"));
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT version FROM schema_version"));
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    return row ? st->Int(0) : 0;
  }

  Status SetSchemaVersion(Db* db, int64_t v) {
    if (db->dialect() == sql::Dialect::kSqlite) return db->Exec("PRAGMA user_version=" + std::to_string(v));
    KVMART_RETURN_IF_ERROR(db->Exec("DELETE FROM schema_version"));
    return db->Exec("INSERT INTO schema_version(version) VALUES(" + std::to_string(v) + ")");
  }

  // Brings the schema to the version this build writes. `upgrade` false only
  // checks (what a node that must not migrate on its own does).
  Status Migrate(Db* db, bool upgrade, bool bind_provider_key = true) {
    const char* const* migrations = db->dialect() == sql::Dialect::kSqlite ? kSqliteMigrations : kPostgresMigrations;
    sql::WriteTxn txn(db);
    KVMART_RETURN_IF_ERROR(txn.Begin());
    if (db->dialect() == sql::Dialect::kPostgres) {
      // Nodes starting together would otherwise race to create the tables:
      // the first migrates, the others wait here and then find it done.
      KVMART_RETURN_IF_ERROR(db->Exec("SELECT pg_advisory_xact_lock(7317402112)"));
    }
    KVMART_ASSIGN_OR_RETURN(int64_t version, SchemaVersion(db));
    if (version > kSchemaVersion) {
      return Status::FailedPrecondition("market database schema v" + std::to_string(version) +
                                        " is newer than this build (v" + std::to_string(kSchemaVersion) + ")");
    }
    if (version < kSchemaVersion && !upgrade) {
      return Status::FailedPrecondition("market database schema v" + std::to_string(version) + " is older than this build (v" +
                                        std::to_string(kSchemaVersion) + "): run `kvmart admin migrate`");
    }
    for (int64_t v = version; v < kSchemaVersion; ++v) {
      KVMART_RETURN_IF_ERROR(db->Exec(migrations[v]));
      KVMART_RETURN_IF_ERROR(SetSchemaVersion(db, v + 1));
    }
    if (!bind_provider_key) return txn.Commit();
    // Bind the file to one provider key: receipts signed by two keys for one
    // ledger would make offline verification ambiguous.
    KVMART_ASSIGN_OR_RETURN(auto get, db->Prepare("SELECT v FROM meta WHERE k='provider_public_key'"));
    KVMART_ASSIGN_OR_RETURN(bool has, get->Step());
    if (has) {
      if (get->Text(0) != provider_pk_hex) {
        return Status::FailedPrecondition("market database belongs to provider key " + get->Text(0) + ", not " + provider_pk_hex);
      }
    } else {
      KVMART_ASSIGN_OR_RETURN(auto put, db->Prepare("INSERT INTO meta(k, v) VALUES('provider_public_key', ?)"));
      put->Bind(1, provider_pk_hex);
      KVMART_RETURN_IF_ERROR(put->Run());
    }
    get.reset();
    return txn.Commit();
  }
};

SqlMarket::SqlMarket(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SqlMarket::~SqlMarket() = default;

namespace {

std::unique_ptr<SqlMarket::Impl> NewImpl(const std::string& location, MarketOptions options) {
  auto impl = std::make_unique<SqlMarket::Impl>();
  impl->location = location;
  impl->dialect = postgres::IsPostgresUrl(location) ? sql::Dialect::kPostgres : sql::Dialect::kSqlite;
  impl->opt = std::move(options);
  impl->provider_pk_hex = impl->opt.provider_key.PublicKeyHex();
  return impl;
}

// Where a market lives, for messages: a URL without its password.
std::string Describe(const std::string& location) { return postgres::RedactUrl(location); }

}  // namespace

StatusOr<std::unique_ptr<SqlMarket>> SqlMarket::Open(const std::string& location, MarketOptions options) {
  KVMART_RETURN_IF_ERROR(ValidateCostModel(options.cost_model));
  KVMART_RETURN_IF_ERROR(ValidateFeeSchedule(options.fees));
  auto impl = NewImpl(location, std::move(options));
  const std::string where = "market " + Describe(location);
  {
    auto acquired = impl->Acquire();
    if (!acquired.ok()) return acquired.status().WithContext(where);
    Impl::Lease lease = std::move(acquired).value();
    Status s;
    for (int attempt = 0; attempt <= impl->opt.max_busy_retries; ++attempt) {
      impl->Backoff(attempt);
      s = impl->Migrate(lease.get(), impl->opt.migrate);
      if (!sql::IsRetryable(s)) break;
    }
    KVMART_RETURN_IF_ERROR(s.WithContext(where));
  }
  auto market = std::make_unique<SqlMarket>(std::move(impl));
  // Holds left pending by a crashed process are released once they expire.
  KVMART_RETURN_IF_ERROR(market->VoidExpiredLoads().status().WithContext(where + ": voiding expired loads"));
  return market;
}

StatusOr<SchemaMigration> SqlMarket::MigrateSchema(const std::string& location, bool apply) {
  MarketOptions options;
  auto impl = NewImpl(location, std::move(options));
  const std::string where = "market " + Describe(location);
  auto acquired = impl->Acquire();
  if (!acquired.ok()) return acquired.status().WithContext(where);
  Impl::Lease lease = std::move(acquired).value();
  SchemaMigration m;
  m.target = kSchemaVersion;
  {
    sql::ReadTxn txn(lease.get());
    if (impl->dialect == sql::Dialect::kSqlite) KVMART_RETURN_IF_ERROR(txn.Begin().WithContext(where));
    auto version = impl->SchemaVersion(lease.get());
    if (!version.ok()) return version.status().WithContext(where);
    m.from = *version;
  }
  m.to = m.from;
  if (m.from > kSchemaVersion) {
    return Status::FailedPrecondition(where + ": schema v" + std::to_string(m.from) + " is newer than this build (v" +
                                      std::to_string(kSchemaVersion) + ")");
  }
  if (!apply || m.from == kSchemaVersion) return m;
  Status s;
  for (int attempt = 0; attempt <= impl->opt.max_busy_retries; ++attempt) {
    impl->Backoff(attempt);
    s = impl->Migrate(lease.get(), /*upgrade=*/true, /*bind_provider_key=*/false);
    if (!sql::IsRetryable(s)) break;
  }
  KVMART_RETURN_IF_ERROR(s.WithContext(where));
  m.to = kSchemaVersion;
  return m;
}

std::string SqlMarket::ProviderPublicKey() const { return impl_->provider_pk_hex; }

StatusOr<Bootstrap> SqlMarket::Initialize(Currency currency, const KeepBootstrap& keep) {
  KVMART_ASSIGN_OR_RETURN(Impl::Lease lease, impl_->Acquire());
  Db* db = lease.get();
  auto writer = impl_->WriterLock();
  sql::WriteTxn txn(db);
  KVMART_RETURN_IF_ERROR(txn.Begin());
  {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("SELECT v FROM meta WHERE k='initialized'"));
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (row) return Status::AlreadyExists("market already initialised");
  }
  Bootstrap b;
  KVMART_ASSIGN_OR_RETURN(b.provider_account, impl_->SystemAccount(db, "provider", currency));
  KVMART_RETURN_IF_ERROR(impl_->SystemAccount(db, "external", currency).status());
  NewApiKey key = GenerateApiKey();
  KVMART_ASSIGN_OR_RETURN(auto ins, db->Prepare("INSERT INTO api_keys(account_id, key_hash, scopes, created_at) VALUES(?,?,?,?)"));
  ins->Bind(1, b.provider_account).BindBlob(2, key.hash.data(), key.hash.size()).Bind(3, int64_t{kAllScopes}).Bind(4, impl_->Now());
  KVMART_RETURN_IF_ERROR(ins->Run());
  KVMART_ASSIGN_OR_RETURN(auto mark, db->Prepare("INSERT INTO meta(k, v) VALUES('initialized', ?)"));
  mark->Bind(1, currency.str());
  KVMART_RETURN_IF_ERROR(mark->Run());
  b.admin_key = key.secret;
  b.provider_public_key = impl_->provider_pk_hex;
  if (keep) KVMART_RETURN_IF_ERROR(keep(b));
  KVMART_RETURN_IF_ERROR(txn.Commit());
  return b;
}

StatusOr<AccountId> SqlMarket::CreateAccount(std::string_view api_key, std::string_view idem,
                                                const CreateAccountRequest& req) {
  if (req.name.empty()) return Status::InvalidArgument("account name is required");
  if (req.credit_limit_micros < 0) return Status::InvalidArgument("credit limit must be >= 0");
  json request{{"name", req.name}, {"currency", req.currency.str()}, {"credit_limit", req.credit_limit_micros}};
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunWrite("account.create", api_key, idem, kScopeAdmin, request,
      [&](Db* db, const Caller&) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("INSERT INTO accounts(name, currency, credit_limit, created_at) VALUES(?,?,?,?) RETURNING id"));
        st->Bind(1, req.name).Bind(2, req.currency.str()).Bind(3, req.credit_limit_micros).Bind(4, impl_->Now());
        KVMART_ASSIGN_OR_RETURN(const int64_t inserted, InsertedId(*st));
        return json{{"account", inserted}};
      }));
  return r.at("account").get<int64_t>();
}

StatusOr<CreatedKey> SqlMarket::CreateKey(std::string_view api_key, std::string_view idem, AccountId account,
                                             uint32_t scopes) {
  if (scopes == 0 || (scopes & ~kAllScopes) != 0) return Status::InvalidArgument("invalid scopes");
  json request{{"account", account}, {"scopes", scopes}};
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunWrite("key.create", api_key, idem, kScopeAdmin, request,
      [&](Db* db, const Caller&) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(auto acct, impl_->GetAccountRow(db, account));
        (void)acct;
        NewApiKey key = GenerateApiKey();
        KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("INSERT INTO api_keys(account_id, key_hash, scopes, created_at) VALUES(?,?,?,?) RETURNING id"));
        st->Bind(1, account).BindBlob(2, key.hash.data(), key.hash.size()).Bind(3, int64_t{scopes}).Bind(4, impl_->Now());
        KVMART_ASSIGN_OR_RETURN(const int64_t inserted, InsertedId(*st));
        return json{{"key_id", inserted}, {"account", account}, {"scopes", scopes}, {"secret", key.secret}};
      }));
  CreatedKey k;
  k.key_id = r.at("key_id").get<int64_t>();
  k.account = r.at("account").get<int64_t>();
  k.scopes = r.at("scopes").get<uint32_t>();
  k.secret = r.value("secret", std::string());
  return k;
}

Status SqlMarket::RevokeKey(std::string_view api_key, std::string_view idem, int64_t key_id) {
  json request{{"key_id", key_id}};
  return impl_->RunWrite("key.revoke", api_key, idem, kScopeAdmin, request,
      [&](Db* db, const Caller&) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL"));
        st->Bind(1, impl_->Now()).Bind(2, key_id);
        KVMART_RETURN_IF_ERROR(st->Run());
        if (st->Changes() != 1) return Status::NotFound("no active key " + std::to_string(key_id));
        return json{{"revoked", key_id}};
      }).status();
}

StatusOr<std::string> SqlMarket::Deposit(std::string_view api_key, std::string_view idem, AccountId account,
                                            const Money& amount) {
  if (amount.micros() <= 0) return Status::InvalidArgument("deposit must be > 0, got " + amount.ToString());
  json request{{"account", account}, {"amount", MoneyJson(amount)}};
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunWrite("deposit", api_key, idem, kScopeAdmin, request,
      [&](Db* db, const Caller&) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(auto acct, impl_->GetAccountRow(db, account));
        if (acct.system) return Status::InvalidArgument("cannot deposit into a system account");
        if (!(acct.currency == amount.currency())) {
          return Status::InvalidArgument("account " + std::to_string(account) + " holds " + acct.currency.str());
        }
        KVMART_ASSIGN_OR_RETURN(AccountId ext, impl_->SystemAccount(db, "external", amount.currency()));
        KVMART_ASSIGN_OR_RETURN(Money neg, CheckedNeg(amount));
        KVMART_ASSIGN_OR_RETURN(int64_t txn, impl_->Post(db, "deposit", "", std::nullopt,
                                                         {{ext, neg, "external"}, {account, amount, "deposit"}}));
        Receipt rc;
        rc.kind = "deposit";
        rc.account = account;
        rc.price_micros = amount.micros();
        rc.currency = amount.currency().str();
        rc.ledger_txn = txn;
        KVMART_ASSIGN_OR_RETURN(std::string signed_rc, impl_->SignReceipt(db, rc));
        return json{{"receipt", signed_rc}};
      }));
  return r.at("receipt").get<std::string>();
}

StatusOr<std::string> SqlMarket::ChargeStorage(std::string_view api_key, std::string_view idem,
                                                  std::string_view artifact_id, int64_t seconds) {
  if (seconds <= 0) return Status::InvalidArgument("storage period must be > 0 seconds");
  json request{{"artifact_id", artifact_id}, {"seconds", seconds}};
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunWrite("storage.charge", api_key, idem, kScopeAdmin, request,
      [&](Db* db, const Caller&) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(Listing l, impl_->GetListing(db, artifact_id));
        KVMART_ASSIGN_OR_RETURN(Money amt, StorageCharge(impl_->opt.fees, l.spec.stored_bytes, seconds, l.spec.currency));
        return impl_->PostProviderCharge(db, "storage", artifact_id, l.publisher, "publisher", amt);
      }));
  return r.at("receipt").get<std::string>();
}

StatusOr<Listing> SqlMarket::SetPrice(std::string_view api_key, std::string_view idem, const PriceSpec& spec) {
  if (!ValidArtifactId(spec.artifact_id)) return Status::InvalidArgument("artifact id must be kv1-<64 lower-case hex>");
  if (spec.tokens < 0 || spec.stored_bytes < 0 || spec.bundle_loads < 0 || spec.bundle_price_micros < 0 ||
      spec.unlimited_seconds < 0 || spec.unlimited_price_micros < 0 || (spec.per_load_micros && *spec.per_load_micros < 0)) {
    return Status::InvalidArgument("prices, counts and sizes must be >= 0");
  }
  json request{{"artifact_id", spec.artifact_id}, {"tokens", spec.tokens}, {"stored_bytes", spec.stored_bytes},
               {"currency", spec.currency.str()}, {"per_load", spec.per_load_micros ? json(*spec.per_load_micros) : json()},
               {"bundle_loads", spec.bundle_loads}, {"bundle_price", spec.bundle_price_micros},
               {"unlimited_seconds", spec.unlimited_seconds}, {"unlimited_price", spec.unlimited_price_micros},
               {"visibility", spec.visibility ? json(VisibilityName(*spec.visibility)) : json()}};
  const std::optional<int64_t> private_flag =
      spec.visibility ? std::optional<int64_t>(*spec.visibility == Visibility::kPrivate) : std::nullopt;
  KVMART_RETURN_IF_ERROR(impl_->RunWrite("price.set", api_key, idem, kScopePublish, request,
      [&](Db* db, const Caller& c) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(auto acct, impl_->GetAccountRow(db, c.account));
        if (!(acct.currency == spec.currency)) {
          return Status::InvalidArgument("publisher account holds " + acct.currency.str() + ", price is in " + spec.currency.str());
        }
        auto existing = impl_->GetListing(db, spec.artifact_id);
        if (existing.ok() && existing->publisher != c.account) {
          return Status::PermissionDenied("artifact " + spec.artifact_id + " is listed by another publisher");
        }
        KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
            // An upsert, not INSERT OR REPLACE: repricing must not wipe the
            // listing's storage arrears or its unlisting.
            "INSERT INTO listings(artifact_id, publisher, tokens, stored_bytes, currency, per_load, bundle_loads, "
            "bundle_price, unlimited_seconds, unlimited_price, updated_at, private) VALUES(?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(artifact_id) DO UPDATE SET publisher=excluded.publisher, tokens=excluded.tokens, "
            "stored_bytes=excluded.stored_bytes, currency=excluded.currency, per_load=excluded.per_load, "
            "bundle_loads=excluded.bundle_loads, bundle_price=excluded.bundle_price, "
            "unlimited_seconds=excluded.unlimited_seconds, unlimited_price=excluded.unlimited_price, "
            // A repricing that names no visibility keeps the listing's.
            "updated_at=excluded.updated_at, private=COALESCE(CAST(? AS BIGINT), listings.private), "
            // A republish of a removed artifact lists it again, unless it
            // was (also) unlisted for storage arrears: paying them relists.
            "unlisted_at=CASE WHEN listings.removed_at IS NOT NULL AND listings.unpaid_since IS NULL THEN NULL "
            "ELSE listings.unlisted_at END, removed_at=NULL"));
        st->Bind(1, spec.artifact_id).Bind(2, c.account).Bind(3, spec.tokens).Bind(4, spec.stored_bytes)
            .Bind(5, spec.currency.str()).Bind(6, spec.per_load_micros).Bind(7, spec.bundle_loads)
            .Bind(8, spec.bundle_price_micros).Bind(9, spec.unlimited_seconds).Bind(10, spec.unlimited_price_micros)
            .Bind(11, impl_->Now()).Bind(12, private_flag.value_or(0)).Bind(13, private_flag);
        KVMART_RETURN_IF_ERROR(st->Run());
        return json{{"artifact_id", spec.artifact_id}};
      }).status());
  // The listing is immutable history-free state: read it back after the write.
  return impl_->RunRead<Listing>(api_key, 0, [&](Db* db, const Caller&) { return impl_->GetListing(db, spec.artifact_id); });
}

Status SqlMarket::GrantAccess(std::string_view api_key, std::string_view idem, std::string_view artifact_id,
                              AccountId grantee) {
  json request{{"artifact_id", artifact_id}, {"account", grantee}};
  return impl_->RunWrite("listing.grant", api_key, idem, kScopePublish, request,
      [&](Db* db, const Caller& c) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(Listing l, impl_->GetOwnListing(db, c, artifact_id));
        KVMART_RETURN_IF_ERROR(impl_->GetAccountRow(db, grantee).status());
        KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
            "INSERT INTO listing_grants(artifact_id, account_id, created_at) VALUES(?,?,?) "
            "ON CONFLICT(artifact_id, account_id) DO NOTHING"));
        st->Bind(1, l.spec.artifact_id).Bind(2, grantee).Bind(3, impl_->Now());
        KVMART_RETURN_IF_ERROR(st->Run());
        return json{{"artifact_id", l.spec.artifact_id}, {"account", grantee}};
      }).status();
}

Status SqlMarket::RevokeAccess(std::string_view api_key, std::string_view idem, std::string_view artifact_id,
                               AccountId grantee) {
  json request{{"artifact_id", artifact_id}, {"account", grantee}};
  return impl_->RunWrite("listing.revoke", api_key, idem, kScopePublish, request,
      [&](Db* db, const Caller& c) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(Listing l, impl_->GetOwnListing(db, c, artifact_id));
        KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare("DELETE FROM listing_grants WHERE artifact_id=? AND account_id=?"));
        st->Bind(1, l.spec.artifact_id).Bind(2, grantee);
        KVMART_RETURN_IF_ERROR(st->Run());
        return json{{"artifact_id", l.spec.artifact_id}, {"account", grantee}};
      }).status();
}

Status SqlMarket::RemoveListing(std::string_view api_key, std::string_view idem, std::string_view artifact_id) {
  json request{{"artifact_id", artifact_id}};
  return impl_->RunWrite("listing.remove", api_key, idem, kScopeAdmin, request,
      [&](Db* db, const Caller&) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(Listing l, impl_->GetListing(db, artifact_id));
        const int64_t now = impl_->Now();
        KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
            "UPDATE listings SET removed_at=COALESCE(removed_at, ?), unlisted_at=COALESCE(unlisted_at, ?) "
            "WHERE artifact_id=?"));
        st->Bind(1, now).Bind(2, now).Bind(3, l.spec.artifact_id);
        KVMART_RETURN_IF_ERROR(st->Run());
        return json{{"artifact_id", l.spec.artifact_id}, {"removed", true}};
      }).status();
}

StatusOr<std::vector<AccountId>> SqlMarket::Grantees(std::string_view api_key, std::string_view artifact_id) {
  return impl_->RunRead<std::vector<AccountId>>(api_key, kScopePublish,
      [&](Db* db, const Caller& c) -> StatusOr<std::vector<AccountId>> {
        KVMART_ASSIGN_OR_RETURN(Listing l, impl_->GetOwnListing(db, c, artifact_id));
        KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
            "SELECT account_id FROM listing_grants WHERE artifact_id=? ORDER BY account_id"));
        st->Bind(1, l.spec.artifact_id);
        std::vector<AccountId> out;
        for (;;) {
          KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
          if (!row) break;
          out.push_back(st->Int(0));
        }
        return out;
      });
}

StatusOr<std::vector<Listing>> SqlMarket::VisibleListings(std::string_view api_key) {
  return impl_->RunRead<std::vector<Listing>>(api_key, 0, [&](Db* db, const Caller& c) -> StatusOr<std::vector<Listing>> {
    // One statement for every kind of visibility, so the answer's cost does
    // not depend on how many private listings others hold.
    const std::string text =
        std::string("SELECT ") + Impl::kListingColumns +
        " FROM listings l WHERE l.unlisted_at IS NULL AND (l.private = 0 OR l.publisher = ? OR ? <> 0 OR EXISTS("
        "SELECT 1 FROM listing_grants g WHERE g.artifact_id = l.artifact_id AND g.account_id = ?)) "
        "ORDER BY l.artifact_id";
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(text.c_str()));
    st->Bind(1, c.account).Bind(2, int64_t{(c.scopes & kScopeAdmin) != 0}).Bind(3, c.account);
    std::vector<Listing> out;
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      KVMART_ASSIGN_OR_RETURN(Listing l, impl_->ListingFromRow(*st));
      out.push_back(std::move(l));
    }
    return out;
  });
}

StatusOr<Listing> SqlMarket::VisibleListing(std::string_view api_key, std::string_view artifact_id) {
  return impl_->RunRead<Listing>(api_key, 0, [&](Db* db, const Caller& c) {
    return impl_->GetOpenListingFor(db, c, artifact_id);
  });
}

StatusOr<Quote> SqlMarket::GetQuote(std::string_view api_key, const PurchaseRequest& req) {
  return impl_->RunRead<Quote>(api_key, kScopeBuy, [&](Db* db, const Caller& c) -> StatusOr<Quote> {
    KVMART_ASSIGN_OR_RETURN(Listing l, impl_->GetOpenListingFor(db, c, req.artifact_id));
    return impl_->MakeQuote(l, req);
  });
}

StatusOr<Purchase> SqlMarket::Buy(std::string_view api_key, std::string_view idem, const PurchaseRequest& req) {
  json request{{"artifact_id", req.artifact_id}, {"kind", PurchaseKindName(req.kind)}, {"quantity", req.quantity}};
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunWrite("buy", api_key, idem, kScopeBuy, request,
      [&](Db* db, const Caller& c) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(Listing l, impl_->GetOpenListingFor(db, c, req.artifact_id));
        KVMART_ASSIGN_OR_RETURN(Quote q, impl_->MakeQuote(l, req));
        std::optional<int64_t> txn;
        if (!q.upfront.is_zero()) {
          KVMART_ASSIGN_OR_RETURN(txn, impl_->PostCharge(db, "purchase", req.artifact_id, c.account, l.publisher, q.upfront));
        } else {
          // Currency must still match for a metered purchase.
          KVMART_ASSIGN_OR_RETURN(auto acct, impl_->GetAccountRow(db, c.account));
          if (!(acct.currency == l.spec.currency)) {
            return Status::InvalidArgument("account holds " + acct.currency.str() + ", artifact is priced in " + l.spec.currency.str());
          }
        }
        KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
            "INSERT INTO entitlements(account_id, artifact_id, kind, loads_remaining, expires_at, per_load, purchase_txn, "
            "created_at) VALUES(?,?,?,?,?,?,?,?) RETURNING id"));
        st->Bind(1, c.account).Bind(2, req.artifact_id).Bind(3, std::string_view(PurchaseKindName(q.kind)))
            .Bind(4, q.kind == PurchaseKind::kUnlimited ? std::nullopt : std::optional<int64_t>(q.loads))
            .Bind(5, q.expires_at).Bind(6, q.per_load.micros()).Bind(7, txn).Bind(8, impl_->Now());
        KVMART_ASSIGN_OR_RETURN(int64_t ent, InsertedId(*st));
        Receipt rc;
        rc.kind = "purchase";
        rc.account = c.account;
        rc.artifact_id = req.artifact_id;
        rc.price_micros = q.upfront.micros();
        rc.currency = l.spec.currency.str();
        rc.ledger_txn = txn.value_or(0);
        rc.entitlement = ent;
        KVMART_ASSIGN_OR_RETURN(std::string signed_rc, impl_->SignReceipt(db, rc));
        return json{{"entitlement", ent}, {"quote", QuoteJson(q)}, {"receipt", signed_rc}};
      }));
  Purchase p;
  p.entitlement = r.at("entitlement").get<int64_t>();
  p.quote = QuoteFromJson(r.at("quote"));
  p.receipt = r.at("receipt").get<std::string>();
  return p;
}

StatusOr<LoadResult> SqlMarket::Load(std::string_view api_key, std::string_view idem, std::string_view artifact_id) {
  json request{{"artifact_id", artifact_id}};
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunWrite("load", api_key, idem, kScopeBuy, request,
      [&](Db* db, const Caller& c) -> StatusOr<json> {
        int64_t now = impl_->Now();
        KVMART_ASSIGN_OR_RETURN(Impl::PickedEntitlement e, impl_->PickEntitlement(db, c.account, artifact_id, now));
        const int64_t ent = e.id;
        const std::string& kind = e.kind;
        const std::optional<int64_t>& remaining = e.remaining;
        const int64_t per_load = e.per_load;
        KVMART_ASSIGN_OR_RETURN(Listing l, impl_->GetListing(db, artifact_id));
        Money charged = Money::Zero(l.spec.currency);
        std::optional<int64_t> txn;
        if (kind == "metered" && per_load > 0) {
          charged = Money(per_load, l.spec.currency);
          KVMART_ASSIGN_OR_RETURN(txn, impl_->PostCharge(db, "load", artifact_id, c.account, l.publisher, charged));
        }
        if (remaining) {
          KVMART_ASSIGN_OR_RETURN(auto dec, db->Prepare("UPDATE entitlements SET loads_remaining=loads_remaining-1 WHERE id=?"));
          dec->Bind(1, ent);
          KVMART_RETURN_IF_ERROR(dec->Run());
        }
        KVMART_ASSIGN_OR_RETURN(auto ins, db->Prepare(
            "INSERT INTO loads(entitlement_id, account_id, artifact_id, tokens, charged, charge_txn, created_at) VALUES(?,?,?,?,?,?,?) RETURNING id"));
        ins->Bind(1, ent).Bind(2, c.account).Bind(3, artifact_id).Bind(4, l.spec.tokens).Bind(5, charged.micros())
            .Bind(6, txn).Bind(7, now);
        KVMART_ASSIGN_OR_RETURN(int64_t load, InsertedId(*ins));
        Receipt rc;
        rc.kind = "load";
        rc.account = c.account;
        rc.artifact_id = std::string(artifact_id);
        rc.tokens_reused = l.spec.tokens;
        rc.price_micros = charged.micros();
        rc.currency = l.spec.currency.str();
        rc.ledger_txn = txn.value_or(0);
        rc.entitlement = ent;
        rc.load = load;
        KVMART_ASSIGN_OR_RETURN(std::string signed_rc, impl_->SignReceipt(db, rc));
        return json{{"load", load}, {"entitlement", ent}, {"tokens", l.spec.tokens}, {"charged", MoneyJson(charged)},
                    {"receipt", signed_rc}};
      }));
  return LoadResultFromJson(r);
}

StatusOr<std::string> SqlMarket::ChargeEgress(std::string_view api_key, std::string_view idem,
                                                 std::string_view artifact_id, int64_t bytes, int64_t micros_per_gb) {
  if (bytes < 0 || micros_per_gb < 0) return Status::InvalidArgument("egress bytes and price must be >= 0");
  json request{{"artifact_id", artifact_id}, {"bytes", bytes}, {"micros_per_gb", micros_per_gb}};
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunWrite("egress.charge", api_key, idem, kScopeBuy, request,
      [&](Db* db, const Caller& c) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(Listing l, impl_->GetListing(db, artifact_id));
        KVMART_ASSIGN_OR_RETURN(Money amt, EgressCharge(bytes, micros_per_gb, l.spec.currency));
        return impl_->PostProviderCharge(db, "egress", artifact_id, c.account, "buyer", amt);
      }));
  return r.at("receipt").get<std::string>();
}

StatusOr<std::string> SqlMarket::FailLoad(std::string_view api_key, std::string_view idem, int64_t load) {
  json request{{"load", load}};
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunWrite("load.fail", api_key, idem, kScopeBuy, request,
      [&](Db* db, const Caller& c) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
            "SELECT entitlement_id, account_id, artifact_id, charged, charge_txn, refunded, state FROM loads WHERE id=?"));
        st->Bind(1, load);
        KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
        if (!row || st->Int(1) != c.account) return Status::NotFound("no load " + std::to_string(load) + " for this account");
        // A reserved load is voided, not refunded: only a charged one has money to give back.
        if (st->Text(6) != "posted") {
          return Status::FailedPrecondition("load " + std::to_string(load) + " is " + st->Text(6) + ", not posted");
        }
        if (st->Int(5) != 0) return Status::FailedPrecondition("load " + std::to_string(load) + " was already refunded");
        int64_t ent = st->Int(0);
        std::string artifact = st->Text(2);
        int64_t charged = st->Int(3);
        std::optional<int64_t> charge_txn = st->OptInt(4);
        st.reset();
        std::optional<int64_t> refund_txn;
        std::string currency;
        if (charge_txn) {
          // The compensating transaction negates every entry of the charge.
          std::vector<Posting> reverse;
          KVMART_ASSIGN_OR_RETURN(auto en, db->Prepare("SELECT account_id, currency, amount, role FROM entries WHERE txn_id=? ORDER BY id"));
          en->Bind(1, *charge_txn);
          for (;;) {
            KVMART_ASSIGN_OR_RETURN(bool more, en->Step());
            if (!more) break;
            KVMART_ASSIGN_OR_RETURN(Currency cur, Currency::Parse(en->Text(1)));
            currency = cur.str();
            KVMART_ASSIGN_OR_RETURN(Money neg, CheckedNeg(Money(en->Int(2), cur)));
            std::string role = en->Text(3);
            reverse.push_back({en->Int(0), neg, role == "buyer" ? "buyer" : role == "publisher" ? "publisher" : "fee"});
          }
          en.reset();
          KVMART_ASSIGN_OR_RETURN(refund_txn, impl_->Post(db, "refund", artifact, charge_txn, reverse));
        }
        KVMART_ASSIGN_OR_RETURN(auto up, db->Prepare("UPDATE loads SET refunded=1, refund_txn=? WHERE id=?"));
        up->Bind(1, refund_txn).Bind(2, load);
        KVMART_RETURN_IF_ERROR(up->Run());
        KVMART_ASSIGN_OR_RETURN(auto inc, db->Prepare(
            "UPDATE entitlements SET loads_remaining=loads_remaining+1 WHERE id=? AND loads_remaining IS NOT NULL"));
        inc->Bind(1, ent);
        KVMART_RETURN_IF_ERROR(inc->Run());
        Receipt rc;
        rc.kind = "refund";
        rc.account = c.account;
        rc.artifact_id = artifact;
        rc.price_micros = charged;
        rc.currency = currency;
        rc.ledger_txn = refund_txn.value_or(0);
        rc.entitlement = ent;
        rc.load = load;
        KVMART_ASSIGN_OR_RETURN(std::string signed_rc, impl_->SignReceipt(db, rc));
        return json{{"receipt", signed_rc}};
      }));
  return r.at("receipt").get<std::string>();
}

StatusOr<AccountInfo> SqlMarket::GetAccount(std::string_view api_key, AccountId account) {
  return impl_->RunRead<AccountInfo>(api_key, 0, [&](Db* db, const Caller& c) -> StatusOr<AccountInfo> {
    KVMART_RETURN_IF_ERROR(Impl::CanRead(c, account));
    KVMART_ASSIGN_OR_RETURN(auto a, impl_->GetAccountRow(db, account));
    AccountInfo i;
    i.id = a.id;
    i.name = a.name;
    i.currency = a.currency;
    i.credit_limit = Money(a.credit_limit, a.currency);
    i.balance = Money(a.balance, a.currency);
    i.system = a.system;
    return i;
  });
}

StatusOr<std::vector<Entitlement>> SqlMarket::Entitlements(std::string_view api_key, AccountId account) {
  return impl_->RunRead<std::vector<Entitlement>>(api_key, 0, [&](Db* db, const Caller& c) -> StatusOr<std::vector<Entitlement>> {
    KVMART_RETURN_IF_ERROR(Impl::CanRead(c, account));
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "SELECT id, artifact_id, kind, loads_remaining, expires_at FROM entitlements WHERE account_id=? ORDER BY id"));
    st->Bind(1, account);
    std::vector<Entitlement> out;
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      Entitlement e;
      e.id = st->Int(0);
      e.account = account;
      e.artifact_id = st->Text(1);
      KVMART_ASSIGN_OR_RETURN(e.kind, ParsePurchaseKind(st->Text(2)));
      e.loads_remaining = st->OptInt(3);
      e.expires_at = st->Int(4);
      out.push_back(std::move(e));
    }
    return out;
  });
}

StatusOr<std::vector<StatementLine>> SqlMarket::Statement(std::string_view api_key, AccountId account, int64_t from,
                                                             int64_t to) {
  return impl_->RunRead<std::vector<StatementLine>>(api_key, 0, [&](Db* db, const Caller& c) -> StatusOr<std::vector<StatementLine>> {
    KVMART_RETURN_IF_ERROR(Impl::CanRead(c, account));
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "SELECT t.id, t.created_at, t.kind, t.artifact_id, e.currency, e.amount FROM entries e JOIN txns t ON t.id=e.txn_id "
        "WHERE e.account_id=? AND t.created_at>=? AND t.created_at<? ORDER BY e.id"));
    st->Bind(1, account).Bind(2, from).Bind(3, to);
    std::vector<StatementLine> out;
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      KVMART_ASSIGN_OR_RETURN(Currency cur, Currency::Parse(st->Text(4)));
      out.push_back({st->Int(0), st->Int(1), st->Text(2), st->Text(3), Money(st->Int(5), cur)});
    }
    return out;
  });
}

StatusOr<std::vector<ArtifactEarnings>> SqlMarket::PublisherEarnings(std::string_view api_key, AccountId account) {
  return impl_->RunRead<std::vector<ArtifactEarnings>>(api_key, 0, [&](Db* db, const Caller& c) -> StatusOr<std::vector<ArtifactEarnings>> {
    KVMART_RETURN_IF_ERROR(Impl::CanRead(c, account));
    // Net of refunds (their publisher entries are negative); storage is a cost,
    // reported by the statement, not here.
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "SELECT t.artifact_id, e.currency, SUM(e.amount), SUM(CASE t.kind WHEN 'load' THEN 1 WHEN 'refund' THEN -1 ELSE 0 END) "
        "FROM entries e JOIN txns t ON t.id=e.txn_id WHERE e.account_id=? AND e.role='publisher' AND t.kind IN "
        "('purchase','load','refund') GROUP BY t.artifact_id, e.currency ORDER BY t.artifact_id"));
    st->Bind(1, account);
    std::vector<ArtifactEarnings> out;
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      if (!row) break;
      KVMART_ASSIGN_OR_RETURN(Currency cur, Currency::Parse(st->Text(1)));
      out.push_back({st->Text(0), Money(st->Int(2), cur), st->Int(3)});
    }
    return out;
  });
}

StatusOr<ProviderRevenue> SqlMarket::ProviderRevenueFor(std::string_view api_key, Currency currency) {
  return impl_->RunRead<ProviderRevenue>(api_key, kScopeAdmin, [&](Db* db, const Caller&) -> StatusOr<ProviderRevenue> {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "SELECT COALESCE(SUM(CASE WHEN e.role='storage' THEN 0 ELSE e.amount END),0), "
        "COALESCE(SUM(CASE WHEN e.role='storage' THEN e.amount ELSE 0 END),0) "
        "FROM entries e JOIN accounts a ON a.id=e.account_id WHERE a.system='provider' AND a.currency=?"));
    st->Bind(1, currency.str());
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (!row) return Status::Internal("no revenue row");
    return ProviderRevenue{Money(st->Int(0), currency), Money(st->Int(1), currency)};
  });
}

StatusOr<std::pair<AccountId, uint32_t>> SqlMarket::Authenticate(std::string_view api_key) {
  return impl_->RunRead<std::pair<AccountId, uint32_t>>(api_key, 0, [](Db*, const Caller& c) -> StatusOr<std::pair<AccountId, uint32_t>> {
    return std::make_pair(c.account, c.scopes);
  });
}

// --- two-phase loads ---

StatusOr<LoadHold> SqlMarket::ReserveLoad(std::string_view api_key, std::string_view idem,
                                             std::string_view artifact_id) {
  json request{{"artifact_id", artifact_id}};
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunWrite("load.reserve", api_key, idem, kScopeBuy, request,
      [&](Db* db, const Caller& c) { return impl_->ReserveIn(db, c.account, artifact_id, nullptr); }));
  return HoldFromJson(r);
}

StatusOr<LoadResult> SqlMarket::PostLoad(std::string_view api_key, std::string_view idem, int64_t load) {
  json request{{"load", load}};
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunWrite("load.post", api_key, idem, kScopeBuy, request,
      [&](Db* db, const Caller& c) { return impl_->ResolveIn(db, c.account, load, true, ""); }));
  return LoadResultFromJson(r);
}

Status SqlMarket::VoidLoad(std::string_view api_key, std::string_view idem, int64_t load, std::string_view reason) {
  json request{{"load", load}};
  return impl_->RunWrite("load.void", api_key, idem, kScopeBuy, request,
      [&](Db* db, const Caller& c) { return impl_->ResolveIn(db, c.account, load, false, reason); }).status();
}

StatusOr<int64_t> SqlMarket::VoidExpiredLoads() {
  return impl_->RunSystemWrite<int64_t>([&](Db* db) { return impl_->VoidExpired(db); });
}

// --- provider bookkeeping ---

StatusOr<std::vector<EntitledArtifact>> SqlMarket::EntitledArtifacts(std::span<const std::string> artifact_ids) {
  // A fixed number of ids per statement (unused places hold '', which no
  // artifact is called): one SQL text, prepared once per connection, however
  // many ids are asked about. The entitlements_by_artifact index answers it.
  constexpr size_t kPerStatement = 16;
  static constexpr const char* kSql =
      "SELECT artifact_id, MIN(expires_at), MAX(expires_at) FROM entitlements "
      "WHERE artifact_id IN (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) AND " KVMART_LIVE_ENTITLEMENT " GROUP BY artifact_id";
  if (artifact_ids.empty()) return std::vector<EntitledArtifact>{};
  return impl_->RunSystemRead<std::vector<EntitledArtifact>>([&](Db* db) -> StatusOr<std::vector<EntitledArtifact>> {
    const int64_t now = impl_->Now();
    std::vector<EntitledArtifact> out;
    for (size_t at = 0; at < artifact_ids.size(); at += kPerStatement) {
      KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(kSql));
      for (size_t i = 0; i < kPerStatement; ++i) {
        const size_t k = at + i;
        st->Bind(static_cast<int>(i + 1), k < artifact_ids.size() ? std::string_view(artifact_ids[k]) : std::string_view(""));
      }
      st->Bind(static_cast<int>(kPerStatement + 1), now);
      for (;;) {
        KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
        if (!row) break;
        // One live entitlement that never expires makes the artifact entitled
        // until it is used up, whatever the others' expiry.
        out.push_back({st->Text(0), st->Int(1) == 0 ? 0 : st->Int(2)});
      }
    }
    return out;
  });
}

// --- payouts ---

StatusOr<Earnings> SqlMarket::GetEarnings(std::string_view api_key, AccountId account) {
  return impl_->RunRead<Earnings>(api_key, 0, [&](Db* db, const Caller& c) -> StatusOr<Earnings> {
    KVMART_RETURN_IF_ERROR(Impl::CanRead(c, account));
    return impl_->EarningsIn(db, account);
  });
}

StatusOr<PayoutResult> SqlMarket::Payout(std::string_view api_key, std::string_view idem, const PayoutRequest& req) {
  if (req.amount.micros() <= 0) return Status::InvalidArgument("payout amount must be > 0, got " + req.amount.ToString());
  if (req.destination.size() > 200) return Status::InvalidArgument("payout destination must be at most 200 bytes");
  json request{{"account", req.account}, {"amount", MoneyJson(req.amount)}, {"destination", req.destination}};
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunWrite("payout", api_key, idem, 0, request,
      [&](Db* db, const Caller& c) -> StatusOr<json> {
        const AccountId target = req.account == 0 ? c.account : req.account;
        const bool admin = (c.scopes & kScopeAdmin) != 0;
        if (target != c.account && !admin) return Status::PermissionDenied("key may not pay out account " + std::to_string(target));
        if (!admin && (c.scopes & kScopePublish) == 0) return Status::PermissionDenied("API key lacks the 'publish' scope");
        KVMART_ASSIGN_OR_RETURN(auto acct, impl_->GetAccountRow(db, target));
        if (acct.system) return Status::InvalidArgument("cannot pay out a system account");
        if (!(acct.currency == req.amount.currency())) {
          return Status::InvalidArgument("account " + std::to_string(target) + " holds " + acct.currency.str());
        }
        KVMART_ASSIGN_OR_RETURN(Earnings e, impl_->EarningsIn(db, target));
        if (req.amount.micros() < e.min_payout.micros()) {
          return Status::InvalidArgument("payout of " + req.amount.ToString() + " is below the minimum payout of " +
                                         e.min_payout.ToString());
        }
        if (req.amount.micros() > e.available.micros()) {
          // InsufficientFunds makes it a 402 over HTTP, like any charge the account cannot cover.
          return Status::InsufficientFunds("insufficient funds: payout of " + req.amount.ToString() + " exceeds the available " +
                                           e.available.ToString() + " (balance " + e.balance.ToString() + ", held " +
                                           e.held.ToString() + ", reserved " + e.pending.ToString() + ")");
        }
        KVMART_ASSIGN_OR_RETURN(AccountId ext, impl_->SystemAccount(db, "external", req.amount.currency()));
        KVMART_ASSIGN_OR_RETURN(Money neg, CheckedNeg(req.amount));
        KVMART_ASSIGN_OR_RETURN(int64_t txn, impl_->Post(db, "payout", "", std::nullopt,
                                                         {{target, neg, "payout"}, {ext, req.amount, "external"}}));
        KVMART_ASSIGN_OR_RETURN(auto ins, db->Prepare(
            "INSERT INTO payouts(account_id, amount, currency, destination, txn_id, created_at) VALUES(?,?,?,?,?,?) RETURNING id"));
        ins->Bind(1, target).Bind(2, req.amount.micros()).Bind(3, req.amount.currency().str()).Bind(4, req.destination)
            .Bind(5, txn).Bind(6, impl_->Now());
        KVMART_ASSIGN_OR_RETURN(const int64_t payout, InsertedId(*ins));
        Receipt rc;
        rc.kind = "payout";
        rc.account = target;
        rc.price_micros = req.amount.micros();
        rc.currency = req.amount.currency().str();
        rc.ledger_txn = txn;
        KVMART_ASSIGN_OR_RETURN(std::string signed_rc, impl_->SignReceipt(db, rc));
        return json{{"payout", payout}, {"account", target}, {"amount", MoneyJson(req.amount)},
                    {"destination", req.destination}, {"receipt", signed_rc}};
      }));
  PayoutResult out;
  out.payout = r.at("payout").get<int64_t>();
  out.account = r.at("account").get<int64_t>();
  out.amount = MoneyFromJson(r.at("amount"));
  out.destination = r.at("destination").get<std::string>();
  out.receipt = r.at("receipt").get<std::string>();
  return out;
}

// --- storage billing ---

StatusOr<StorageBillReport> SqlMarket::BillStorage(int64_t period_start, int64_t period_seconds) {
  if (period_seconds <= 0) return Status::InvalidArgument("storage billing period must be > 0 seconds");
  if (period_start < 0) return Status::InvalidArgument("storage billing period start must be >= 0");
  return impl_->RunSystemWrite<StorageBillReport>([&](Db* db) -> StatusOr<StorageBillReport> {
    StorageBillReport rep;
    rep.period_start = period_start;
    rep.period_seconds = period_seconds;
    const int64_t now = impl_->Now();
    struct Row {
      std::string artifact;
      AccountId publisher;
      int64_t bytes;
      Currency currency;
      std::optional<int64_t> unpaid_since, unlisted_at;
      bool removed;
    };
    std::vector<Row> rows;
    {
      KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
          "SELECT artifact_id, publisher, stored_bytes, currency, unpaid_since, unlisted_at, removed_at FROM listings "
          "ORDER BY artifact_id"));
      for (;;) {
        KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
        if (!row) break;
        KVMART_ASSIGN_OR_RETURN(Currency cur, Currency::Parse(st->Text(3)));
        rows.push_back({st->Text(0), st->Int(1), st->Int(2), cur, st->OptInt(4), st->OptInt(5), st->OptInt(6).has_value()});
      }
    }
    for (const Row& l : rows) {
      // This period's bill, once per (artifact, period_start).
      KVMART_ASSIGN_OR_RETURN(auto has, db->Prepare("SELECT state FROM storage_bills WHERE artifact_id=? AND period_start=?"));
      has->Bind(1, l.artifact).Bind(2, period_start);
      KVMART_ASSIGN_OR_RETURN(bool exists, has->Step());
      if (exists) {
        if (has->Text(0) == "paid") ++rep.already_billed;
      } else if (l.bytes > 0 && !l.removed) {  // nothing stored is billed; old bills stand
        KVMART_ASSIGN_OR_RETURN(Money amt, StorageCharge(impl_->opt.fees, l.bytes, period_seconds, l.currency));
        KVMART_ASSIGN_OR_RETURN(auto ins, db->Prepare(
            "INSERT INTO storage_bills(artifact_id, period_start, period_seconds, publisher, bytes, amount, state, created_at) "
            "VALUES(?,?,?,?,?,?,'unpaid',?)"));
        ins->Bind(1, l.artifact).Bind(2, period_start).Bind(3, period_seconds).Bind(4, l.publisher).Bind(5, l.bytes)
            .Bind(6, amt.micros()).Bind(7, now);
        KVMART_RETURN_IF_ERROR(ins->Run());
      }
      has.reset();
      // Pay this artifact's open bills, oldest first, while the publisher can.
      std::vector<std::pair<int64_t, int64_t>> open;  // (period_start, amount)
      {
        KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
            "SELECT period_start, amount FROM storage_bills WHERE artifact_id=? AND state='unpaid' ORDER BY period_start"));
        st->Bind(1, l.artifact);
        for (;;) {
          KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
          if (!row) break;
          open.emplace_back(st->Int(0), st->Int(1));
        }
      }
      size_t paid = 0;
      for (const auto& [start, amount] : open) {
        KVMART_ASSIGN_OR_RETURN(auto acct, impl_->GetAccountRow(db, l.publisher));
        if (acct.balance - acct.pending + acct.credit_limit < amount) break;
        std::optional<int64_t> txn;
        if (amount > 0) {
          KVMART_ASSIGN_OR_RETURN(json rc, impl_->PostProviderCharge(db, "storage", l.artifact, l.publisher, "publisher",
                                                                     Money(amount, l.currency)));
          rep.receipts.push_back(rc.at("receipt").get<std::string>());
          KVMART_ASSIGN_OR_RETURN(auto rec, Receipt::FromJson(json::parse(rep.receipts.back())));
          txn = rec.ledger_txn;
        }
        KVMART_ASSIGN_OR_RETURN(auto up, db->Prepare(
            "UPDATE storage_bills SET state='paid', txn_id=? WHERE artifact_id=? AND period_start=?"));
        up->Bind(1, txn).Bind(2, l.artifact).Bind(3, start);
        KVMART_RETURN_IF_ERROR(up->Run());
        if (start == period_start) ++rep.billed;
        ++paid;
      }
      if (paid < open.size()) {
        if (open.back().first == period_start) ++rep.unpaid;
        // Arrears: unlisted once they are older than the grace period. The
        // artifact and its entitlements are kept: buyers who paid still load.
        const int64_t since = l.unpaid_since.value_or(now);
        KVMART_ASSIGN_OR_RETURN(auto up, db->Prepare("UPDATE listings SET unpaid_since=?, unlisted_at=? WHERE artifact_id=?"));
        std::optional<int64_t> unlisted = l.unlisted_at;
        if (!unlisted && now - since >= impl_->opt.storage_grace_seconds) {
          unlisted = now;
          ++rep.unlisted;
        }
        up->Bind(1, since).Bind(2, unlisted).Bind(3, l.artifact);
        KVMART_RETURN_IF_ERROR(up->Run());
      } else if (l.removed) {
        // Arrears paid off, but there is nothing to list again.
        if (l.unpaid_since) {
          KVMART_ASSIGN_OR_RETURN(auto up, db->Prepare("UPDATE listings SET unpaid_since=NULL WHERE artifact_id=?"));
          up->Bind(1, l.artifact);
          KVMART_RETURN_IF_ERROR(up->Run());
        }
      } else if (l.unpaid_since || l.unlisted_at) {
        KVMART_ASSIGN_OR_RETURN(auto up, db->Prepare("UPDATE listings SET unpaid_since=NULL, unlisted_at=NULL WHERE artifact_id=?"));
        up->Bind(1, l.artifact);
        KVMART_RETURN_IF_ERROR(up->Run());
        if (l.unlisted_at) ++rep.relisted;
      }
    }
    return rep;
  });
}

// --- HTTP 402 ---

std::string PaymentQuoteMessage(const PaymentQuote& q) {
  return CanonicalJson(json{{"v", "kvmart-x402-quote-v1"}, {"scheme", std::string(kPaymentScheme)},
                            {"resource", q.artifact_id}, {"amount", q.amount.micros()},
                            {"currency", q.amount.currency().str()}, {"nonce", q.nonce}, {"expires_at", q.expires_at}});
}

std::string PaymentAuthorizationMessage(const PaymentAuthorization& a) {
  return CanonicalJson(json{{"v", "kvmart-x402-authorization-v1"}, {"scheme", std::string(kPaymentScheme)},
                            {"resource", a.artifact_id}, {"amount", a.amount.micros()},
                            {"currency", a.amount.currency().str()}, {"nonce", a.nonce}, {"expires_at", a.expires_at},
                            {"payer", a.payer_public_key}, {"quote_signature", a.quote_signature}});
}

Status SqlMarket::RegisterPaymentKey(std::string_view api_key, std::string_view idem, std::string_view public_key_hex) {
  std::string raw;
  if (!FromHex(public_key_hex, &raw) || raw.size() != 32 || ToHex(raw.data(), raw.size()) != public_key_hex) {
    return Status::InvalidArgument("payment key must be an Ed25519 public key as 64 lower-case hex characters");
  }
  json request{{"public_key", public_key_hex}};
  return impl_->RunWrite("payment_key.register", api_key, idem, kScopeBuy, request,
      [&](Db* db, const Caller& c) -> StatusOr<json> {
        KVMART_ASSIGN_OR_RETURN(auto get, db->Prepare("SELECT account_id FROM payment_keys WHERE public_key=?"));
        get->Bind(1, public_key_hex);
        KVMART_ASSIGN_OR_RETURN(bool row, get->Step());
        if (row && get->Int(0) != c.account) return Status::AlreadyExists("payment key is registered to another account");
        if (!row) {
          KVMART_ASSIGN_OR_RETURN(auto ins, db->Prepare("INSERT INTO payment_keys(public_key, account_id, created_at) VALUES(?,?,?)"));
          ins->Bind(1, public_key_hex).Bind(2, c.account).Bind(3, impl_->Now());
          KVMART_RETURN_IF_ERROR(ins->Run());
        }
        return json{{"public_key", public_key_hex}, {"account", c.account}};
      }).status();
}

StatusOr<PaymentQuote> SqlMarket::IssuePaymentQuote(std::string_view artifact_id) {
  KVMART_ASSIGN_OR_RETURN(Listing l, PublicListing(artifact_id));
  PaymentQuote q;
  q.artifact_id = std::string(artifact_id);
  q.amount = l.per_load;
  q.nonce = RandomNonceHex();
  KVMART_ASSIGN_OR_RETURN(q.expires_at, CheckedAddI64(impl_->Now(), impl_->opt.payment_quote_seconds));
  q.provider_signature = impl_->opt.provider_key.SignMessageHex(PaymentQuoteMessage(q));
  return q;
}

StatusOr<PaidLoad> SqlMarket::PayAndReserve(const PaymentAuthorization& a) {
  // Everything that needs no database first: both signatures.
  PaymentQuote q{a.artifact_id, a.amount, a.nonce, a.expires_at, a.quote_signature};
  if (!VerifyMessageHex(PaymentQuoteMessage(q), a.quote_signature, impl_->provider_pk_hex)) {
    return Status::InvalidArgument("payment: the quote (resource, amount, nonce, expiry) is not one this provider issued");
  }
  if (!VerifyMessageHex(PaymentAuthorizationMessage(a), a.signature, a.payer_public_key)) {
    return Status::Unauthenticated("payment: the authorization signature does not verify under the payer key");
  }
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunSystemWrite<json>([&](Db* db) -> StatusOr<json> {
    const int64_t now = impl_->Now();
    if (now >= a.expires_at) return Status::FailedPrecondition("payment: the quote expired at " + std::to_string(a.expires_at));
    KVMART_ASSIGN_OR_RETURN(auto key, db->Prepare("SELECT account_id FROM payment_keys WHERE public_key=?"));
    key->Bind(1, a.payer_public_key);
    KVMART_ASSIGN_OR_RETURN(bool known, key->Step());
    if (!known) return Status::Unauthenticated("payment: the payer key is not registered to any account");
    const AccountId account = key->Int(0);
    key.reset();
    KVMART_ASSIGN_OR_RETURN(auto used, db->Prepare("SELECT 1 FROM payment_nonces WHERE nonce=?"));
    used->Bind(1, a.nonce);
    KVMART_ASSIGN_OR_RETURN(bool replayed, used->Step());
    if (replayed) return Status::FailedPrecondition("payment: this quote's nonce was already used");
    used.reset();
    KVMART_ASSIGN_OR_RETURN(Listing l, impl_->GetOpenListing(db, a.artifact_id));
    if (!(l.per_load == a.amount)) {
      return Status::InvalidArgument("payment: authorized " + a.amount.ToString() + " but one load costs " +
                                     l.per_load.ToString());
    }
    KVMART_ASSIGN_OR_RETURN(auto acct, impl_->GetAccountRow(db, account));
    if (!(acct.currency == l.spec.currency)) return Status::InvalidArgument("payment: account holds " + acct.currency.str());
    // Buy one metered load at the quoted price and reserve exactly that one.
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
        "INSERT INTO entitlements(account_id, artifact_id, kind, loads_remaining, expires_at, per_load, purchase_txn, "
        "created_at) VALUES(?,?,'metered',1,0,?,NULL,?) RETURNING id"));
    st->Bind(1, account).Bind(2, a.artifact_id).Bind(3, l.per_load.micros()).Bind(4, now);
    KVMART_ASSIGN_OR_RETURN(const int64_t ent, InsertedId(*st));
    KVMART_ASSIGN_OR_RETURN(Quote quote, impl_->MakeQuote(l, {a.artifact_id, PurchaseKind::kMetered, 1}));
    Receipt rc;
    rc.kind = "purchase";
    rc.account = account;
    rc.artifact_id = a.artifact_id;
    rc.currency = l.spec.currency.str();
    rc.entitlement = ent;
    KVMART_ASSIGN_OR_RETURN(std::string purchase_rc, impl_->SignReceipt(db, rc));
    Impl::PickedEntitlement forced{ent, "metered", 1, l.per_load.micros(), 0};
    KVMART_ASSIGN_OR_RETURN(json hold, impl_->ReserveIn(db, account, a.artifact_id, &forced));
    KVMART_ASSIGN_OR_RETURN(auto burn, db->Prepare("INSERT INTO payment_nonces(nonce, account_id, load_id, created_at) VALUES(?,?,?,?)"));
    burn->Bind(1, a.nonce).Bind(2, account).Bind(3, hold.at("load").get<int64_t>()).Bind(4, now);
    KVMART_RETURN_IF_ERROR(burn->Run());
    return json{{"account", account}, {"entitlement", ent}, {"quote", QuoteJson(quote)}, {"receipt", purchase_rc},
                {"hold", hold}};
  }));
  PaidLoad out;
  out.account = r.at("account").get<int64_t>();
  out.purchase.entitlement = r.at("entitlement").get<int64_t>();
  out.purchase.quote = QuoteFromJson(r.at("quote"));
  out.purchase.receipt = r.at("receipt").get<std::string>();
  KVMART_ASSIGN_OR_RETURN(out.hold, HoldFromJson(r.at("hold")));
  return out;
}

StatusOr<LoadResult> SqlMarket::PostPaidLoad(AccountId account, int64_t load) {
  KVMART_ASSIGN_OR_RETURN(json r, impl_->RunSystemWrite<json>([&](Db* db) { return impl_->ResolveIn(db, account, load, true, ""); }));
  return LoadResultFromJson(r);
}

Status SqlMarket::VoidPaidLoad(AccountId account, int64_t load, std::string_view reason) {
  return impl_->RunSystemWrite<json>([&](Db* db) { return impl_->ResolveIn(db, account, load, false, reason); }).status();
}

StatusOr<Listing> SqlMarket::PublicListing(std::string_view artifact_id) {
  if (!ValidArtifactId(artifact_id)) return Status::NotFound("artifact " + std::string(artifact_id) + " is not listed");
  KVMART_ASSIGN_OR_RETURN(Impl::Lease lease, impl_->Acquire());
  sql::ReadTxn txn(lease.get());
  KVMART_RETURN_IF_ERROR(txn.Begin());
  return impl_->GetOpenListing(lease.get(), artifact_id);
}

// --- statements ---

StatusOr<AccountStatement> SqlMarket::GetStatement(std::string_view api_key, AccountId account, int64_t from,
                                                      int64_t to) {
  if (from > to) return Status::InvalidArgument("statement: 'from' must not be after 'to'");
  return impl_->RunRead<AccountStatement>(api_key, 0, [&](Db* db, const Caller& c) -> StatusOr<AccountStatement> {
    KVMART_RETURN_IF_ERROR(Impl::CanRead(c, account));
    KVMART_ASSIGN_OR_RETURN(auto acct, impl_->GetAccountRow(db, account));
    AccountStatement s;
    s.account = account;
    s.from = from;
    s.to = to;
    {
      KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
          "SELECT COALESCE(SUM(e.amount), 0) FROM entries e JOIN txns t ON t.id=e.txn_id WHERE e.account_id=? AND t.created_at<?"));
      st->Bind(1, account).Bind(2, from);
      KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
      s.opening = Money(row ? st->Int(0) : 0, acct.currency);
    }
    int64_t running = s.opening.micros();
    {
      KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
          "SELECT t.id, t.created_at, t.kind, t.artifact_id, e.amount, "
          "COALESCE((SELECT receipt_id FROM receipts WHERE ledger_txn=t.id LIMIT 1), '') "
          "FROM entries e JOIN txns t ON t.id=e.txn_id WHERE e.account_id=? AND t.created_at>=? AND t.created_at<? ORDER BY e.id"));
      st->Bind(1, account).Bind(2, from).Bind(3, to);
      for (;;) {
        KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
        if (!row) break;
        KVMART_ASSIGN_OR_RETURN(running, CheckedAddI64(running, st->Int(4)));
        s.lines.push_back({st->Int(0), st->Int(1), st->Text(2), st->Text(3), Money(st->Int(4), acct.currency), st->Text(5)});
      }
    }
    s.closing = Money(running, acct.currency);
    {
      KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(
          "SELECT t.artifact_id, SUM(CASE t.kind WHEN 'load' THEN 1 WHEN 'refund' THEN -1 ELSE 0 END), "
          "SUM(-(SELECT COALESCE(SUM(b.amount), 0) FROM entries b WHERE b.txn_id=t.id AND b.role='buyer')), "
          "SUM((SELECT COALESCE(SUM(f.amount), 0) FROM entries f WHERE f.txn_id=t.id AND f.role='fee')), SUM(p.amount) "
          "FROM entries p JOIN txns t ON t.id=p.txn_id WHERE p.account_id=? AND p.role='publisher' AND t.created_at>=? "
          "AND t.created_at<? AND t.kind IN ('purchase','load','refund') GROUP BY t.artifact_id ORDER BY t.artifact_id"));
      st->Bind(1, account).Bind(2, from).Bind(3, to);
      for (;;) {
        KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
        if (!row) break;
        s.sales.push_back({st->Text(0), st->Int(1), Money(st->Int(2), acct.currency), Money(st->Int(3), acct.currency),
                           Money(st->Int(4), acct.currency)});
      }
    }
    return s;
  });
}

Status SqlMarket::CheckHealth() {
  const auto started = std::chrono::steady_clock::now();
  Status s = [&]() -> Status {
    KVMART_ASSIGN_OR_RETURN(Impl::Lease lease, impl_->Acquire());
    KVMART_ASSIGN_OR_RETURN(auto st, lease.get()->Prepare("SELECT 1"));
    return st->Run();
  }();
  impl_->Count(false, s, started);
  return s;
}

MarketStats SqlMarket::Stats() const {
  MarketStats m;
  m.write_transactions = impl_->write_txns.load(std::memory_order_relaxed);
  m.read_transactions = impl_->read_txns.load(std::memory_order_relaxed);
  m.conflicts_retried = impl_->retried.load(std::memory_order_relaxed);
  m.unavailable = impl_->unavailable.load(std::memory_order_relaxed);
  m.backend_errors = impl_->backend_errors.load(std::memory_order_relaxed);
  m.transaction_micros = impl_->txn_micros.load(std::memory_order_relaxed);
  return m;
}

std::string SqlMarket::Backend() const {
  return std::string(impl_->dialect == sql::Dialect::kPostgres ? "postgresql " : "sqlite ") + Describe(impl_->location);
}

Status SqlMarket::CheckInvariants() {
  KVMART_ASSIGN_OR_RETURN(Impl::Lease lease, impl_->Acquire());
  Db* db = lease.get();
  sql::ReadTxn txn(db);
  KVMART_RETURN_IF_ERROR(txn.Begin());
  struct Check {
    const char* sql;
    const char* what;
  };
  // Each query returns the offending rows' first column; any row is a violation.
  static constexpr Check kChecks[] = {
      {"SELECT txn_id FROM entries GROUP BY txn_id, currency HAVING SUM(amount) != 0", "transaction does not sum to zero"},
      {"SELECT a.id FROM accounts a LEFT JOIN (SELECT account_id, SUM(amount) s FROM entries GROUP BY account_id) e "
       "ON e.account_id=a.id WHERE a.balance != COALESCE(e.s, 0)", "balance differs from the sum of its entries"},
      {"SELECT id FROM accounts WHERE balance < -credit_limit", "balance below its credit limit"},
      {"SELECT e.id FROM entries e JOIN accounts a ON a.id=e.account_id WHERE a.currency != e.currency", "entry currency differs from its account"},
      {"SELECT currency FROM accounts GROUP BY currency HAVING SUM(balance) != 0", "balances do not sum to zero"},
      {"SELECT id FROM entitlements WHERE loads_remaining < 0", "entitlement below zero"},
      {"SELECT l.id FROM loads l JOIN entitlements n ON n.id=l.entitlement_id WHERE n.kind='metered' AND l.charged>0 AND "
       "l.state='posted' AND "
       "(l.charge_txn IS NULL OR (SELECT kind FROM txns WHERE id=l.charge_txn) != 'load' OR "
       "(SELECT -SUM(amount) FROM entries WHERE txn_id=l.charge_txn AND role='buyer') != l.charged)", "load without exactly one charge"},
      {"SELECT charge_txn FROM loads WHERE charge_txn IS NOT NULL GROUP BY charge_txn HAVING COUNT(*) != 1", "charge shared by loads"},
      {"SELECT id FROM txns t WHERE kind='load' AND (SELECT COUNT(*) FROM loads WHERE charge_txn=t.id) != 1", "load charge without a load"},
      {"SELECT l.id FROM loads l WHERE l.charge_txn IS NOT NULL AND l.refunded=1 AND (l.refund_txn IS NULL OR "
       "(SELECT ref_txn FROM txns WHERE id=l.refund_txn) != l.charge_txn)", "refund not tied to its charge"},
      {"SELECT ref_txn FROM txns WHERE kind='refund' GROUP BY ref_txn HAVING COUNT(*) != 1", "charge refunded more than once"},
      {"SELECT id FROM loads WHERE refunded=0 AND refund_txn IS NOT NULL", "refund on a load not marked refunded"},
      {"SELECT a.id FROM accounts a LEFT JOIN (SELECT account_id, SUM(charged) s FROM loads WHERE state='pending' "
       "GROUP BY account_id) p ON p.account_id=a.id WHERE a.pending != COALESCE(p.s, 0)", "hold differs from its pending loads"},
      {"SELECT id FROM accounts WHERE balance - pending < -credit_limit", "holds exceed the available money"},
      {"SELECT l.id FROM loads l LEFT JOIN load_resolutions r ON r.load_id=l.id WHERE l.phases=2 AND "
       "((l.state='pending') != (r.load_id IS NULL) OR (r.load_id IS NOT NULL AND r.outcome != l.state))",
       "two-phase load not resolved exactly once"},
      {"SELECT r.load_id FROM load_resolutions r JOIN loads l ON l.id=r.load_id WHERE l.phases != 2", "resolution of a one-phase load"},
      {"SELECT id FROM loads WHERE state='voided' AND (charge_txn IS NOT NULL OR charged != 0 OR refunded != 0)",
       "voided load that moved money"},
      {"SELECT id FROM loads WHERE state != 'posted' AND (SELECT COUNT(*) FROM receipts WHERE load_id=loads.id AND kind='load') != 0",
       "receipt for a load that was not posted"},
  };
  for (const auto& c : kChecks) {
    KVMART_ASSIGN_OR_RETURN(auto st, db->Prepare(c.sql));
    KVMART_ASSIGN_OR_RETURN(bool row, st->Step());
    if (row) return Status::Internal(std::string("ledger invariant violated: ") + c.what + " (" + st->Text(0) + ")");
  }
  return Status::Ok();
}

}  // namespace kvmart::market

#undef KVMART_LIVE_ENTITLEMENT
