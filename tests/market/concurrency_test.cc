// Concurrency: several threads, and separately several processes, buying and
// loading against one small balance never overspend, and total charged equals
// loads served.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "test_util.h"

namespace kvmart::market::testing {
namespace {

constexpr int64_t kPrice = 100;
constexpr int64_t kBundlePrice = kPrice * 8;  // see MarketFixture::List

struct Tally {
  int64_t metered_loads = 0;
  int64_t bundles = 0;
  int64_t prepaid_loads = 0;
};

// One worker: alternately buys (metered or bundle) and loads until broke.
Tally Work(Market* m, const std::string& key, const std::string& art, const std::string& tag) {
  Tally t;
  int n = 0;
  for (int round = 0; round < 100; ++round) {
    bool bundle = round % 3 == 2;
    auto p = m->Buy(key, tag + "-b" + std::to_string(round), {art, bundle ? PurchaseKind::kBundle : PurchaseKind::kMetered, bundle ? 1 : 3});
    if (!p.ok()) {
      EXPECT_EQ(p.status().code(), Status::Code::kResourceExhausted) << p.status().ToString();
      if (!bundle) break;
      continue;
    }
    if (bundle) ++t.bundles;
    for (;;) {
      auto l = m->Load(key, tag + "-l" + std::to_string(n++), art);
      if (!l.ok()) {
        EXPECT_TRUE(l.status().code() == Status::Code::kResourceExhausted ||
                    l.status().code() == Status::Code::kPermissionDenied) << l.status().ToString();
        break;
      }
      if (l->charged.micros() > 0) {
        EXPECT_EQ(l->charged.micros(), kPrice);
        ++t.metered_loads;
      } else {
        ++t.prepaid_loads;
      }
    }
    if (m->GetAccount(key, 0).ok()) break;  // never true; keeps the reader path busy
  }
  return t;
}

class ConcurrencyTest : public MarketFixture {
 protected:
  void Check(const Tally& total, int64_t deposit) {
    int64_t spent = deposit - Balance(buyer_).micros();
    EXPECT_GE(Balance(buyer_).micros(), 0);
    EXPECT_LT(Balance(buyer_).micros(), kBundlePrice);  // they ran it down
    EXPECT_EQ(spent, total.metered_loads * kPrice + total.bundles * kBundlePrice);
    // Prepaid loads can never exceed what was bought (others are refused).
    EXPECT_EQ(total.prepaid_loads, total.bundles * 10);  // each bundle used up
    auto earn = market_->PublisherEarnings(publisher_key_, publisher_);
    ASSERT_OK(earn);
    ASSERT_EQ(earn->size(), 1u);
    EXPECT_EQ((*earn)[0].loads, total.metered_loads);
    EXPECT_EQ(Balance(publisher_).micros() + Balance(provider_).micros(), spent);
    ASSERT_OK(market_->CheckInvariants());
  }
};

TEST_F(ConcurrencyTest, ThreadsNeverOverspend) {
  const std::string art = ArtifactId(1);
  List(art, kPrice);
  constexpr int64_t kDeposit = 4'250;
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(kDeposit)));
  constexpr int kThreads = 4;
  std::vector<Tally> tallies(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] { tallies[i] = Work(market_.get(), buyer_key_, art, "t" + std::to_string(i)); });
  }
  for (auto& t : threads) t.join();
  Tally total;
  for (const auto& t : tallies) {
    total.metered_loads += t.metered_loads;
    total.bundles += t.bundles;
    total.prepaid_loads += t.prepaid_loads;
  }
  Check(total, kDeposit);
}

TEST_F(ConcurrencyTest, ProcessesNeverOverspend) {
  const std::string art = ArtifactId(2);
  List(art, kPrice);
  constexpr int64_t kDeposit = 4'250;
  ASSERT_OK(market_->Deposit(admin_, "d", buyer_, Usd(kDeposit)));
  constexpr int kProcs = 4;
  std::vector<std::pair<pid_t, int>> kids;
  for (int i = 0; i < kProcs; ++i) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      // A child process opens the file itself: connections never cross fork.
      MarketOptions opt;
      opt.provider_key = key_;
      opt.clock = clock_.fn();
      opt.synchronous_full = false;
      auto m = SqlMarket::Open(Location(), opt);
      Tally t{-1, -1, -1};
      if (m.ok()) t = Work(m->get(), buyer_key_, art, "p" + std::to_string(i));
      bool ok = write(fds[1], &t, sizeof t) == static_cast<ssize_t>(sizeof t);
      close(fds[1]);
      _exit(ok && !::testing::Test::HasFailure() ? 0 : 1);
    }
    close(fds[1]);
    kids.emplace_back(pid, fds[0]);
  }
  Tally total;
  for (auto [pid, fd] : kids) {
    Tally t;
    ASSERT_EQ(read(fd, &t, sizeof t), static_cast<ssize_t>(sizeof t));
    close(fd);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT_GE(t.metered_loads, 0);
    total.metered_loads += t.metered_loads;
    total.bundles += t.bundles;
    total.prepaid_loads += t.prepaid_loads;
  }
  Check(total, kDeposit);
}

}  // namespace
}  // namespace kvmart::market::testing
