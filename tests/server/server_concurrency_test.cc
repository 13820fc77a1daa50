// 16 clients at once mixing cache hits, misses, purchases and publishes: no
// crash, no lost request, and the ledger balances afterwards. Plus the bounded
// queue: beyond it, 429 with Retry-After.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "test_server.h"

namespace kvmart::testing {
namespace {

TEST(ServerConcurrency, SixteenClientsMixingHitsMissesPurchasesPublishes) {
  TestServer srv(Models());
  auto pub = srv.NewAccount("publisher", "publish");
  Reply a = srv.Post("/v1/artifacts", {{"text", "Shared document A, read by many buyers at once."}}, pub.key);
  Reply b = srv.Post("/v1/artifacts", {{"text", "Document B, bought during the run."}}, pub.key);
  ASSERT_EQ(a.status, 201) << a.text;
  ASSERT_EQ(b.status, 201) << b.text;
  const std::string ida = a.body["artifact_id"], idb = b.body["artifact_id"];
  std::vector<TestServer::Account> buyers;
  for (int i = 0; i < 8; ++i) {
    buyers.push_back(srv.NewAccount("buyer" + std::to_string(i), "buy", "5"));
    ASSERT_EQ(srv.Post("/v1/artifacts/" + ida + "/purchase", {{"quantity", 100}}, buyers.back().key).status, 201);
  }
  int64_t before = srv.BalanceMicros(pub.key);
  for (const auto& bu : buyers) before += srv.BalanceMicros(bu.key);

  constexpr int kClients = 16, kRounds = 3;
  std::atomic<int> ok{0}, failed{0}, hits{0};
  std::vector<std::string> errors(kClients);
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      const auto& me = buyers[t % 8];
      for (int r = 0; r < kRounds; ++r) {
        Reply rep;
        switch (t % 4) {
          case 0:  // hit
            rep = srv.Post("/v1/chat/completions",
                           {{"messages", {{{"role", "user"}, {"content", "q" + std::to_string(r)}}}},
                            {"max_tokens", 3}, {"temperature", 0}, {"kv", {{"artifact", ida}}}},
                           me.key);
            if (rep.status == 200 && rep.body["usage"]["prompt_tokens_details"]["cached_tokens"] > 0) ++hits;
            break;
          case 1:  // miss: plain inference, streamed
            rep = srv.Post("/v1/chat/completions",
                           {{"messages", {{{"role", "user"}, {"content", "hello " + std::to_string(t)}}}},
                            {"max_tokens", 3}, {"temperature", 0}, {"stream", r % 2 == 0}},
                           me.key);
            break;
          case 2:  // purchase
            rep = srv.Post("/v1/artifacts/" + idb + "/purchase", {{"quantity", 1}}, me.key,
                           {{"Idempotency-Key", "p-" + std::to_string(t) + "-" + std::to_string(r)}});
            break;
          default:  // publish a new document
            rep = srv.Post("/v1/artifacts",
                           {{"text", "Fresh document " + std::to_string(t) + "/" + std::to_string(r)}}, pub.key);
            break;
        }
        if (rep.status == 200 || rep.status == 201) {
          ++ok;
        } else {
          ++failed;
          errors[t] = std::to_string(rep.status) + " " + rep.text;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& e : errors) EXPECT_TRUE(e.empty()) << e;
  EXPECT_EQ(ok + failed, kClients * kRounds);  // nothing lost
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(hits, 4 * kRounds);
  ASSERT_TRUE(srv.server().market().CheckInvariants().ok());
  // Money only moved between these accounts and the provider's fee account.
  int64_t after = srv.BalanceMicros(pub.key);
  for (const auto& bu : buyers) after += srv.BalanceMicros(bu.key);
  Reply list = srv.Get("/v1/artifacts", pub.key);
  EXPECT_EQ(list.body["data"].size(), 2u + 4u * kRounds);
  EXPECT_LE(after, before);
  EXPECT_GT(after, before - 4 * kRounds * 100000);
}

TEST(ServerConcurrency, FullQueueAnswers429WithRetryAfter) {
  server::ServerOptions o;
  o.max_sessions = 1;
  o.max_queue = 0;
  TestServer srv(Models(), o);
  auto buyer = srv.NewAccount("buyer", "buy");
  // One long streamed generation holds the only session...
  const int fd = OpenStreamingRequest(
      srv.port(), buyer.key,
      {{"messages", {{{"role", "user"}, {"content", "go"}}}}, {"max_tokens", 4000}, {"temperature", 0},
       {"stream", true}});
  // ...so the next one is refused at once.
  Reply r = srv.Post("/v1/chat/completions",
                     {{"messages", {{{"role", "user"}, {"content", "me too"}}}}, {"max_tokens", 2}}, buyer.key);
  close(fd);  // and the abandoned stream frees the session
  EXPECT_EQ(r.status, 429) << r.text;
  EXPECT_EQ(r.body["error"]["type"], "rate_limit_error");
  bool has_retry = false;
  for (const auto& [k, v] : r.headers) has_retry |= (k == "Retry-After" && std::stoi(v) >= 1);
  EXPECT_TRUE(has_retry);
}

// Continuous batching through HTTP: concurrent clients (hits and cold
// prompts, greedy and sampled, streamed and not) get exactly the token ids and
// logits (SHA-256 of their raw bytes at every step) that the same request gets
// alone on an idle server — and the passes really carried several sessions.
TEST(ServerConcurrency, BatchedAnswersAreBitIdenticalToAnswersAlone) {
  TestServer srv(Models());
  auto pub = srv.NewAccount("publisher", "publish");
  Reply a = srv.Post("/v1/artifacts", {{"text", "A shared document that every buyer reads before asking."}}, pub.key);
  ASSERT_EQ(a.status, 201) << a.text;
  const std::string id = a.body["artifact_id"];
  auto buyer = srv.NewAccount("buyer", "buy", "5");
  ASSERT_EQ(srv.Post("/v1/artifacts/" + id + "/purchase", {{"quantity", 100}}, buyer.key).status, 201);

  constexpr int kClients = 8;
  auto request = [&](int i) {
    json body = {{"messages", {{{"role", "user"}, {"content", "question " + std::to_string(i) + std::string(i * 7, 'x')}}}},
                 {"max_tokens", 6 + i % 3},
                 {"kvmart_debug", true}};
    if (i % 2 == 0) body["kv"] = {{"artifact", id}};
    if (i % 3 == 0) {
      body["temperature"] = 0.9;
      body["seed"] = 100 + i;
    } else {
      body["temperature"] = 0;
    }
    return body;
  };
  auto trace = [](const Reply& r) -> std::string {
    if (r.status != 200) return "status " + std::to_string(r.status) + ": " + r.text;
    const json& d = r.body["kvmart_debug"];
    return d["completion_token_ids"].dump() + " " + d["logits_sha256"].dump() + " reused " + d["tokens_reused"].dump();
  };
  std::vector<std::string> alone(kClients), together(kClients);
  for (int i = 0; i < kClients; ++i) alone[i] = trace(srv.Post("/v1/chat/completions", request(i), buyer.key));
  auto metric = [&](const std::string& name) {
    Reply m = srv.Get("/metrics");
    const size_t at = m.text.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(m.text.substr(at + name.size() + 2));
  };
  const double passes0 = metric("kvmart_engine_pass_sequences_count");
  const double seqs0 = metric("kvmart_engine_pass_sequences_sum");
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] { together[i] = trace(srv.Post("/v1/chat/completions", request(i), buyer.key)); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    EXPECT_EQ(alone[i].rfind("status", 0), std::string::npos) << alone[i];
    EXPECT_EQ(together[i], alone[i]) << "client " << i;
  }
  const double passes = metric("kvmart_engine_pass_sequences_count") - passes0;
  const double seqs = metric("kvmart_engine_pass_sequences_sum") - seqs0;
  ASSERT_GT(passes, 0);
  EXPECT_GT(seqs, passes) << "no forward pass carried two sessions";
  // Every request's admission wait and every gap between its tokens are observed.
  EXPECT_GE(metric("kvmart_queue_wait_seconds_count"), 2 * kClients);
  EXPECT_GE(metric("kvmart_inter_token_seconds_count"), 2 * kClients * 5);
}

}  // namespace
}  // namespace kvmart::testing
