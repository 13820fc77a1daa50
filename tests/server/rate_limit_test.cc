// Per-key rate limits: the token bucket on a controlled clock, and the server's
// 429 with Retry-After before any work (nothing charged, health exempt).
#include <gtest/gtest.h>

#include "server/rate_limiter.h"
#include "test_server.h"

namespace kvmart::testing {
namespace {

using server::RateLimiter;

struct FakeClock {
  std::shared_ptr<std::chrono::steady_clock::time_point> now =
      std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::time_point{});
  RateLimiter::Clock fn() const {
    auto n = now;
    return [n] { return *n; };
  }
  void Advance(double s) {
    *now += std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
  }
};

TEST(RateLimiter, ABurstThenTheRateAndEachCallerHasItsOwnBucket) {
  FakeClock clock;
  RateLimiter limiter(2.0, 3.0, 100, clock.fn());
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(limiter.Admit("a").has_value()) << i;
  auto wait = limiter.Admit("a");
  ASSERT_TRUE(wait.has_value());
  EXPECT_NEAR(*wait, 0.5, 1e-9);  // one token at 2/s
  EXPECT_FALSE(limiter.Admit("b").has_value());  // another caller is untouched
  clock.Advance(0.5);
  EXPECT_FALSE(limiter.Admit("a").has_value());
  EXPECT_TRUE(limiter.Admit("a").has_value());
  clock.Advance(100);  // refills to the burst, never beyond
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(limiter.Admit("a").has_value());
  EXPECT_TRUE(limiter.Admit("a").has_value());
}

TEST(RateLimiter, ForgetsRefilledCallersToStayBounded) {
  FakeClock clock;
  RateLimiter limiter(1.0, 1.0, 4, clock.fn());
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(limiter.Admit("c" + std::to_string(i)).has_value());
  clock.Advance(10);  // all four full again
  EXPECT_FALSE(limiter.Admit("new").has_value());
  EXPECT_LE(limiter.callers(), 2u);
  // A caller still in debt is not forgotten (so it cannot reset itself).
  EXPECT_TRUE(limiter.Admit("new").has_value());
  for (int i = 0; i < 8; ++i) (void)limiter.Admit("x" + std::to_string(i));
  EXPECT_TRUE(limiter.Admit("new").has_value());
}

TEST(ServerRateLimit, OverTheRateIs429WithRetryAfterBeforeAnyWork) {
  server::ServerOptions o;
  o.rate_limit_per_s = 0.05;  // one request per 20 s after the burst: slow runs stay inside it
  o.rate_limit_burst = 3;
  TestServer srv(Models(), o);
  // Account creation is itself a request of the admin key: one of its three.
  TestServer::Account buyer = srv.NewAccount("buyer", "buy", "1");  // 2 admin requests
  EXPECT_EQ(srv.BalanceMicros(buyer.key), 1'000'000);                // buyer: 1
  const json ask = {{"prompt", "Once upon a time"}, {"max_tokens", 1}, {"temperature", 0}};
  EXPECT_EQ(srv.Post("/v1/completions", ask, buyer.key).status, 200);  // 2
  EXPECT_EQ(srv.Post("/v1/completions", ask, buyer.key).status, 200);  // 3
  Reply refused = srv.Post("/v1/completions", ask, buyer.key);
  EXPECT_EQ(refused.status, 429) << refused.text;
  EXPECT_EQ(refused.body["error"]["type"], "rate_limit_error");
  auto it = refused.headers.find("Retry-After");
  ASSERT_NE(it, refused.headers.end());
  EXPECT_GE(std::stoi(it->second), 10);
  // Another key is not affected; health and metrics never are.
  EXPECT_EQ(srv.Get("/v1/accounts/me", srv.admin_key()).status, 200);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(srv.Get("/healthz", buyer.key).status, 200);
  Reply metrics = srv.Get("/metrics");
  EXPECT_NE(metrics.text.find("kvmart_rate_limited_total 1"), std::string::npos) << metrics.text.substr(0, 200);
  // Requests without a key share their address's bucket.
  for (int i = 0; i < 3; ++i) (void)srv.Get("/v1/models");
  EXPECT_EQ(srv.Get("/v1/models").status, 429);
  EXPECT_TRUE(srv.server().market().CheckInvariants().ok());
}

}  // namespace
}  // namespace kvmart::testing
