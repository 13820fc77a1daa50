// The ledger under storage faults (docs/MARKET.md, "Storage faults"), on a
// SQLite VFS that loses what was not synced (testing/fault_vfs.h), with
// synchronous=FULL (the power-loss-safe setting):
//  - a seeded workload of deposits, purchases, loads, refunds and two-phase
//    loads (reserve, then post or void; the rest expire) is crashed at every
//    xSync; after the restart the audit is clean, every acknowledged operation
//    is there (its retry returns its first answer), and running the rest of
//    the workload (the interrupted one again first) ends in exactly the ledger
//    of a run without faults: nothing lost, nothing applied twice, nothing
//    half-applied, every hold resolved once;
//  - the N-th xWrite and the N-th xSync fail with SQLITE_IOERR and
//    SQLITE_FULL, for every N: that call fails (IOError / DiskFull), is never
//    reported as success, and the market goes on to the same ledger.
#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <set>

#include "testing/fault_points.h"
#include "market/audit.h"
#include "test_util.h"
#include "testing/fault_vfs.h"

namespace kvmart::market::testing {
namespace {

using ::kvmart::testing::FaultVfs;

constexpr int64_t kStart = 1'700'000'000;

// One step of the workload. References to earlier steps (the hold to post,
// the load to refund) are by step index, resolved from that step's answer.
struct Step {
  enum Kind { kDeposit, kBuy, kLoad, kRefund, kReserve, kPost, kVoid, kExpire } kind;
  int buyer = 0;
  int art = 0;
  int64_t amount = 0;
  PurchaseKind purchase = PurchaseKind::kMetered;
  int ref = -1;
};

std::vector<Step> MakeWorkload(uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  std::vector<Step> w;
  std::vector<int> open_holds, refundable;
  for (int b = 0; b < 2; ++b)
    for (int a = 0; a < 3; ++a) w.push_back({Step::kBuy, b, a, 0, PurchaseKind::kMetered, -1});
  for (int i = 0; i < 48; ++i) {
    Step s{};
    s.buyer = static_cast<int>(pick(0, 1));
    s.art = static_cast<int>(pick(0, 2));
    switch (pick(0, 7)) {
      case 0:
        s.kind = Step::kDeposit;
        s.amount = pick(1, 5000);
        break;
      case 1:
        s.kind = Step::kBuy;
        s.purchase = pick(0, 1) == 0 ? PurchaseKind::kBundle : PurchaseKind::kMetered;
        break;
      case 2:
        s.kind = Step::kLoad;
        refundable.push_back(static_cast<int>(w.size()));
        break;
      case 3:
        if (refundable.empty()) continue;
        s.kind = Step::kRefund;
        s.ref = refundable[pick(0, refundable.size() - 1)];
        std::erase(refundable, s.ref);
        break;
      case 4:
      case 5:
        s.kind = Step::kReserve;
        open_holds.push_back(static_cast<int>(w.size()));
        break;
      default:
        if (open_holds.empty()) continue;
        s.kind = pick(0, 1) == 0 ? Step::kPost : Step::kVoid;
        s.ref = open_holds[pick(0, open_holds.size() - 1)];
        std::erase(open_holds, s.ref);
        break;
    }
    w.push_back(s);
  }
  w.push_back({Step::kExpire});  // the holds left open
  return w;
}

// A market on the fault VFS with its accounts, keys and listings (not under
// faults), and the answers of the workload's steps so far.
struct MarketRun {
  TempDir dir;
  std::shared_ptr<std::atomic<int64_t>> now = std::make_shared<std::atomic<int64_t>>(kStart);
  ProviderKey key = ProviderKey::Generate();
  std::string vfs;
  bool synchronous_full = true;  // what survives a power loss is what this tests
  std::unique_ptr<SqlMarket> market;
  std::string admin, publisher_key;
  std::vector<std::pair<AccountId, std::string>> buyers;
  const std::vector<std::string> arts = {ArtifactId(1), ArtifactId(2), ArtifactId(3)};
  // Per step: the answer digest compared across runs, the receipt (or load
  // id) compared with its own retry, and the load id later steps refer to.
  std::vector<std::optional<std::string>> digest;
  std::vector<std::string> answer;
  std::vector<int64_t> load_of;

  std::string Path() const { return dir.Sub("market.sqlite"); }

  Status Open() {
    market.reset();
    MarketOptions o;
    o.provider_key = key;
    o.clock = [n = now] { return n->load(); };
    o.synchronous_full = synchronous_full;
    o.sqlite_vfs = vfs;
    o.reservation_seconds = 900;
    KVMART_ASSIGN_OR_RETURN(market, SqlMarket::Open(Path(), o));
    return Status::Ok();
  }

  Status Setup() {
    KVMART_RETURN_IF_ERROR(Open());
    KVMART_ASSIGN_OR_RETURN(auto b, market->Initialize(Currency()));
    admin = b.admin_key;
    KVMART_ASSIGN_OR_RETURN(AccountId pub, market->CreateAccount(admin, "acct-pub", {"pub", Currency(), 0}));
    KVMART_ASSIGN_OR_RETURN(auto pk, market->CreateKey(admin, "key-pub", pub, kScopePublish));
    publisher_key = pk.secret;
    for (int i = 0; i < 2; ++i) {
      const std::string n = "buyer" + std::to_string(i);
      KVMART_ASSIGN_OR_RETURN(AccountId a, market->CreateAccount(admin, "acct-" + n, {n, Currency(), i == 1 ? 900 : 0}));
      KVMART_ASSIGN_OR_RETURN(auto k, market->CreateKey(admin, "key-" + n, a, kScopeBuy));
      buyers.emplace_back(a, k.secret);
      KVMART_RETURN_IF_ERROR(market->Deposit(admin, "seed-" + n, a, Money(4000, Currency())).status());
    }
    for (size_t i = 0; i < arts.size(); ++i) {
      PriceSpec p;
      p.artifact_id = arts[i];
      p.tokens = 1000;
      p.stored_bytes = 1'000'000;
      const int64_t per_load = 100 + 70 * static_cast<int64_t>(i);
      p.per_load_micros = per_load;
      p.bundle_loads = 3;
      p.bundle_price_micros = per_load * 2;
      p.unlimited_seconds = 3600;
      p.unlimited_price_micros = per_load * 50;
      KVMART_RETURN_IF_ERROR(market->SetPrice(publisher_key, "list-" + arts[i], p).status());
    }
    return Status::Ok();
  }

  // Runs step i. A Status of the call itself is the step's answer (an
  // acknowledged refusal, say); IOError / DiskFull come back as the error.
  Status Do(const std::vector<Step>& w, size_t i) {
    if (digest.size() < w.size()) {
      digest.resize(w.size());
      answer.resize(w.size());
      load_of.resize(w.size(), 0);
    }
    const Step& s = w[i];
    const std::string idem = "step-" + std::to_string(i);
    const auto& [acct, bkey] = buyers[s.buyer];
    const std::string& art = arts[s.art];
    std::string d, ans;
    int64_t load = 0;
    Status st;
    switch (s.kind) {
      case Step::kDeposit: {
        auto r = market->Deposit(admin, idem, acct, Money(s.amount, Currency()));
        st = r.status();
        if (r.ok()) ans = *r;
        break;
      }
      case Step::kBuy: {
        auto r = market->Buy(bkey, idem, {art, s.purchase, 1});
        st = r.status();
        if (r.ok()) ans = r->receipt, d = "entitlement " + std::to_string(r->entitlement);
        break;
      }
      case Step::kLoad: {
        auto r = market->Load(bkey, idem, art);
        st = r.status();
        if (r.ok()) ans = r->receipt, load = r->load, d = "load " + std::to_string(r->load);
        break;
      }
      case Step::kReserve: {
        auto r = market->ReserveLoad(bkey, idem, art);
        st = r.status();
        if (r.ok()) load = r->load, ans = d = "hold " + std::to_string(r->load);
        break;
      }
      case Step::kRefund:
      case Step::kPost:
      case Step::kVoid: {
        const int64_t target = load_of[s.ref];
        const std::string& k = buyers[w[s.ref].buyer].second;
        if (target == 0) {
          d = ans = "no load to resolve";  // the referenced step was refused
          break;
        }
        if (s.kind == Step::kRefund) {
          auto r = market->FailLoad(k, idem, target);
          st = r.status();
          if (r.ok()) ans = *r;
        } else if (s.kind == Step::kPost) {
          auto r = market->PostLoad(k, idem, target);
          st = r.status();
          if (r.ok()) ans = r->receipt;
        } else {
          st = market->VoidLoad(k, idem, target, "generation failed");
        }
        break;
      }
      case Step::kExpire: {
        now->store(kStart + 1000);  // absolute: a retry moves it no further
        auto r = market->VoidExpiredLoads();
        st = r.status();
        d = ans = "swept";  // how many depends on whether a restart swept first
        break;
      }
    }
    if (st.code() == Status::Code::kIOError || st.IsDiskFull()) return st;
    if (!st.ok()) d = ans = std::string("refused: ") + CodeName(st.code());
    digest[i] = "ok " + d;
    answer[i] = ans;
    load_of[i] = load;
    return Status::Ok();
  }

  // Everything observable about the ledger (as test_util.h's Snapshot).
  std::vector<int64_t> Snapshot() {
    std::vector<int64_t> out;
    for (AccountId a = 1; a < 16; ++a) {
      auto info = market->GetAccount(admin, a);
      if (!info.ok()) break;
      out.push_back(info->balance.micros());
      auto st = market->Statement(admin, a, 0, INT64_MAX);
      out.push_back(st.ok() ? static_cast<int64_t>(st->size()) : -1);
      auto ents = market->Entitlements(admin, a);
      for (const auto& e : ents.ok() ? *ents : std::vector<Entitlement>{}) out.push_back(e.loads_remaining.value_or(-7));
    }
    return out;
  }

  std::string Audit() {
    auto r = AuditMarketDatabase(Path(), key.PublicKeyHex());
    if (!r.ok()) return r.status().ToString();
    return r->violation;
  }
};

struct Reference {
  std::vector<std::optional<std::string>> digest;
  std::vector<int64_t> snapshot;
  uint64_t setup_syncs = 0, syncs = 0, setup_writes = 0, writes = 0;
};

const std::vector<Step>& TheWorkload() {
  static const std::vector<Step> w = MakeWorkload(20261202);
  return w;
}

// A run without faults, on the fault VFS (so its calls are counted).
const Reference& TheReference() {
  static const Reference ref = [] {
    Reference r;
    FaultVfs vfs("kvmart-fault-reference");
    MarketRun run;
    run.vfs = vfs.name();
    Status st = run.Setup();
    EXPECT_TRUE(st.ok()) << st.ToString();
    r.setup_syncs = vfs.syncs();
    r.setup_writes = vfs.writes();
    for (size_t i = 0; st.ok() && i < TheWorkload().size(); ++i) {
      st = run.Do(TheWorkload(), i);
      EXPECT_TRUE(st.ok()) << "step " << i << ": " << st.ToString();
    }
    r.syncs = vfs.syncs() - r.setup_syncs;
    r.writes = vfs.writes() - r.setup_writes;
    r.digest = run.digest;
    r.snapshot = run.Snapshot();
    EXPECT_EQ(run.Audit(), "");
    run.market.reset();
    return r;
  }();
  return ref;
}

TEST(MarketFaults, WorkloadCoversEveryKindOfStep) {
  const auto& w = TheWorkload();
  std::set<int> kinds;
  std::string seen;
  for (const Step& s : w) kinds.insert(s.kind);
  for (int k : kinds) seen += std::to_string(k) + " ";
  EXPECT_EQ(kinds.size(), 8u) << "deposit, buy, load, refund, reserve, post, void, expire; seen: " << seen;
  const Reference& ref = TheReference();
  size_t ok = 0;
  for (const auto& d : ref.digest) ok += d && d->rfind("ok refused", 0) != 0;
  EXPECT_GT(ok, w.size() * 2 / 3) << "most steps must succeed to test anything";
  // synchronous=FULL: a sync per commit (steps that change nothing commit nothing).
  EXPECT_GE(ref.syncs, ok / 2);
  size_t resolved = 0;
  for (size_t i = 0; i < w.size(); ++i)
    if (w[i].kind == Step::kPost || w[i].kind == Step::kVoid || w[i].kind == Step::kRefund)
      resolved += ref.digest[i] && ref.digest[i]->rfind("ok no load", 0) != 0;
  EXPECT_GE(resolved, 4u) << "holds posted or voided, loads refunded";
  std::printf("workload: %zu steps (%zu succeed), %llu syncs, %llu writes\n", w.size(), ok,
              static_cast<unsigned long long>(ref.syncs), static_cast<unsigned long long>(ref.writes));
}

// After a restart: audit clean, acknowledged steps there (a retry answers the
// same), the rest of the workload ends in the reference ledger.
void CheckRecovery(MarketRun& run, size_t first_unacked, const std::string& where) {
  const auto& w = TheWorkload();
  const Reference& ref = TheReference();
  Status st = run.Open();
  ASSERT_TRUE(st.ok()) << where << ": reopen: " << st.ToString();
  EXPECT_EQ(run.Audit(), "") << where << ": after the restart";
  for (size_t i = 0; i < first_unacked; ++i) {
    const std::string before = run.answer[i];
    const std::optional<std::string> digest = run.digest[i];
    // A refusal was the answer to the ledger of its time; the sweep counts.
    if (w[i].kind == Step::kExpire || !digest || digest->rfind("ok refused", 0) == 0) continue;
    ASSERT_TRUE(run.Do(w, i).ok()) << where;
    EXPECT_EQ(run.answer[i], before) << where << ": acknowledged step " << i << " answers otherwise after the restart";
    EXPECT_EQ(run.digest[i], digest) << where << ": step " << i;
  }
  for (size_t i = first_unacked; i < w.size(); ++i) {
    st = run.Do(w, i);
    ASSERT_TRUE(st.ok()) << where << ": step " << i << " after the restart: " << st.ToString();
    EXPECT_EQ(run.digest[i], ref.digest[i]) << where << ": step " << i;
  }
  EXPECT_EQ(run.Snapshot(), ref.snapshot) << where << ": the ledger differs from the run without faults";
  EXPECT_EQ(run.Audit(), "") << where << ": at the end";
}

TEST(MarketFaults, CrashAtEverySyncLosesNoAcknowledgedOperation) {
  const Reference& ref = TheReference();
  const auto& w = TheWorkload();
  ASSERT_GT(ref.syncs, 20u);
  uint64_t mid_step = 0;
  for (uint64_t k = 1; k <= ref.syncs + 1; ++k) {
    const std::string where = "crash at workload sync " + std::to_string(k);
    FaultVfs vfs("kvmart-fault-crash");
    MarketRun run;
    run.vfs = vfs.name();
    ASSERT_TRUE(run.Setup().ok()) << where;
    ASSERT_EQ(vfs.syncs(), ref.setup_syncs) << "setup is not deterministic";
    vfs.CrashAtSync(ref.setup_syncs + k);
    size_t acked = 0;
    for (; acked < w.size(); ++acked) {
      Status st = run.Do(w, acked);
      if (!st.ok()) {
        // The step that met the crash said so.
        EXPECT_TRUE(vfs.crashed()) << where << ": step " << acked << ": " << st.ToString();
        break;
      }
    }
    if (k <= ref.syncs) {
      ASSERT_TRUE(vfs.crashed()) << where;
      ASSERT_LT(acked, w.size()) << where << ": the crash was reported as success";
      mid_step += vfs.unsynced_writes() > 0;
    }
    vfs.Stop();  // k past the last sync: the power goes after the last commit
    run.market.reset();
    ASSERT_TRUE(vfs.Crash().ok()) << where;
    CheckRecovery(run, acked, where);
    if (::testing::Test::HasFailure()) return;
  }
  EXPECT_GT(mid_step, 0u) << "no crash had unsynced writes to lose";
  std::printf("crash points: %llu (%llu with unsynced writes lost)\n", static_cast<unsigned long long>(ref.syncs + 1),
              static_cast<unsigned long long>(mid_step));
}

// The N-th write or sync of the workload fails with rc, for every N.
void FailEveryN(bool sync, int rc) {
  const Reference& ref = TheReference();
  const auto& w = TheWorkload();
  const uint64_t total = sync ? ref.syncs : ref.writes;
  ASSERT_GT(total, 20u);
  for (uint64_t n = 1; n <= total; n = ::kvmart::testing::NextFaultPoint(n, total)) {
    const std::string where = std::string(sync ? "xSync " : "xWrite ") + std::to_string(n) + " fails with " +
                              (rc == SQLITE_FULL ? "SQLITE_FULL" : "SQLITE_IOERR");
    FaultVfs vfs("kvmart-fault-fail");
    MarketRun run;
    run.vfs = vfs.name();
    ASSERT_TRUE(run.Setup().ok()) << where;
    if (sync)
      vfs.FailSync(ref.setup_syncs + n, rc);
    else
      vfs.FailWrite(ref.setup_writes + n, rc);
    size_t failed = w.size();
    for (size_t i = 0; i < w.size(); ++i) {
      const auto snapshot = run.Snapshot();
      Status st = run.Do(w, i);
      if (st.ok()) continue;
      if (rc == SQLITE_FULL) {
        EXPECT_TRUE(st.IsDiskFull()) << where << ": step " << i << ": " << st.ToString();
      } else {
        EXPECT_EQ(st.code(), Status::Code::kIOError) << where << ": step " << i << ": " << st.ToString();
      }
      // Nothing of it is visible, and the ledger is sound.
      EXPECT_EQ(run.Snapshot(), snapshot) << where << ": the failed step " << i << " changed the ledger";
      EXPECT_EQ(run.Audit(), "") << where;
      failed = i;
      break;
    }
    ASSERT_LT(failed, w.size()) << where << ": the fault was reported as success";
    // The market goes on (without a restart): the failed step again, the rest.
    for (size_t i = failed; i < w.size(); ++i) {
      Status st = run.Do(w, i);
      ASSERT_TRUE(st.ok()) << where << ": step " << i << " after the fault: " << st.ToString();
      EXPECT_EQ(run.digest[i], ref.digest[i]) << where << ": step " << i;
    }
    EXPECT_EQ(run.Snapshot(), ref.snapshot) << where << ": the ledger differs from the run without faults";
    EXPECT_EQ(run.Audit(), "") << where;
    if (::testing::Test::HasFailure()) return;
  }
  std::printf("%s: %llu fault points\n", sync ? "xSync" : "xWrite", static_cast<unsigned long long>(total));
}

// The VFS bites: under synchronous=NORMAL commits are not synced, so a power
// loss takes the last of them; the ledger left is an earlier one, still sound.
TEST(MarketFaults, WithoutSyncAPowerLossLosesCommitsButTheLedgerStaysSound) {
  const Reference& ref = TheReference();
  const auto& w = TheWorkload();
  FaultVfs vfs("kvmart-fault-normal");
  MarketRun run;
  run.vfs = vfs.name();
  run.synchronous_full = false;
  ASSERT_TRUE(run.Setup().ok());
  for (size_t i = 0; i < w.size(); ++i) ASSERT_TRUE(run.Do(w, i).ok()) << "step " << i;
  EXPECT_EQ(run.Snapshot(), ref.snapshot);
  EXPECT_GT(vfs.unsynced_writes(), 0u);
  vfs.Stop();  // a power loss, not a clean close (which would checkpoint)
  run.market.reset();
  ASSERT_TRUE(vfs.Crash().ok());
  ASSERT_TRUE(run.Open().ok());
  EXPECT_NE(run.Snapshot(), ref.snapshot) << "a power loss under synchronous=NORMAL lost nothing: the VFS does not bite";
  EXPECT_EQ(run.Audit(), "");
  EXPECT_TRUE(run.market->CheckInvariants().ok());
}

TEST(MarketFaults, EveryFailedSyncWithIoerrIsAnError) { FailEveryN(true, SQLITE_IOERR_FSYNC); }
TEST(MarketFaults, EveryFailedSyncWithFullIsDiskFull) { FailEveryN(true, SQLITE_FULL); }
TEST(MarketFaults, EveryFailedWriteWithIoerrIsAnError) { FailEveryN(false, SQLITE_IOERR_WRITE); }
TEST(MarketFaults, EveryFailedWriteWithFullIsDiskFull) { FailEveryN(false, SQLITE_FULL); }

}  // namespace
}  // namespace kvmart::market::testing
