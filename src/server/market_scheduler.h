// Internal: the market's maintenance, run by the server without an operator.
// Every `interval` it voids expired load reservations (holds a failed or
// abandoned request left behind) and bills storage for the last completed
// billing period. Both are idempotent (per load; per artifact and period), so
// running early, late, twice, or in two processes on one market is harmless.
// Then it runs `also`, the server's own work on the same schedule (re-reading
// which resident artifacts are entitled: server/resident_kv.h).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stop_token>
#include <thread>

#include <nlohmann/json.hpp>

#include "market/market.h"

namespace kvmart::server {

// The start of the last billing period that has ended at `now`.
int64_t LastCompletedPeriodStart(int64_t now, int64_t period_seconds);

class MarketScheduler {
 public:
  // log(msg, fields) reports each run; period_seconds == 0 disables billing.
  using Log = std::function<void(const char* what, const nlohmann::json& fields)>;
  MarketScheduler(market::Market* market, std::chrono::seconds interval, int64_t period_seconds, Log log,
                  std::function<void()> also = nullptr);
  ~MarketScheduler();  // stops and joins
  MarketScheduler(const MarketScheduler&) = delete;
  MarketScheduler& operator=(const MarketScheduler&) = delete;

  // One run now (also what the thread does each interval).
  void RunOnce();

 private:
  void Maintain();  // the market's part of a run
  market::Market* market_;
  std::chrono::seconds interval_;
  int64_t period_seconds_;
  Log log_;
  std::function<void()> also_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::jthread thread_;  // last: started after the fields it reads, stopped first
};

}  // namespace kvmart::server
