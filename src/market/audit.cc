#include "market/audit.h"

#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/postgres_db.h"
#include "base/sqlite_db.h"
#include "market/receipts.h"

namespace kvmart::market {
namespace {

using nlohmann::json;

// A read-only query; the audit reads whole tables once, so the statement
// cache of the connection is of no use but does no harm.
class Query {
 public:
  static StatusOr<Query> Make(sql::Connection* db, const char* text) {
    auto st = db->Prepare(text);
    if (!st.ok()) {
      return Status::Corruption("audit: cannot read the database (" + st.status().ToString() + "): " + text);
    }
    return Query(std::move(st).value());
  }
  StatusOr<bool> Next() {
    auto r = s_->Step();
    if (!r.ok()) return Status::IOError("audit: " + r.status().ToString());
    return *r;
  }
  int64_t Int(int c) const { return s_->Int(c); }
  bool Null(int c) const { return s_->IsNull(c); }
  std::string Text(int c) const { return s_->Text(c); }

 private:
  explicit Query(std::unique_ptr<sql::Statement> s) : s_(std::move(s)) {}
  std::unique_ptr<sql::Statement> s_;
};

struct Account {
  std::string currency;
  int64_t credit_limit = 0;
  int64_t balance = 0;  // cached
  int64_t pending = 0;  // cached
  int64_t replayed = 0;
};

struct Txn {
  std::string kind;
  std::map<int64_t, int64_t> by_account;  // account -> sum of its entries
  std::string currency;
};

// Charges take money from the receipt's account; deposits and refunds give it.
int ReceiptSign(const std::string& kind) { return (kind == "deposit" || kind == "refund") ? +1 : -1; }

class Auditor {
 public:
  Auditor(sql::Connection* db, std::string pk) : db_(db), pk_(std::move(pk)) {}

  StatusOr<AuditReport> Run() {
    KVMART_RETURN_IF_ERROR(Begin());
    using Step = StatusOr<std::string> (Auditor::*)();
    for (Step step : {&Auditor::ProviderKey, &Auditor::Replay, &Auditor::Balances, &Auditor::Receipts,
                      &Auditor::Loads, &Auditor::Coverage}) {
      KVMART_ASSIGN_OR_RETURN(std::string v, (this->*step)());
      if (!v.empty()) {
        rep_.violation = v;
        break;
      }
    }
    return rep_;
  }

 private:
  Status Begin() {
    // One snapshot for the whole audit, even if the server keeps writing.
    Status st = db_->BeginRead();
    if (!st.ok()) return Status::IOError("audit: " + st.ToString());
    return Status::Ok();
  }

  StatusOr<std::string> ProviderKey() {
    KVMART_ASSIGN_OR_RETURN(Query q, Query::Make(db_, "SELECT v FROM meta WHERE k='provider_public_key'"));
    KVMART_ASSIGN_OR_RETURN(bool row, q.Next());
    if (!row) return std::string("the database names no provider key");
    if (q.Text(0) != pk_) return "the database belongs to provider key " + q.Text(0) + ", not " + pk_;
    return std::string();
  }

  StatusOr<std::string> Replay() {
    {
      KVMART_ASSIGN_OR_RETURN(Query q, Query::Make(db_, "SELECT id, currency, credit_limit, balance, pending FROM accounts"));
      for (;;) {
        KVMART_ASSIGN_OR_RETURN(bool row, q.Next());
        if (!row) break;
        accounts_[q.Int(0)] = {q.Text(1), q.Int(2), q.Int(3), q.Int(4), 0};
      }
    }
    rep_.accounts = static_cast<int64_t>(accounts_.size());
    {
      KVMART_ASSIGN_OR_RETURN(Query q, Query::Make(db_, "SELECT id, kind FROM txns"));
      for (;;) {
        KVMART_ASSIGN_OR_RETURN(bool row, q.Next());
        if (!row) break;
        txns_[q.Int(0)].kind = q.Text(1);
      }
    }
    rep_.transactions = static_cast<int64_t>(txns_.size());
    KVMART_ASSIGN_OR_RETURN(Query q, Query::Make(db_, "SELECT id, txn_id, account_id, currency, amount FROM entries ORDER BY txn_id, id"));
    int64_t cur_txn = -1;
    std::map<std::string, int64_t> sums;
    std::set<int64_t> touched;
    auto close_txn = [&]() -> std::string {
      if (cur_txn < 0) return {};
      for (const auto& [c, s] : sums) {
        if (s != 0) return "transaction " + std::to_string(cur_txn) + " does not balance: its " + c + " entries sum to " + std::to_string(s);
      }
      for (int64_t a : touched) {
        const Account& acc = accounts_[a];
        if (acc.replayed < -acc.credit_limit) {
          return "account " + std::to_string(a) + " went below its credit limit after transaction " + std::to_string(cur_txn) +
                 " (balance " + std::to_string(acc.replayed) + ", limit " + std::to_string(acc.credit_limit) + ")";
        }
      }
      sums.clear();
      touched.clear();
      return {};
    };
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, q.Next());
      if (!row) break;
      ++rep_.entries;
      const int64_t txn = q.Int(1), account = q.Int(2), amount = q.Int(4);
      const std::string currency = q.Text(3);
      if (txn != cur_txn) {
        if (std::string v = close_txn(); !v.empty()) return v;
        cur_txn = txn;
      }
      auto t = txns_.find(txn);
      if (t == txns_.end()) return "entry " + std::to_string(q.Int(0)) + " belongs to no transaction";
      auto a = accounts_.find(account);
      if (a == accounts_.end()) return "entry " + std::to_string(q.Int(0)) + " names no account";
      if (a->second.currency != currency) {
        return "entry " + std::to_string(q.Int(0)) + " is in " + currency + ", its account " + std::to_string(account) + " in " + a->second.currency;
      }
      if (__builtin_add_overflow(sums[currency], amount, &sums[currency]) ||
          __builtin_add_overflow(a->second.replayed, amount, &a->second.replayed)) {
        return "transaction " + std::to_string(txn) + " overflows";
      }
      t->second.by_account[account] += amount;
      t->second.currency = currency;
      touched.insert(account);
    }
    return close_txn();
  }

  StatusOr<std::string> Balances() {
    std::map<int64_t, int64_t> holds;
    KVMART_ASSIGN_OR_RETURN(Query q, Query::Make(db_, "SELECT account_id, charged FROM loads WHERE state='pending'"));
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, q.Next());
      if (!row) break;
      holds[q.Int(0)] += q.Int(1);
    }
    for (const auto& [id, a] : accounts_) {
      if (a.balance != a.replayed) {
        return "account " + std::to_string(id) + " has balance " + std::to_string(a.balance) + " but its transfers sum to " +
               std::to_string(a.replayed);
      }
      if (a.pending != holds[id]) {
        return "account " + std::to_string(id) + " holds " + std::to_string(a.pending) + " but its pending loads reserve " +
               std::to_string(holds[id]);
      }
      if (a.balance - a.pending < -a.credit_limit) {
        return "account " + std::to_string(id) + " has more held than it has available";
      }
    }
    return std::string();
  }

  StatusOr<std::string> Receipts() {
    KVMART_ASSIGN_OR_RETURN(Query q, Query::Make(db_, "SELECT receipt_id, kind, account_id, ledger_txn, load_id, body FROM receipts ORDER BY created_at, receipt_id"));
    KVMART_ASSIGN_OR_RETURN(Query loadq, Query::Make(db_, "SELECT id, account_id, charged, charge_txn, state FROM loads"));
    std::map<int64_t, std::tuple<int64_t, int64_t, std::optional<int64_t>, std::string>> loads;
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, loadq.Next());
      if (!row) break;
      loads[loadq.Int(0)] = {loadq.Int(1), loadq.Int(2), loadq.Null(3) ? std::nullopt : std::optional<int64_t>(loadq.Int(3)), loadq.Text(4)};
    }
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, q.Next());
      if (!row) break;
      ++rep_.receipts;
      const std::string id = q.Text(0);
      auto r = VerifyReceipt(q.Text(5), pk_);
      if (!r.ok()) return "receipt " + id + " does not verify under the provider key: " + r.status().message();
      if (r->receipt_id != id || r->kind != q.Text(1) || r->account != q.Int(2) || r->ledger_txn != q.Int(3) || r->load != q.Int(4)) {
        return "receipt " + id + " differs from its register row";
      }
      if (r->ledger_txn != 0) {
        receipted_.insert(r->ledger_txn);
        auto t = txns_.find(r->ledger_txn);
        if (t == txns_.end()) return "receipt " + id + " names ledger transaction " + std::to_string(r->ledger_txn) + ", which does not exist";
        if (t->second.kind != r->kind) return "receipt " + id + " is a " + r->kind + " but its transaction is a " + t->second.kind;
        auto e = t->second.by_account.find(r->account);
        const int64_t want = ReceiptSign(r->kind) * r->price_micros;
        if (e == t->second.by_account.end() || e->second != want || t->second.currency != r->currency) {
          return "receipt " + id + " says account " + std::to_string(r->account) + " moved " + std::to_string(want) + " " +
                 r->currency + ", its ledger transaction does not";
        }
      } else if (r->price_micros != 0) {
        return "receipt " + id + " moves money without a ledger transaction";
      }
      if (r->kind == "load") {
        auto l = loads.find(r->load);
        if (l == loads.end()) return "receipt " + id + " names load " + std::to_string(r->load) + ", which does not exist";
        const auto& [acct, charged, charge_txn, state] = l->second;
        if (acct != r->account || state != "posted" || charged != r->price_micros || charge_txn.value_or(0) != r->ledger_txn) {
          return "receipt " + id + " does not match load " + std::to_string(r->load);
        }
      }
    }
    return std::string();
  }

  StatusOr<std::string> Loads() {
    KVMART_ASSIGN_OR_RETURN(Query q, Query::Make(db_,
        "SELECT l.id, l.phases, l.state, l.charged, l.charge_txn, l.account_id, "
        "(SELECT COUNT(*) FROM load_resolutions r WHERE r.load_id=l.id), "
        "(SELECT outcome FROM load_resolutions r WHERE r.load_id=l.id), n.kind, l.refunded "
        "FROM loads l JOIN entitlements n ON n.id=l.entitlement_id ORDER BY l.id"));
    std::set<int64_t> charges;
    for (;;) {
      KVMART_ASSIGN_OR_RETURN(bool row, q.Next());
      if (!row) break;
      ++rep_.loads;
      const std::string id = std::to_string(q.Int(0));
      const std::string state = q.Text(2);
      const int64_t resolutions = q.Int(6);
      if (q.Int(1) == 2) {
        if (state == "pending" ? resolutions != 0 : (resolutions != 1 || q.Text(7) != state)) {
          return "load " + id + " (" + state + ") is not resolved exactly once (" + std::to_string(resolutions) + " resolutions)";
        }
      } else if (resolutions != 0) {
        return "one-phase load " + id + " has a resolution";
      }
      if (state == "voided" && (q.Int(3) != 0 || !q.Null(4) || q.Int(9) != 0)) return "voided load " + id + " moved money";
      if (state == "posted" && q.Text(8) == "metered" && q.Int(3) > 0) {
        if (q.Null(4)) return "posted load " + id + " has no charge";
        const int64_t txn = q.Int(4);
        if (!charges.insert(txn).second) return "load " + id + " shares its charge with another load";
        auto t = txns_.find(txn);
        if (t == txns_.end() || t->second.kind != "load" || t->second.by_account[q.Int(5)] != -q.Int(3)) {
          return "posted load " + id + " is not charged exactly its price to its buyer";
        }
      }
    }
    return std::string();
  }

  StatusOr<std::string> Coverage() {
    KVMART_ASSIGN_OR_RETURN(Query q, Query::Make(db_, "SELECT v FROM meta WHERE k='receipts_register_after_txn'"));
    KVMART_ASSIGN_OR_RETURN(bool row, q.Next());
    if (!row) return std::string("the database has no receipts register (schema older than v2)");
    const int64_t after = std::stoll(q.Text(0));
    for (const auto& [id, t] : txns_) {
      if (id > after && !t.by_account.empty() && receipted_.count(id) == 0) {
        return "transaction " + std::to_string(id) + " (" + t.kind + ") has no receipt";
      }
    }
    return std::string();
  }

  sql::Connection* db_;
  std::string pk_;
  AuditReport rep_;
  std::map<int64_t, Account> accounts_;
  std::map<int64_t, Txn> txns_;
  std::set<int64_t> receipted_;
};

}  // namespace

StatusOr<AuditReport> AuditMarketDatabase(const std::string& location, const std::string& public_key_hex) {
  std::unique_ptr<sql::Connection> db;
  if (postgres::IsPostgresUrl(location)) {
    auto c = postgres::Connection::Open(location);
    if (!c.ok()) return Status::IOError("audit: " + c.status().ToString());
    db = std::move(c).value();
  } else {
    auto c = sqlite::Connection::OpenReadOnly(location, 10'000);
    if (!c.ok()) return Status::IOError("audit: cannot open " + location + ": " + c.status().ToString());
    db = std::move(c).value();
  }
  Auditor a(db.get(), public_key_hex);
  return a.Run();
}

}  // namespace kvmart::market
