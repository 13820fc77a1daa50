// The market: accounts, API keys, prices, purchases, entitlements, metered loads,
// a double-entry ledger and signed receipts (docs/DESIGN.md §5).
//
// This header is the contract every back end implements (SQLite now, PostgreSQL
// later). It speaks only of artifact ids ("kv1-<64 hex>"), token counts and
// Money — never of engines, caches or blocks.
//
// Every call authenticates an API key (the caller) and checks its scope inside the
// same transaction as the work, so a revoked key stops working at once. Every
// mutating call takes an idempotency key, scoped to the caller's account: a retry
// with the same request returns the first result and moves no money; the same key
// with a different request is rejected (FailedPrecondition) and changes nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "market/keys.h"
#include "market/money.h"
#include "market/receipts.h"

namespace kvmart::market {

using AccountId = int64_t;

struct AccountInfo {
  AccountId id = 0;
  std::string name;
  Currency currency;
  Money credit_limit;  // how far below zero the balance may go (0 for most)
  Money balance;
  bool system = false;  // the provider's own and the external-funds accounts
};

struct CreateAccountRequest {
  std::string name;
  Currency currency;
  int64_t credit_limit_micros = 0;
};

struct CreatedKey {
  int64_t key_id = 0;
  AccountId account = 0;
  uint32_t scopes = 0;
  // The secret, shown once. Empty when an idempotent retry replays the result:
  // only the hash was stored, so the secret cannot be shown again.
  std::string secret;
};

// The publisher's terms for one artifact. The first SetPrice lists the artifact.
struct PriceSpec {
  std::string artifact_id;
  int64_t tokens = 0;        // tokens in the artifact (what a load spares)
  int64_t stored_bytes = 0;  // billed to the publisher per GB-hour
  Currency currency;
  // Per-load price for metered loads; nullopt = the cost-model default.
  std::optional<int64_t> per_load_micros;
  // Optional bundle: bundle_loads loads prepaid for bundle_price.
  int64_t bundle_loads = 0;
  int64_t bundle_price_micros = 0;
  // Optional unlimited loads for unlimited_seconds, prepaid.
  int64_t unlimited_seconds = 0;
  int64_t unlimited_price_micros = 0;
};

struct Listing {
  PriceSpec spec;
  AccountId publisher = 0;
  Money per_load;  // effective (after the default rule)
  bool per_load_is_default = false;
};

enum class PurchaseKind { kMetered, kBundle, kUnlimited };
const char* PurchaseKindName(PurchaseKind k);
StatusOr<PurchaseKind> ParsePurchaseKind(std::string_view s);

struct PurchaseRequest {
  std::string artifact_id;
  PurchaseKind kind = PurchaseKind::kMetered;
  // Metered: the most loads this entitlement allows (each charged when it
  // happens). Bundle: how many bundles to buy. Unused for unlimited.
  int64_t quantity = 1;
};

struct Quote {
  std::string artifact_id;
  PurchaseKind kind = PurchaseKind::kMetered;
  int64_t tokens = 0;
  int64_t loads = 0;        // loads granted (0 = unlimited until expiry)
  Money upfront;            // charged at purchase (0 for metered)
  Money per_load;           // charged at each load (0 for prepaid)
  Money provider_fee;       // fee within upfront (or within each per-load charge)
  int64_t expires_at = 0;   // 0 = never
  Money fresh_prefill_cost; // what one prefill of these tokens would cost
};

struct Purchase {
  int64_t entitlement = 0;
  Quote quote;
  std::string receipt;  // signed JSON
};

struct LoadResult {
  int64_t load = 0;
  int64_t entitlement = 0;
  int64_t tokens_reused = 0;
  Money charged;           // 0 for prepaid entitlements
  std::string receipt;     // signed JSON
};

struct Entitlement {
  int64_t id = 0;
  AccountId account = 0;
  std::string artifact_id;
  PurchaseKind kind = PurchaseKind::kMetered;
  std::optional<int64_t> loads_remaining;  // nullopt = unlimited count
  int64_t expires_at = 0;                  // 0 = never
};

struct StatementLine {
  int64_t txn = 0;
  int64_t time = 0;
  std::string kind;  // deposit purchase load refund storage
  std::string artifact_id;
  Money amount;      // signed: + credits the account, - debits it
};

struct ArtifactEarnings {
  std::string artifact_id;
  Money earned;
  int64_t loads = 0;
};

struct ProviderRevenue {
  Money fees;
  Money storage;
};

// Result of the first successful Initialize: the bootstrap admin key.
struct Bootstrap {
  AccountId provider_account = 0;
  std::string admin_key;  // secret with admin scope, shown once
  std::string provider_public_key;
};

class Market {
 public:
  virtual ~Market() = default;

  // Called with the bootstrap (its admin key shown only here) before the
  // initialising transaction commits; an error rolls it back.
  using KeepBootstrap = std::function<Status(const Bootstrap&)>;
  // Creates the provider's account and an admin key; AlreadyExists afterwards.
  // `keep` (may be empty) persists the admin key: since it runs before the
  // commit, the key is never lost — either it was kept and the market is
  // initialised, or neither happened and Initialize can be run again.
  virtual StatusOr<Bootstrap> Initialize(Currency currency, const KeepBootstrap& keep) = 0;
  StatusOr<Bootstrap> Initialize(Currency currency) { return Initialize(currency, nullptr); }
  virtual std::string ProviderPublicKey() const = 0;

  // --- admin ---
  virtual StatusOr<AccountId> CreateAccount(std::string_view api_key, std::string_view idem,
                                            const CreateAccountRequest& req) = 0;
  virtual StatusOr<CreatedKey> CreateKey(std::string_view api_key, std::string_view idem, AccountId account,
                                         uint32_t scopes) = 0;
  virtual Status RevokeKey(std::string_view api_key, std::string_view idem, int64_t key_id) = 0;
  // Money entering from outside (a payment processor): external → account.
  virtual StatusOr<std::string> Deposit(std::string_view api_key, std::string_view idem, AccountId account,
                                        const Money& amount) = 0;
  // Bills the publisher of artifact_id for its stored bytes over `seconds`.
  virtual StatusOr<std::string> ChargeStorage(std::string_view api_key, std::string_view idem,
                                              std::string_view artifact_id, int64_t seconds) = 0;

  // --- publisher ---
  virtual StatusOr<Listing> SetPrice(std::string_view api_key, std::string_view idem, const PriceSpec& spec) = 0;

  // --- buyer ---
  virtual StatusOr<Quote> GetQuote(std::string_view api_key, const PurchaseRequest& req) = 0;
  virtual StatusOr<Purchase> Buy(std::string_view api_key, std::string_view idem, const PurchaseRequest& req) = 0;
  // Authorises and meters one load of artifact_id: decrements an entitlement and,
  // for metered entitlements, charges the per-load price. Call BEFORE any cache
  // lookup; an unknown artifact and a missing entitlement give the same error.
  virtual StatusOr<LoadResult> Load(std::string_view api_key, std::string_view idem,
                                    std::string_view artifact_id) = 0;
  // The load could not be served after it was charged: a compensating transaction
  // refunds the charge and restores the entitlement. At most once per load.
  virtual StatusOr<std::string> FailLoad(std::string_view api_key, std::string_view idem, int64_t load) = 0;
  // Bills the caller for shipping `bytes` of artifact_id out of the provider
  // (an export) at `micros_per_gb` (GB = 10^9 bytes, rounded up). All of it goes
  // to the provider: egress is the provider's cost, not the publisher's sale.
  // Returns the signed receipt (kind "egress").
  virtual StatusOr<std::string> ChargeEgress(std::string_view api_key, std::string_view idem,
                                             std::string_view artifact_id, int64_t bytes, int64_t micros_per_gb) = 0;

  // --- reads (own account; admin may read any) ---
  virtual StatusOr<AccountInfo> GetAccount(std::string_view api_key, AccountId account) = 0;
  virtual StatusOr<std::vector<Entitlement>> Entitlements(std::string_view api_key, AccountId account) = 0;
  // Ledger lines of `account` with from <= time < to.
  virtual StatusOr<std::vector<StatementLine>> Statement(std::string_view api_key, AccountId account, int64_t from,
                                                         int64_t to) = 0;
  virtual StatusOr<std::vector<ArtifactEarnings>> PublisherEarnings(std::string_view api_key, AccountId account) = 0;
  virtual StatusOr<ProviderRevenue> ProviderRevenueFor(std::string_view api_key, Currency currency) = 0;
  // Whoami: the account and scopes of a key.
  virtual StatusOr<std::pair<AccountId, uint32_t>> Authenticate(std::string_view api_key) = 0;

  // Audits the whole ledger: every transaction sums to zero per currency, every
  // cached balance equals the sum of its entries, no balance below -credit_limit,
  // no entitlement below zero, every load has one charge and at most one refund.
  virtual Status CheckInvariants() = 0;
};

}  // namespace kvmart::market
