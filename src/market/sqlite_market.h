// The SQLite back end of Market: one file, WAL journal, durable commits.
//
// Durability: WAL with synchronous=NORMAL by default. Every COMMIT has written
// its frames to the WAL before it returns, so an acknowledged load survives a
// crash of the process, and a transaction is always all-or-nothing; the WAL is
// fsynced at each checkpoint. What NORMAL gives up is the last commits since the
// previous fsync on an OS crash or power loss (the ledger stays consistent, just
// earlier). FULL (synchronous_full = true) fsyncs at every commit and survives
// power loss, at one fsync per load: on the development disk that caps a single
// writer at a few hundred to ~2,000 commits/s, below the 2,000 loads/s target,
// so it is the option for deployments with a fast-fsync (NVMe/battery) disk.
// docs/MARKET.md and docs/PERFORMANCE.md give the figures.
//
// Concurrency: each call borrows a connection from a small pool (threads) and
// every write runs under BEGIN IMMEDIATE with busy_timeout and a bounded retry,
// so several threads and several processes may share one file safely.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "market/market.h"
#include "market/pricing.h"
#include "market/receipts.h"

namespace kvmart::sqlite {
class Db;
}

namespace kvmart::market {

struct SqliteMarketOptions {
  ProviderKey provider_key = ProviderKey::Generate();  // signs receipts
  CostModel cost_model;
  FeeSchedule fees;
  bool synchronous_full = false;  // see the durability note above
  int busy_timeout_ms = 10'000;
  int max_busy_retries = 50;
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

class SqliteMarket final : public Market {
 public:
  // Opens or creates the database at path and migrates its schema. A database
  // already bound to another provider key is refused (FailedPrecondition).
  static StatusOr<std::unique_ptr<SqliteMarket>> Open(const std::string& path, SqliteMarketOptions options);
  ~SqliteMarket() override;

  // Schema version this build writes (PRAGMA user_version).
  static constexpr int kSchemaVersion = 2;

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
  Status RegisterPaymentKey(std::string_view api_key, std::string_view idem, std::string_view public_key_hex) override;
  StatusOr<PaidLoad> PayAndReserve(const PaymentAuthorization& auth) override;
  StatusOr<PaymentQuote> IssuePaymentQuote(std::string_view artifact_id) override;
  StatusOr<LoadResult> PostPaidLoad(AccountId account, int64_t load) override;
  Status VoidPaidLoad(AccountId account, int64_t load, std::string_view reason) override;
  StatusOr<AccountStatement> GetStatement(std::string_view api_key, AccountId account, int64_t from, int64_t to) override;
  StatusOr<Listing> PublicListing(std::string_view artifact_id) override;
  Status CheckInvariants() override;

  struct Impl;  // defined in sqlite_market.cc; only Open can make one
  explicit SqliteMarket(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvmart::market
