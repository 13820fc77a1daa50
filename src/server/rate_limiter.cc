#include "server/rate_limiter.h"

#include <algorithm>

namespace kvmart::server {

RateLimiter::RateLimiter(double rate, double burst, size_t max_callers, Clock clock)
    : rate_(rate),
      burst_(std::max(1.0, burst)),
      max_callers_(std::max<size_t>(1, max_callers)),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })) {}

double RateLimiter::Refilled(const Bucket& b, std::chrono::steady_clock::time_point now) const {
  const double elapsed = std::chrono::duration<double>(now - b.at).count();
  return std::min(burst_, b.tokens + std::max(0.0, elapsed) * rate_);
}

std::optional<double> RateLimiter::Admit(std::string_view caller) {
  const auto now = clock_();
  std::lock_guard lock(mu_);
  auto it = buckets_.find(std::string(caller));
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_callers_) {
      // A full bucket says nothing a fresh one would not: forget those.
      std::erase_if(buckets_, [&](const auto& kv) { return Refilled(kv.second, now) >= burst_; });
    }
    it = buckets_.emplace(std::string(caller), Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = Refilled(b, now);
  b.at = now;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return std::nullopt;
  }
  return (1.0 - b.tokens) / rate_;
}

size_t RateLimiter::callers() const {
  std::lock_guard lock(mu_);
  return buckets_.size();
}

}  // namespace kvmart::server
