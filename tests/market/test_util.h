// Shared fixtures for market tests: a fresh market database, a controllable
// clock, and a ledger snapshot to prove "nothing changed".
//
// One suite, two back ends: the same binary runs once per back end, chosen by
// $KVMART_TEST_MARKET_BACKEND (sqlite, the default, or postgres; CTest
// registers both runs). On PostgreSQL each test gets a schema of its own on
// the suite's server (tests/testing/postgres.sh), dropped when it ends.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "base/postgres_db.h"
#include "base/sqlite_db.h"
#include "market/sql_market.h"
#include "testing/temp_dir.h"
#include "testing/test_database.h"

#include <sodium.h>

#include <fstream>

namespace kvmart::market::testing {

inline const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const StatusOr<T>& s) { return s.status(); }

#define ASSERT_OK(expr)                                                             \
  do {                                                                              \
    const auto& _s = (expr);                                                        \
    ASSERT_TRUE(_s.ok()) << ::kvmart::market::testing::StatusOf(_s).ToString();     \
  } while (0)

#define EXPECT_CODE(expr, code_) EXPECT_EQ(::kvmart::market::testing::StatusOf(expr).code(), ::kvmart::Status::Code::code_)

inline std::string ArtifactId(int n) {
  std::string hex = std::to_string(n);
  return "kv1-" + std::string(64 - hex.size(), 'a') + hex;
}

// Market tests need no durability: a RAM-backed /dev/shm keeps the ~10^5
// commits of the model test to seconds; elsewhere the usual temp directory.
inline std::filesystem::path TestTempBase() {
  std::error_code ec;
  if (std::getenv("TMPDIR") == nullptr && std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0) {
    return "/dev/shm";
  }
  return std::filesystem::temp_directory_path();
}

class TempDir : public ::kvmart::testing::TempDir {
 public:
  TempDir() : ::kvmart::testing::TempDir(TestTempBase()) {}
};

using ::kvmart::testing::Backend;
using ::kvmart::testing::TestDatabase;

inline Backend TestBackend() { return ::kvmart::testing::BackendFromEnv("KVMART_TEST_MARKET_BACKEND"); }

struct Clock {
  std::shared_ptr<std::atomic<int64_t>> now = std::make_shared<std::atomic<int64_t>>(1'700'000'000);
  std::function<int64_t()> fn() const {
    auto n = now;
    return [n] { return n->load(); };
  }
};

// A market with a publisher, a buyer and their keys.
class MarketFixture : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  void Reopen(bool fresh = true) {
    market_.reset();
    if (db_ == nullptr) {
      auto db = TestDatabase::Create(dir_, TestBackend());
      ASSERT_TRUE(db.ok()) << db.status().ToString();
      db_ = std::move(db).value();
    }
    MarketOptions opt = options_;
    opt.provider_key = key_;
    opt.clock = clock_.fn();
    opt.synchronous_full = false;  // tests need speed, not power-loss safety
    auto m = SqlMarket::Open(db_->location(), opt);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    market_ = std::move(m).value();
    if (!fresh) return;
    auto b = market_->Initialize(Currency());
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    admin_ = b->admin_key;
    provider_ = b->provider_account;
    publisher_ = MakeAccount("publisher", kScopePublish);
    publisher_key_ = last_key_;
    buyer_ = MakeAccount("buyer", kScopeBuy);
    buyer_key_ = last_key_;
  }

  AccountId MakeAccount(const std::string& name, uint32_t scopes, int64_t credit = 0) {
    auto a = market_->CreateAccount(admin_, "acct-" + name + std::to_string(counter_++), {name, Currency(), credit});
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    auto k = market_->CreateKey(admin_, "key-" + name + std::to_string(counter_++), *a, scopes);
    EXPECT_TRUE(k.ok()) << k.status().ToString();
    last_key_ = k->secret;
    last_key_id_ = k->key_id;
    return *a;
  }

  Money Usd(int64_t micros) const { return Money(micros, Currency()); }

  Money Balance(AccountId a) {
    auto info = market_->GetAccount(admin_, a);
    EXPECT_TRUE(info.ok()) << info.status().ToString();
    return info.ok() ? info->balance : Money();
  }

  void List(const std::string& artifact, int64_t per_load, int64_t tokens = 1000) {
    PriceSpec p;
    p.artifact_id = artifact;
    p.tokens = tokens;
    p.stored_bytes = 1'000'000'000;
    p.per_load_micros = per_load;
    p.bundle_loads = 10;
    p.bundle_price_micros = per_load * 8;
    p.unlimited_seconds = 3600;
    p.unlimited_price_micros = per_load * 100;
    auto l = market_->SetPrice(publisher_key_, "list-" + artifact + std::to_string(counter_++), p);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
  }

  // Everything observable about the ledger, for "this call changed nothing".
  std::vector<int64_t> Snapshot() {
    std::vector<int64_t> out;
    for (AccountId a = 1; a < 64; ++a) {
      auto info = market_->GetAccount(admin_, a);
      if (!info.ok()) break;
      out.push_back(info->balance.micros());
      auto st = market_->Statement(admin_, a, 0, INT64_MAX);
      out.push_back(st.ok() ? static_cast<int64_t>(st->size()) : -1);
      auto ents = market_->Entitlements(admin_, a);
      for (const auto& e : ents.ok() ? *ents : std::vector<Entitlement>{}) out.push_back(e.loads_remaining.value_or(-7));
    }
    return out;
  }

  const std::string& Location() const { return db_->location(); }
  Backend backend() const { return db_->backend(); }

  TempDir dir_;
  std::unique_ptr<TestDatabase> db_;  // after dir_: a SQLite file lives in it
  Clock clock_;
  MarketOptions options_;  // policy knobs a test sets before Reopen
  ProviderKey key_ = ProviderKey::Generate();
  std::unique_ptr<SqlMarket> market_;
  std::string admin_, publisher_key_, buyer_key_, last_key_;
  AccountId provider_ = 0, publisher_ = 0, buyer_ = 0;
  int64_t last_key_id_ = 0;
  int counter_ = 0;
};

}  // namespace kvmart::market::testing
