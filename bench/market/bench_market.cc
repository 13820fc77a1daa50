// kvmart-bench-market: metered loads (one-phase Load, and two-phase
// ReserveLoad + PostLoad as the server runs them) and purchases per second on
// SQLite with durability on, at 1 and 2 threads. Baseline in the same run: the rate of
// bare durable one-row commits on the same disk, i.e. the ceiling any ledger
// write that must survive power loss can reach here.
//
// With --postgres URL, a second table: the same workload on SQLite and on the
// PostgreSQL server the URL names, at 1, 4 and 16 concurrent clients (threads,
// each with its own buyer). The database the URL names is used as scratch:
// each run gets a fresh schema, dropped after.
//
//   build/kvmart-bench-market [--loads N] [--sync full|normal|both] [--dir DIR] [--postgres URL]
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "base/postgres_db.h"
#include "common/usage.h"
#include "market/sql_market.h"

using namespace kvmart;
using namespace kvmart::market;

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void Die(const Status& s, const char* what) {
  std::fprintf(stderr, "error: %s: %s\n", what, s.ToString().c_str());
  std::exit(1);
}

double BareCommits(const std::string& path, bool full, int n) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
  sqlite3_exec(db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr);
  sqlite3_exec(db, "CREATE TABLE IF NOT EXISTS t(x INTEGER)", nullptr, nullptr, nullptr);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    sqlite3_exec(db, "BEGIN IMMEDIATE; INSERT INTO t VALUES(1); COMMIT", nullptr, nullptr, nullptr);
  }
  double s = Seconds(t0);
  sqlite3_close(db);
  return n / s;
}

struct Result {
  double loads_per_s;
  double two_phase_per_s;
  double buys_per_s;
};

Result Run(const std::string& path, bool full, int threads, int loads_per_thread) {
  if (!postgres::IsPostgresUrl(path)) std::filesystem::remove(path);
  MarketOptions opt;
  opt.synchronous_full = full;
  auto mo = SqlMarket::Open(path, opt);
  if (!mo.ok()) Die(mo.status(), "open");
  auto& m = **mo;
  auto boot = m.Initialize(Currency());
  if (!boot.ok()) Die(boot.status(), "init");
  std::string admin = boot->admin_key;
  auto pub = m.CreateAccount(admin, "pub", {"publisher", Currency(), 0});
  auto pubkey = m.CreateKey(admin, "pubkey", *pub, kScopePublish);
  std::string art = "kv1-" + std::string(64, 'b');
  PriceSpec spec;
  spec.artifact_id = art;
  spec.tokens = 4096;
  spec.stored_bytes = 4096LL * 147456;
  spec.bundle_loads = 10;
  spec.bundle_price_micros = 5'000;
  if (auto l = m.SetPrice(pubkey->secret, "price", spec); !l.ok()) Die(l.status(), "price");
  std::vector<std::string> keys;
  for (int t = 0; t < threads; ++t) {
    auto a = m.CreateAccount(admin, "buyer" + std::to_string(t), {"buyer", Currency(), 0});
    auto k = m.CreateKey(admin, "bk" + std::to_string(t), *a, kScopeBuy);
    if (auto d = m.Deposit(admin, "dep" + std::to_string(t), *a, Money(1'000'000'000'000, Currency())); !d.ok()) Die(d.status(), "deposit");
    if (auto b = m.Buy(k->secret, "meter", {art, PurchaseKind::kMetered, 1'000'000'000}); !b.ok()) Die(b.status(), "buy");
    keys.push_back(k->secret);
  }
  auto timed = [&](auto&& body) {
    std::vector<std::thread> ts;
    auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] { body(t); });
    for (auto& th : ts) th.join();
    return Seconds(t0);
  };
  double load_s = timed([&](int t) {
    for (int i = 0; i < loads_per_thread; ++i) {
      auto r = m.Load(keys[t], "load-" + std::to_string(i), art);
      if (!r.ok() || r->charged.is_zero()) Die(r.status(), "load");
    }
  });
  // Two-phase, as the server does it: reserve before the store is touched,
  // post when the answer is out (two commits per load).
  double two_phase_s = timed([&](int t) {
    for (int i = 0; i < loads_per_thread; ++i) {
      auto h = m.ReserveLoad(keys[t], "reserve-" + std::to_string(i), art);
      if (!h.ok() || h->reserved.is_zero()) Die(h.status(), "reserve");
      auto r = m.PostLoad(keys[t], "post-" + std::to_string(i), h->load);
      if (!r.ok() || r->charged.is_zero()) Die(r.status(), "post");
    }
  });
  int buys = loads_per_thread / 2;
  double buy_s = timed([&](int t) {
    for (int i = 0; i < buys; ++i) {
      auto r = m.Buy(keys[t], "bundle-" + std::to_string(i), {art, PurchaseKind::kBundle, 1});
      if (!r.ok()) Die(r.status(), "bundle");
    }
  });
  if (auto s = m.CheckInvariants(); !s.ok()) Die(s, "invariants");
  if (!postgres::IsPostgresUrl(path)) {
    std::filesystem::remove(path);
    std::filesystem::remove(path + "-wal");
    std::filesystem::remove(path + "-shm");
  }
  return {threads * loads_per_thread / load_s, threads * loads_per_thread / two_phase_s, threads * buys / buy_s};
}

// A fresh schema on the server for one run: the URL that selects it, and its name.
std::pair<std::string, std::string> FreshSchema(postgres::Connection& admin, const std::string& url, int n) {
  const std::string schema = "kvmart_bench_" + std::to_string(getpid()) + "_" + std::to_string(n);
  if (Status s = admin.Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE; CREATE SCHEMA " + schema); !s.ok()) {
    Die(s, "create schema");
  }
  return {url + (url.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" + schema, schema};
}

// Bare one-row commits on the server, one client: the round-trip-and-commit
// ceiling of any ledger write there.
double BarePostgresCommits(postgres::Connection& c, int n) {
  if (Status s = c.Exec("CREATE TEMP TABLE bare_commits(x BIGINT)"); !s.ok()) Die(s, "bare table");
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    if (Status s = c.Exec("BEGIN; INSERT INTO bare_commits VALUES(1); COMMIT"); !s.ok()) Die(s, "bare commit");
  }
  return n / Seconds(t0);
}

void CompareBackends(const std::string& dir, const std::string& url, int loads) {
  auto admin = postgres::Connection::Open(url);
  if (!admin.ok()) Die(admin.status(), "connect to PostgreSQL");
  auto show = [&](const char* setting) {
    auto st = (*admin)->Prepare(setting);
    if (!st.ok() || !(*st)->Step().value_or(false)) return std::string("?");
    return (*st)->Text(0);
  };
  std::printf("\nPostgreSQL %s (fsync=%s, synchronous_commit=%s) vs SQLite synchronous=FULL (F) and NORMAL (N)\n",
              show("SHOW server_version").c_str(), show("SHOW fsync").c_str(), show("SHOW synchronous_commit").c_str());
  std::printf("bare one-row commits/s, one client: PostgreSQL %.0f, SQLite FULL %.0f\n",
              BarePostgresCommits(**admin, loads), BareCommits(dir + "/bare-cmp.db", true, loads));
  std::printf("%-10s %-8s %14s %16s %14s %14s\n", "backend", "clients", "loads/s", "2-phase loads/s", "purchases/s",
              "2p vs sqlite-F");
  int n = 0;
  for (int clients : {1, 4, 16}) {
    const int per = std::max(1, loads / clients);
    Result full = Run(dir + "/cmp-full.db", true, clients, per);
    Result normal = Run(dir + "/cmp-normal.db", false, clients, per);
    auto [pg_url, schema] = FreshSchema(**admin, url, n++);
    Result pg = Run(pg_url, false, clients, per);
    (void)(*admin)->Exec("DROP SCHEMA IF EXISTS " + schema + " CASCADE");
    const Result* rows[] = {&full, &normal, &pg};
    const char* names[] = {"sqlite-F", "sqlite-N", "postgres"};
    for (int i = 0; i < 3; ++i) {
      std::printf("%-10s %-8d %14.0f %16.0f %14.0f %13.2fx\n", names[i], clients, rows[i]->loads_per_s,
                  rows[i]->two_phase_per_s, rows[i]->buys_per_s, rows[i]->two_phase_per_s / full.two_phase_per_s);
    }
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int loads = 3000;
  std::string sync = "both";
  std::string dir = std::filesystem::temp_directory_path().string();
  std::string pg_url;
  const kvmart::bench::Usage usage(
      "usage: kvmart-bench-market [--loads N] [--sync full|normal|both] [--dir DIR] [--postgres URL]\n"
      "Metered loads per second through the SQLite market, per synchronous mode; with --postgres,\n"
      "SQLite against that PostgreSQL server at 1, 4 and 16 clients.\n");
  usage.HandleHelp(argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--loads")) loads = std::atoi(usage.Value(argc, argv, &i).c_str());
    else if (!std::strcmp(argv[i], "--sync")) sync = usage.Value(argc, argv, &i);
    else if (!std::strcmp(argv[i], "--dir")) dir = usage.Value(argc, argv, &i);
    else if (!std::strcmp(argv[i], "--postgres")) pg_url = usage.Value(argc, argv, &i);
    else usage.Fail(std::string("unknown option ") + argv[i]);
  }
  dir += "/kvmart-bench-market-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::printf("metered loads: each is auth + entitlement decrement + 3 ledger entries + signed receipt + idempotency row, one durable commit\n");
  std::printf("two-phase loads: reserve (auth + entitlement decrement + hold) and post (charge + receipt), two durable commits\n");
  std::printf("%-8s %-8s %14s %16s %8s %14s %16s %10s\n", "sync", "threads", "loads/s", "2-phase loads/s", "2p/1p",
              "purchases/s", "bare commits/s", "1p vs bare");
  for (bool full : {true, false}) {
    if ((sync == "full" && !full) || (sync == "normal" && full)) continue;
    double bare = BareCommits(dir + "/bare.db", full, loads);
    for (int threads : {1, 2}) {
      Result r = Run(dir + "/bench-" + std::to_string(full) + "-" + std::to_string(threads) + ".db", full, threads,
                     loads / threads);
      std::printf("%-8s %-8d %14.0f %16.0f %7.2fx %14.0f %16.0f %9.2fx\n", full ? "FULL" : "NORMAL", threads,
                  r.loads_per_s, r.two_phase_per_s, r.two_phase_per_s / r.loads_per_s, r.buys_per_s, bare,
                  r.loads_per_s / bare);
    }
  }
  if (!pg_url.empty()) CompareBackends(dir, pg_url, loads);
  std::filesystem::remove_all(dir);
  return 0;
}
