// The market's ledger logic on SQL, written once for both back ends
// (base/sql.h):
//   - SQLite (a file path: the embedded default, one machine);
//   - PostgreSQL (a postgresql:// URL: many stateless nodes, one ledger).
//
// SQLite durability: WAL with synchronous=NORMAL by default. Every COMMIT has
// written its frames to the WAL before it returns, so an acknowledged load
// survives a crash of the process, and a transaction is always all-or-nothing;
// the WAL is fsynced at each checkpoint. What NORMAL gives up is the last
// commits since the previous fsync on an OS crash or power loss (the ledger
// stays consistent, just earlier). FULL (synchronous_full = true) fsyncs at
// every commit and survives power loss, at one fsync per load. PostgreSQL's
// durability is the server's (synchronous_commit, fsync, replication).
// docs/MARKET.md and docs/PERFORMANCE.md give the figures.
//
// Concurrency: each call borrows a connection from a small pool (threads).
// Writes are serial: SQLite runs them under BEGIN IMMEDIATE with
// busy_timeout, PostgreSQL under one advisory writer lock shared by every
// node (base/postgres_db.h says why); reads run on snapshots beside them. A
// transaction the database could not serialise is run again whole (bounded,
// with jittered backoff), so threads, processes and nodes may share one
// ledger safely. Balances and entitlements are read inside the transaction
// that spends them, on the one primary the URL names: never from a replica.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "market/market.h"
#include "market/pricing.h"
#include "market/receipts.h"

namespace kvmart::market {

struct MarketOptions {
  ProviderKey provider_key = ProviderKey::Generate();  // signs receipts
  CostModel cost_model;
  FeeSchedule fees;
  bool synchronous_full = false;  // see the durability note above
  // SQLite: the registered sqlite3_vfs that does the file I/O; empty = the
  // default (tests use a fault-injecting one, tests/testing/fault_vfs.h).
  std::string sqlite_vfs;
  int busy_timeout_ms = 10'000;
  // Retries of a transaction that met a busy database (SQLite) or a
  // serialisation failure (PostgreSQL) before the call gives up with Aborted.
  int max_busy_retries = 50;
  // PostgreSQL: how long dialling the server may take.
  int connect_timeout_seconds = 5;
  // Open brings an older schema up to date; false refuses it instead (nodes
  // of a fleet leave that to `kvmart admin migrate`). A newer schema than the
  // build's is always refused.
  bool migrate = true;
  // How long a reserved load may stay pending before the sweeper voids it
  // (a crashed server's holds are released at the next Open after this).
  int64_t reservation_seconds = 900;
  // Payouts: the smallest amount paid out, and how long sale proceeds are held
  // (a load can still be refunded or disputed) before they may be paid out.
  int64_t min_payout_micros = 1'000'000;
  int64_t payout_hold_seconds = 7 * 24 * 3600;
  // Storage billing: how long a listing's arrears may stand before it is unlisted.
  int64_t storage_grace_seconds = 7 * 24 * 3600;
  // HTTP 402 quotes: how long a PAYMENT-REQUIRED quote may be accepted.
  int64_t payment_quote_seconds = 120;
  // Unix seconds; injectable so tests can move time (expiry, statements).
  std::function<int64_t()> clock;
};

// What `kvmart admin migrate` did: schema versions before and after.
struct SchemaMigration {
  int64_t from = 0;
  int64_t to = 0;
  int64_t target = 0;  // this build's version
};

class SqlMarket final : public Market {
 public:
  // Opens (creating) the market at `location` — a SQLite file path or a
  // postgresql:// URL — and migrates its schema. A database already bound to
  // another provider key is refused (FailedPrecondition); an unreachable
  // server is Unavailable.
  static StatusOr<std::unique_ptr<SqlMarket>> Open(const std::string& location, MarketOptions options);
  // Reads the schema version and, when `apply`, migrates it to this build's.
  static StatusOr<SchemaMigration> MigrateSchema(const std::string& location, bool apply);
  ~SqlMarket() override;

  // Schema version this build writes (SQLite: PRAGMA user_version; PostgreSQL:
  // the schema_version table).
  static constexpr int kSchemaVersion = 5;

  using Market::Initialize;
  StatusOr<Bootstrap> Initialize(Currency currency, const KeepBootstrap& keep) override;
  std::string ProviderPublicKey() const override;
  StatusOr<AccountId> CreateAccount(std::string_view api_key, std::string_view idem,
                                    const CreateAccountRequest& req) override;
  StatusOr<CreatedKey> CreateKey(std::string_view api_key, std::string_view idem, AccountId account,
                                 uint32_t scopes) override;
  Status RevokeKey(std::string_view api_key, std::string_view idem, int64_t key_id) override;
  StatusOr<std::string> Deposit(std::string_view api_key, std::string_view idem, AccountId account,
                                const Money& amount) override;
  StatusOr<std::string> ChargeStorage(std::string_view api_key, std::string_view idem, std::string_view artifact_id,
                                      int64_t seconds) override;
  StatusOr<Listing> SetPrice(std::string_view api_key, std::string_view idem, const PriceSpec& spec) override;
  Status GrantAccess(std::string_view api_key, std::string_view idem, std::string_view artifact_id,
                     AccountId grantee) override;
  Status RevokeAccess(std::string_view api_key, std::string_view idem, std::string_view artifact_id,
                      AccountId grantee) override;
  StatusOr<std::vector<AccountId>> Grantees(std::string_view api_key, std::string_view artifact_id) override;
  Status RemoveListing(std::string_view api_key, std::string_view idem, std::string_view artifact_id) override;
  StatusOr<std::vector<Listing>> VisibleListings(std::string_view api_key) override;
  StatusOr<Listing> VisibleListing(std::string_view api_key, std::string_view artifact_id) override;
  StatusOr<Quote> GetQuote(std::string_view api_key, const PurchaseRequest& req) override;
  StatusOr<Purchase> Buy(std::string_view api_key, std::string_view idem, const PurchaseRequest& req) override;
  StatusOr<LoadResult> Load(std::string_view api_key, std::string_view idem, std::string_view artifact_id) override;
  StatusOr<std::string> FailLoad(std::string_view api_key, std::string_view idem, int64_t load) override;
  StatusOr<std::string> ChargeEgress(std::string_view api_key, std::string_view idem, std::string_view artifact_id,
                                     int64_t bytes, int64_t micros_per_gb) override;
  StatusOr<AccountInfo> GetAccount(std::string_view api_key, AccountId account) override;
  StatusOr<std::vector<Entitlement>> Entitlements(std::string_view api_key, AccountId account) override;
  StatusOr<std::vector<StatementLine>> Statement(std::string_view api_key, AccountId account, int64_t from,
                                                 int64_t to) override;
  StatusOr<std::vector<ArtifactEarnings>> PublisherEarnings(std::string_view api_key, AccountId account) override;
  StatusOr<ProviderRevenue> ProviderRevenueFor(std::string_view api_key, Currency currency) override;
  StatusOr<std::pair<AccountId, uint32_t>> Authenticate(std::string_view api_key) override;
  StatusOr<LoadHold> ReserveLoad(std::string_view api_key, std::string_view idem, std::string_view artifact_id) override;
  StatusOr<LoadResult> PostLoad(std::string_view api_key, std::string_view idem, int64_t load) override;
  Status VoidLoad(std::string_view api_key, std::string_view idem, int64_t load, std::string_view reason) override;
  StatusOr<int64_t> VoidExpiredLoads() override;
  StatusOr<Earnings> GetEarnings(std::string_view api_key, AccountId account) override;
  StatusOr<PayoutResult> Payout(std::string_view api_key, std::string_view idem, const PayoutRequest& req) override;
  StatusOr<StorageBillReport> BillStorage(int64_t period_start, int64_t period_seconds) override;
  StatusOr<std::vector<EntitledArtifact>> EntitledArtifacts(std::span<const std::string> artifact_ids) override;
  Status RegisterPaymentKey(std::string_view api_key, std::string_view idem, std::string_view public_key_hex) override;
  StatusOr<PaidLoad> PayAndReserve(const PaymentAuthorization& auth) override;
  StatusOr<PaymentQuote> IssuePaymentQuote(std::string_view artifact_id) override;
  StatusOr<LoadResult> PostPaidLoad(AccountId account, int64_t load) override;
  Status VoidPaidLoad(AccountId account, int64_t load, std::string_view reason) override;
  StatusOr<AccountStatement> GetStatement(std::string_view api_key, AccountId account, int64_t from, int64_t to) override;
  StatusOr<Listing> PublicListing(std::string_view artifact_id) override;
  Status CheckInvariants() override;
  Status CheckHealth() override;
  std::string Backend() const override;
  MarketStats Stats() const override;

  struct Impl;  // defined in sql_market.cc; only Open can make one
  explicit SqlMarket(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvmart::market
