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
#include <span>
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

// Who may see a listing. A public listing is the open catalog. A private one
// exists only for its publisher and the accounts it granted access to
// (GrantAccess): to every other caller — listing, quote, purchase, lookup,
// `auto` matching, HTTP 402 quotes — it reads exactly like an id nobody
// published, so a private document's existence does not leak.
enum class Visibility { kPublic, kPrivate };
const char* VisibilityName(Visibility v);
StatusOr<Visibility> ParseVisibility(std::string_view s);

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
  // nullopt: public for a new listing, unchanged for a repricing.
  std::optional<Visibility> visibility;
};

struct Listing {
  PriceSpec spec;
  AccountId publisher = 0;
  Money per_load;  // effective (after the default rule)
  bool per_load_is_default = false;
  int64_t unlisted_at = 0;  // != 0: hidden for unpaid storage (entitlements still load) or removed
  int64_t removed_at = 0;   // != 0: its KV was removed from the store (RemoveListing)
  Visibility visibility = Visibility::kPublic;
  Money fresh_prefill_cost;  // what one prefill of its tokens would cost
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

// A load reserved but not yet resolved (two-phase, like a pending transfer):
// the entitlement is decremented and, for a metered entitlement, the price is
// held on the buyer's account (balance unchanged, available reduced). PostLoad
// turns the hold into the charge; VoidLoad or expiry releases it.
struct LoadHold {
  int64_t load = 0;
  int64_t entitlement = 0;
  int64_t tokens_reused = 0;
  Money reserved;          // 0 for prepaid entitlements
  int64_t expires_at = 0;  // unix seconds; voided by the sweeper after this
  // The drawn entitlement as this reservation left it: loads still on it
  // (nullopt = unlimited; 0 = this was its last, also what an unknown value
  // reads as) and when it expires (0 = never). Lets the server know, without
  // another query, whether the buyer still holds a live entitlement after
  // this load. A replay repeats the values of the first call.
  std::optional<int64_t> entitlement_loads_left = 0;
  int64_t entitlement_expires_at = 0;
};

// An artifact some account holds a live entitlement to: one a load could be
// reserved on now (loads left, or unlimited, and not expired) — exactly the
// entitlements ReserveLoad may draw on.
struct EntitledArtifact {
  std::string artifact_id;
  int64_t until = 0;  // when the last of its live entitlements expires; 0 = one never does
};

// An account's money as a publisher sees it before asking for a payout.
struct Earnings {
  Money balance;    // posted balance
  Money pending;    // held by reservations (this account as a buyer)
  Money held;       // sale proceeds younger than the hold period
  Money available;  // balance - pending - held, never below zero
  Money min_payout;
  int64_t hold_seconds = 0;
};

struct PayoutRequest {
  AccountId account = 0;    // 0 = the caller's own account
  Money amount;
  std::string destination;  // the external payout account (free text, e.g. an IBAN reference)
};

struct PayoutResult {
  int64_t payout = 0;
  AccountId account = 0;
  Money amount;
  std::string destination;
  std::string receipt;  // signed JSON, kind "payout"
};

// One billing run over one period [period_start, period_start + seconds).
struct StorageBillReport {
  int64_t period_start = 0;
  int64_t period_seconds = 0;
  int64_t billed = 0;        // charged now
  int64_t already_billed = 0;// paid in an earlier run (idempotent per artifact and period)
  int64_t unpaid = 0;        // publisher could not pay: kept as arrears, retried next run
  int64_t unlisted = 0;      // listings hidden because arrears outlived the grace period
  int64_t relisted = 0;      // listings shown again after their arrears were paid
  std::vector<std::string> receipts;
};

// A statement: opening balance, every ledger line with its receipt, closing
// balance; for a publisher, sales per artifact.
struct StatementEntry {
  int64_t txn = 0;
  int64_t time = 0;
  std::string kind;
  std::string artifact_id;
  Money amount;            // signed, as StatementLine
  std::string receipt_id;  // "" when the event has no receipt
};
struct ArtifactSales {
  std::string artifact_id;
  int64_t loads = 0;  // metered loads sold, net of refunds
  Money gross;        // what buyers paid (purchases and loads, net of refunds)
  Money provider_fee;
  Money net;          // what the publisher got
};
struct AccountStatement {
  AccountId account = 0;
  int64_t from = 0, to = 0;
  Money opening;
  Money closing;
  std::vector<StatementEntry> lines;
  std::vector<ArtifactSales> sales;  // empty for an account that sold nothing
};

inline constexpr std::string_view kPaymentScheme = "kvmart-ledger";

// HTTP 402 pay-per-load (x402 v2, scheme "kvmart-ledger"). The provider quotes
// one load: price, a fresh nonce and an expiry, signed with the provider key
// so the server keeps no state per quote.
struct PaymentQuote {
  std::string artifact_id;  // x402 "resource"
  Money amount;             // the per-load price
  std::string nonce;        // 32 hex
  int64_t expires_at = 0;
  std::string provider_signature;  // hex Ed25519 over PaymentQuoteMessage()
};
std::string PaymentQuoteMessage(const PaymentQuote& q);

// The buyer's agent signs this authorisation for exactly one quote with an
// Ed25519 key it registered to its account. The nonce makes it usable once.
struct PaymentAuthorization {
  std::string quote_signature;   // the provider's signature on the quote
  std::string payer_public_key;  // hex, registered with RegisterPaymentKey
  std::string artifact_id;       // the quote's resource
  Money amount;                  // the quoted per-load price
  std::string nonce;             // the quote's nonce (hex)
  int64_t expires_at = 0;        // the quote's expiry
  std::string signature;         // hex Ed25519 over PaymentAuthorizationMessage()
};
// The exact bytes the payer signs (canonical JSON of the fields above but sig).
std::string PaymentAuthorizationMessage(const PaymentAuthorization& a);

struct PaidLoad {
  AccountId account = 0;
  Purchase purchase;  // the one-load metered entitlement bought for this request
  LoadHold hold;      // reserved on it; resolved by PostLoad/VoidLoad as any other
};

// Result of the first successful Initialize: the bootstrap admin key.
struct Bootstrap {
  AccountId provider_account = 0;
  std::string admin_key;  // secret with admin scope, shown once
  std::string provider_public_key;
};

// Counters of the market's database work since Open, for /metrics. A
// transaction run again after a conflict counts once per attempt.
struct MarketStats {
  uint64_t write_transactions = 0;
  uint64_t read_transactions = 0;
  uint64_t conflicts_retried = 0;  // busy (SQLite) or serialisation failures (PostgreSQL) run again
  uint64_t unavailable = 0;        // attempts that failed because the database could not be reached
  uint64_t backend_errors = 0;     // other failures of the database itself (I/O, disk full, corruption, internal)
  uint64_t transaction_micros = 0;  // time spent in those transactions, waiting for the writer included
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

  // Private listings (Visibility): the publisher (or an admin) lets `grantee`
  // see, quote and buy artifact_id, or stops that. Idempotent; granting twice
  // is one grant. Revoking stops new purchases; entitlements already bought
  // still load (they were paid for). NotFound when the caller does not
  // publish the artifact, whoever does.
  virtual Status GrantAccess(std::string_view api_key, std::string_view idem, std::string_view artifact_id,
                             AccountId grantee) = 0;
  virtual Status RevokeAccess(std::string_view api_key, std::string_view idem, std::string_view artifact_id,
                              AccountId grantee) = 0;
  // The accounts granted access to a listing (its publisher or an admin).
  virtual StatusOr<std::vector<AccountId>> Grantees(std::string_view api_key, std::string_view artifact_id) = 0;
  // Takes artifact_id off the market once its KV is removed from the store
  // (admin): no longer shown, quoted or sold, and no storage billed for it
  // from the next period on (bills of the periods it was stored stand and are
  // still collected). Idempotent. A later SetPrice of the same artifact (a
  // republish) lists it again. NotFound when it was never listed.
  virtual Status RemoveListing(std::string_view api_key, std::string_view idem, std::string_view artifact_id) = 0;

  // --- buyer ---
  // Every open listing the caller may see (public ones, its own, those it was
  // granted), by artifact id; an admin sees all.
  virtual StatusOr<std::vector<Listing>> VisibleListings(std::string_view api_key) = 0;
  // One listing, if the caller may see it; NotFound — the same as for an id
  // nobody listed — otherwise.
  virtual StatusOr<Listing> VisibleListing(std::string_view api_key, std::string_view artifact_id) = 0;
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

  // --- two-phase loads (what the server uses) ---
  // Reserves one load of artifact_id BEFORE any cache lookup: the same
  // authorisation and the same PermissionDenied as Load, but nothing is charged
  // yet. The hold expires after MarketOptions::reservation_seconds.
  virtual StatusOr<LoadHold> ReserveLoad(std::string_view api_key, std::string_view idem,
                                         std::string_view artifact_id) = 0;
  // The buyer got the answer: the hold becomes the charge and the receipt is
  // signed (exactly the receipt a one-phase Load gives). FailedPrecondition if
  // the load was already voided or has expired.
  virtual StatusOr<LoadResult> PostLoad(std::string_view api_key, std::string_view idem, int64_t load) = 0;
  // The load or the generation failed: the hold is released, the entitlement
  // gets its load back, no money moves and no receipt is made.
  virtual Status VoidLoad(std::string_view api_key, std::string_view idem, int64_t load, std::string_view reason) = 0;
  // Provider maintenance: voids every reservation past its expiry (left by a
  // crashed process). Runs at Open and periodically in the server. Returns how many.
  virtual StatusOr<int64_t> VoidExpiredLoads() = 0;

  // --- payouts (money leaving for a publisher's external account) ---
  virtual StatusOr<Earnings> GetEarnings(std::string_view api_key, AccountId account) = 0;
  // Publisher scope for its own account (admin for any): amount >= the minimum
  // payout and <= available; idempotent; the account -> external transfer.
  virtual StatusOr<PayoutResult> Payout(std::string_view api_key, std::string_view idem, const PayoutRequest& req) = 0;

  // --- storage billing (provider maintenance, no caller key: the provider's own
  // scheduler and operator run it) ---
  // Bills every listing for [period_start, period_start + seconds): once per
  // (artifact, period_start); arrears are retried; listings whose arrears are
  // older than the grace period are unlisted (never deleted).
  virtual StatusOr<StorageBillReport> BillStorage(int64_t period_start, int64_t period_seconds) = 0;

  // --- provider bookkeeping (no caller key: the server's own cache policy) ---
  // Which of `artifact_ids` some account holds a live entitlement to
  // (EntitledArtifact), in no particular order; ids with none, and unknown
  // ids, are left out. Read-only. The server keeps such artifacts' KV
  // resident longer than unentitled ones (server/resident_kv.h).
  virtual StatusOr<std::vector<EntitledArtifact>> EntitledArtifacts(std::span<const std::string> artifact_ids) = 0;

  // --- HTTP 402 pay-per-load ---
  // Registers an Ed25519 public key (hex) that may sign payment authorisations
  // for the caller's account (buy scope). Idempotent.
  virtual Status RegisterPaymentKey(std::string_view api_key, std::string_view idem, std::string_view public_key_hex) = 0;
  // Verifies `auth` (signature by a registered key, amount = the listing's
  // current per-load price, not expired, nonce unused) and, in one transaction,
  // buys one metered load, reserves it and burns the nonce. Any failure
  // changes nothing. The caller resolves the hold with the key-less
  // PostPaidLoad / VoidPaidLoad (the agent may have no API key).
  virtual StatusOr<PaidLoad> PayAndReserve(const PaymentAuthorization& auth) = 0;
  // A signed quote for one metered load of a listed artifact (no key needed:
  // the terms are public). NotFound for unknown, unlisted or private artifacts.
  virtual StatusOr<PaymentQuote> IssuePaymentQuote(std::string_view artifact_id) = 0;
  // The public terms of a listed artifact (for a 402 quote, before any key is
  // checked): NotFound for an unknown, unlisted or private artifact.
  virtual StatusOr<Listing> PublicListing(std::string_view artifact_id) = 0;
  virtual StatusOr<LoadResult> PostPaidLoad(AccountId account, int64_t load) = 0;
  virtual Status VoidPaidLoad(AccountId account, int64_t load, std::string_view reason) = 0;

  // --- reads (own account; admin may read any) ---
  virtual StatusOr<AccountStatement> GetStatement(std::string_view api_key, AccountId account, int64_t from,
                                                  int64_t to) = 0;
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
  // Also: no account's holds exceed its available money, every hold equals
  // the sum of its pending loads, and every two-phase load is resolved at most
  // once (exactly once when it is no longer pending).
  virtual Status CheckInvariants() = 0;

  // One round trip to the database the market lives in (readiness probes):
  // Unavailable when its server cannot be reached.
  virtual Status CheckHealth() = 0;
  // Where the market lives, for operators: a file path, or a URL without its password.
  virtual std::string Backend() const = 0;
  // What the market's database has done since Open (/metrics).
  virtual MarketStats Stats() const = 0;
};

}  // namespace kvmart::market
