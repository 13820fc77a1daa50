// Per-caller request rate limits: a token bucket per API key (or, for a
// request without one, per remote address) holding at most `burst` requests
// and refilled at `rate` per second. A caller over its rate is refused at once
// with the time until its next request would pass, which the server sends as
// 429 with Retry-After — so one tenant's probing or runaway client cannot
// crowd out the rest, and the refusal costs neither the market nor the engine
// a thing.
//
// Thread-safe. Memory is bounded: past `max_callers` buckets, those that have
// refilled completely (indistinguishable from a new caller) are dropped.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace kvmart::server {

class RateLimiter {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  // rate > 0 requests per second; burst >= 1.
  RateLimiter(double rate, double burst, size_t max_callers = 100'000, Clock clock = nullptr);

  // Takes one request from `caller`'s bucket: nullopt when it may proceed,
  // else the seconds until it may.
  std::optional<double> Admit(std::string_view caller);

  size_t callers() const;

 private:
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point at;
  };
  double Refilled(const Bucket& b, std::chrono::steady_clock::time_point now) const;

  const double rate_, burst_;
  const size_t max_callers_;
  const Clock clock_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace kvmart::server
