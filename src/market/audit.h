// An independent audit of a market database: it reads the tables directly
// (a read-only SQLite file or one PostgreSQL snapshot, without SqlMarket's
// code paths) and replays the ledger from its
// entries, so a bug in the market's own bookkeeping or a hand-edited database
// cannot vouch for itself.
//
// Checks, in order; the first violation is reported:
//   1. the database is bound to the expected provider key;
//   2. every transaction sums to zero per currency, each entry's currency is its
//      account's, and replaying the entries in order no account ever goes
//      below -credit_limit;
//   3. every cached balance equals the replayed sum; holds equal the pending
//      loads and never exceed the available money;
//   4. every registered receipt's Ed25519 signature verifies under the provider
//      key, its fields equal its register row, and it matches its ledger
//      transaction (kind, account, amount, currency) and its load;
//   5. every two-phase load is resolved exactly once (none when pending), a
//      posted metered load has exactly its charge, a voided one moved nothing;
//   6. every money-moving transaction since receipts were registered has one.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace kvmart::market {

struct AuditReport {
  int64_t accounts = 0;
  int64_t transactions = 0;
  int64_t entries = 0;
  int64_t loads = 0;
  int64_t receipts = 0;
  std::string violation;  // empty when the ledger is sound
  bool ok() const { return violation.empty(); }
};

// public_key_hex: the provider's receipt key (from DIR/provider.key, never
// taken from the database being audited). A database that cannot be read is an
// error Status; a readable one that breaks an invariant is a report whose
// `violation` names the first failure.
// location: a SQLite file path or a postgresql:// URL.
StatusOr<AuditReport> AuditMarketDatabase(const std::string& location, const std::string& public_key_hex);

}  // namespace kvmart::market
