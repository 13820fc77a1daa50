// The independent audit: a sound ledger passes; each kind of corruption is
// found and named.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "base/sqlite_db.h"
#include "market/audit.h"
#include "test_util.h"

namespace kvmart::market::testing {
namespace {

class AuditTest : public MarketFixture {
 protected:
  void SetUp() override {
    options_.min_payout_micros = 1;
    options_.payout_hold_seconds = 0;
    Reopen();
    const std::string art = ArtifactId(1);
    List(art, 1000);
    ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(10'000)));
    ASSERT_OK(market_->Deposit(admin_, "d-pub", publisher_, Usd(1'000)));
    ASSERT_OK(market_->Buy(buyer_key_, "b", {art, PurchaseKind::kMetered, 10}));
    auto posted = market_->ReserveLoad(buyer_key_, "r1", art);
    ASSERT_OK(posted);
    ASSERT_OK(market_->PostLoad(buyer_key_, "p1", posted->load));
    auto voided = market_->ReserveLoad(buyer_key_, "r2", art);
    ASSERT_OK(voided);
    ASSERT_OK(market_->VoidLoad(buyer_key_, "v2", voided->load, "test"));
    pending_ = market_->ReserveLoad(buyer_key_, "r3", art).value().load;  // left pending, 1000 held
    ASSERT_OK(market_->Buy(buyer_key_, "bb", {art, PurchaseKind::kBundle, 1}));
    ASSERT_OK(market_->Load(buyer_key_, "l1", art));  // bundle, one-phase
    ASSERT_OK(market_->BillStorage(0, 3600));
    clock_.now->fetch_add(10);
    ASSERT_OK(market_->Payout(publisher_key_, "po", {0, Usd(500), "bank"}));
    ASSERT_OK(market_->CheckInvariants());
    market_.reset();  // the audit reads the file on its own
  }

  void Corrupt(const std::string& sql) {
    auto db = db_->Raw();
    ASSERT_OK(db);
    // What a hand edit could do: CHECK constraints do not stand in the way
    // (SQLite ignores them; on PostgreSQL this schema's are dropped).
    if (backend() == Backend::kSqlite) {
      ASSERT_OK((*db)->Exec("PRAGMA ignore_check_constraints=1"));
    } else {
      ASSERT_OK((*db)->Exec(
          "DO $$ DECLARE r record; BEGIN"
          " FOR r IN SELECT c.conrelid::regclass AS t, c.conname FROM pg_constraint c"
          "   JOIN pg_namespace n ON n.oid = c.connamespace WHERE c.contype = 'c' AND n.nspname = current_schema()"
          " LOOP EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.t, r.conname); END LOOP; END $$"));
    }
    ASSERT_OK((*db)->Exec(sql));
  }

  std::string Audit(const std::string& pk) {
    auto r = AuditMarketDatabase(Location(), pk);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->violation : "(error)";
  }
  std::string Audit() { return Audit(key_.PublicKeyHex()); }

  int64_t pending_ = 0;
};

TEST_F(AuditTest, ASoundLedgerPasses) {
  auto r = AuditMarketDatabase(Location(), key_.PublicKeyHex());
  ASSERT_OK(r);
  EXPECT_TRUE(r->ok()) << r->violation;
  EXPECT_EQ(r->transactions, 6);  // 2 deposits, post, bundle, storage, payout
  EXPECT_GT(r->receipts, 5);
  EXPECT_EQ(r->loads, 4);
}

TEST_F(AuditTest, WrongProviderKey) {
  EXPECT_NE(Audit(ProviderKey::Generate().PublicKeyHex()).find("belongs to provider key"), std::string::npos);
}

TEST_F(AuditTest, UnbalancedTransfer) {
  Corrupt("UPDATE entries SET amount=amount+1 WHERE id=(SELECT MIN(id) FROM entries WHERE role='deposit')");
  EXPECT_NE(Audit().find("does not balance"), std::string::npos) << Audit();
}

TEST_F(AuditTest, BalanceDiffersFromItsTransfers) {
  Corrupt("UPDATE accounts SET balance=balance+7 WHERE id=" + std::to_string(buyer_));
  EXPECT_NE(Audit().find("but its transfers sum to"), std::string::npos) << Audit();
}

TEST_F(AuditTest, AccountWentBelowItsLimit) {
  // A balanced transfer that overdraws the buyer, with cached balances updated
  // to match, so only the replay can see it.
  const std::string b = std::to_string(buyer_), p = std::to_string(provider_);
  Corrupt("INSERT INTO txns(id, kind, created_at) VALUES(9000, 'egress', 0);"
          "INSERT INTO entries(txn_id, account_id, currency, amount, role) VALUES(9000," + b + ",'USD',-1000000,'buyer');"
          "INSERT INTO entries(txn_id, account_id, currency, amount, role) VALUES(9000," + p + ",'USD',1000000,'egress');"
          "UPDATE accounts SET balance=balance-1000000 WHERE id=" + b + ";"
          "UPDATE accounts SET balance=balance+1000000 WHERE id=" + p + ";");
  EXPECT_NE(Audit().find("went below its credit limit"), std::string::npos) << Audit();
}

TEST_F(AuditTest, HoldDiffersFromPendingLoads) {
  Corrupt("UPDATE accounts SET pending=pending+5 WHERE id=" + std::to_string(buyer_));
  EXPECT_NE(Audit().find("pending loads reserve"), std::string::npos) << Audit();
}

TEST_F(AuditTest, TamperedReceiptFailsItsSignature) {
  Corrupt("UPDATE receipts SET body=replace(body, '\"price_micros\":10000', '\"price_micros\":1') WHERE kind='deposit'");
  EXPECT_NE(Audit().find("does not verify"), std::string::npos) << Audit();
}

TEST_F(AuditTest, ValidlySignedReceiptThatDisagreesWithTheLedger) {
  // A receipt signed with the real key (a bug, or a stolen key) claiming more
  // than its transaction moved.
  Receipt r;
  r.receipt_id = "rcpt-forged";
  r.kind = "deposit";
  r.account = buyer_;
  r.price_micros = 999'999;
  r.currency = "USD";
  r.ledger_txn = 1;
  r.provider_key = key_.PublicKeyHex();
  std::string body = key_.Sign(r);
  std::string quoted;
  for (char c : body) quoted += (c == '\'') ? std::string("''") : std::string(1, c);
  Corrupt("INSERT INTO receipts(receipt_id, kind, account_id, ledger_txn, load_id, body, created_at) VALUES("
          "'rcpt-forged','deposit'," + std::to_string(buyer_) + ",1,0,'" + quoted + "',0)");
  EXPECT_NE(Audit().find("its ledger transaction does not"), std::string::npos) << Audit();
}

TEST_F(AuditTest, LoadNotResolvedExactlyOnce) {
  Corrupt("DELETE FROM load_resolutions WHERE load_id=(SELECT MIN(load_id) FROM load_resolutions WHERE outcome='posted')");
  EXPECT_NE(Audit().find("not resolved exactly once"), std::string::npos) << Audit();
}

TEST_F(AuditTest, PendingLoadWithAResolution) {
  Corrupt(std::string(backend() == Backend::kSqlite ? "DROP TRIGGER load_resolution_needs_pending;"
                                                    : "DROP TRIGGER load_resolution_needs_pending ON load_resolutions;") +
          "INSERT INTO load_resolutions(load_id, outcome, resolved_at) VALUES(" + std::to_string(pending_) + ", 'posted', 0)");
  EXPECT_NE(Audit().find("not resolved exactly once"), std::string::npos) << Audit();
}

TEST_F(AuditTest, TransferWithoutAReceipt) {
  Corrupt("DELETE FROM receipts WHERE kind='payout'");
  EXPECT_NE(Audit().find("has no receipt"), std::string::npos) << Audit();
}

TEST_F(AuditTest, UnreadableFileIsAnError) {
  EXPECT_FALSE(AuditMarketDatabase(dir_.Sub("missing.db"), key_.PublicKeyHex()).ok());
}

}  // namespace
}  // namespace kvmart::market::testing

namespace kvmart::market::testing {
namespace {

// A database written by schema v1 (one-phase loads, no receipts register)
// migrates to v2: its history, plus new activity (a storage bill with a
// registered receipt), passes the invariants and the audit.
TEST(MigrationTest, V1DatabaseMigratesAndPassesTheAudit) {
  TempDir dir;
  ProviderKey key = ProviderKey::Generate();
  const std::string path = dir.Sub("market.db");
  {
    auto db = sqlite::Db::Open(path, false, 1000);
    ASSERT_OK(db);
    std::ifstream in(std::string(KVMART_SOURCE_DIR) + "/tests/market/schema_v1.sql");
    std::stringstream sql;
    sql << in.rdbuf();
    ASSERT_FALSE(sql.str().empty());
    ASSERT_OK((*db)->Exec(sql.str().c_str()));
    const std::string art = ArtifactId(1);
    const std::string rows =
        "PRAGMA user_version=1;"
        "INSERT INTO meta VALUES('provider_public_key','" + key.PublicKeyHex() + "'), ('initialized','USD');"
        "INSERT INTO accounts(id,name,currency,credit_limit,balance,system,created_at) VALUES"
        " (1,'provider:USD','USD',0,100,'provider',0), (2,'external:USD','USD',9223372036854775807,-5000,'external',0),"
        " (3,'publisher','USD',0,900,NULL,0), (4,'buyer','USD',0,4000,NULL,0);"
        "INSERT INTO listings VALUES('" + art + "',3,1000,1000000000,'USD',1000,0,0,0,0,0);"
        "INSERT INTO txns(id,kind,artifact_id,created_at) VALUES(1,'deposit','',0),(2,'load','" + art + "',0);"
        "INSERT INTO entries(txn_id,account_id,currency,amount,role) VALUES"
        " (1,2,'USD',-5000,'external'),(1,4,'USD',5000,'deposit'),"
        " (2,4,'USD',-1000,'buyer'),(2,3,'USD',900,'publisher'),(2,1,'USD',100,'fee');"
        "INSERT INTO entitlements VALUES(1,4,'" + art + "','metered',2,0,1000,NULL,0);"
        "INSERT INTO loads(id,entitlement_id,account_id,artifact_id,tokens,charged,charge_txn,created_at)"
        " VALUES(1,1,4,'" + art + "',1000,1000,2,0);";
    ASSERT_OK((*db)->Exec(rows.c_str()));
  }
  MarketOptions opt;
  opt.provider_key = key;
  auto m = SqlMarket::Open(path, opt);
  ASSERT_OK(m);
  ASSERT_OK((*m)->CheckInvariants());
  // The migrated history and new two-phase activity both audit clean.
  ASSERT_OK((*m)->BillStorage(0, 3600));
  (*m).reset();
  auto r = AuditMarketDatabase(path, key.PublicKeyHex());
  ASSERT_OK(r);
  EXPECT_TRUE(r->ok()) << r->violation;
  EXPECT_EQ(r->loads, 1);
}

}  // namespace
}  // namespace kvmart::market::testing
