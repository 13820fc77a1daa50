#include "server/market_scheduler.h"

#include <ctime>

namespace kvmart::server {

int64_t LastCompletedPeriodStart(int64_t now, int64_t period_seconds) {
  if (period_seconds <= 0) return 0;
  return (now / period_seconds - 1) * period_seconds;
}

MarketScheduler::MarketScheduler(market::Market* market, std::chrono::seconds interval, int64_t period_seconds, Log log,
                                 std::function<void()> also)
    : market_(market), interval_(interval), period_seconds_(period_seconds), log_(std::move(log)), also_(std::move(also)) {
  thread_ = std::jthread([this](std::stop_token stop) {
    std::unique_lock<std::mutex> lock(mu_);
    // The first run waits one interval: holds voided at start-up were already
    // released when the market was opened.
    while (!cv_.wait_for(lock, stop, interval_, [] { return false; })) {
      if (stop.stop_requested()) break;
      lock.unlock();
      RunOnce();
      lock.lock();
    }
  });
}

MarketScheduler::~MarketScheduler() {
  thread_.request_stop();  // wakes the wait (condition_variable_any + stop_token)
}

void MarketScheduler::RunOnce() {
  Maintain();
  if (also_) also_();
}

void MarketScheduler::Maintain() {
  auto voided = market_->VoidExpiredLoads();
  if (!voided.ok()) {
    log_("market maintenance: voiding expired loads failed", {{"error", voided.status().ToString()}});
  } else if (*voided > 0) {
    log_("market maintenance: voided expired load reservations", {{"voided", *voided}});
  }
  if (period_seconds_ <= 0) return;
  const int64_t start = LastCompletedPeriodStart(static_cast<int64_t>(std::time(nullptr)), period_seconds_);
  if (start < 0) return;
  auto rep = market_->BillStorage(start, period_seconds_);
  if (!rep.ok()) {
    log_("storage billing failed", {{"period_start", start}, {"error", rep.status().ToString()}});
    return;
  }
  if (rep->billed + rep->unpaid + rep->unlisted + rep->relisted > 0) {
    log_("storage billed", {{"period_start", start}, {"period_seconds", period_seconds_}, {"billed", rep->billed},
                            {"unpaid", rep->unpaid}, {"unlisted", rep->unlisted}, {"relisted", rep->relisted}});
  }
}

}  // namespace kvmart::server
